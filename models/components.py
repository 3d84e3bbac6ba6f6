"""The forecaster components, one registry: what training fits, forecasters save and load, and serving runs.

:data:`COMPONENTS` maps a name to a class implementing :class:`~models.component.Component`;
:func:`register` adds one. Training (``models.train``: every registered component is a
candidate, each learned one also blended with the best simple one), saving and loading
(``models.forecaster``: a component's folder is named after it) and therefore the MLflow
registry and the orchestrator's champions all read this dict. Registration order is the
ranking's tie-break order (simplest first) and the order candidates are logged in.

A new forecaster is one new module (its class: ``name``, ``learned``, ``train``,
``predict_at``, ``forecast``, ``history_needed``, ``save``, ``load``) plus one
``register`` line below; ``tests/forecasting/test_component_contract.py`` runs it with
the others. Worked example, the mean of the training rows (``mean.py``; it passed the
contract test, and the test failed while ``train`` returned a model for a part too short)::

    @dataclass
    class Mean:
        name: ClassVar[str] = "mean"
        learned: ClassVar[bool] = False
        level: list[float]
        horizon: int
        quantiles: tuple[float, ...]

        @classmethod
        def train(cls, parts, config, *, scratch=None):
            horizon = config.steps(parts[0].panel.step_seconds)[1]
            return [Trained([cls(np.nanmean(p.panel.values[: p.train_stop], axis=0).tolist(), horizon,
                                 config.quantiles)])
                    if p.train_stop >= p.panel.season else f"needs a day of training rows, got {p.train_stop}"
                    for p in parts]

        def predict_at(self, panel, origins, *, part=0):
            shape = (len(origins), self.horizon, len(self.level), len(self.quantiles))
            return np.broadcast_to(np.asarray(self.level)[:, None], shape).copy()

        def forecast(self, panel, *, part=0):
            return self.predict_at(panel, np.array([len(panel) - 1]))[0]

        def history_needed(self):
            return 1

        def save(self, folder):
            (folder / "mean.json").write_text(json.dumps(asdict(self)))

        @classmethod
        def load(cls, folder):
            state = json.loads((folder / "mean.json").read_text())
            return cls(state["level"], state["horizon"], tuple(state["quantiles"]))

then ``register(Mean)`` here.
"""

from __future__ import annotations

from pathlib import Path

from models.baselines import DampedHoltWinters, Persistence, SeasonalNaive, SimpleExponentialSmoothing
from models.component import Component
from models.darts_global import NHitsCandidate, TideCandidate, TsMixerCandidate
from models.fracast_model import Fracast
from models.lstm import LstmCandidate
from models.ridge import Ridge

COMPONENTS: dict[str, type[Component]] = {}

FOLDER_PREFIX = "component-"  # a forecaster keeps component i in the folder component-<i>-<name>


def register(component: type[Component]) -> type[Component]:
    """Add ``component`` to :data:`COMPONENTS` under its name (a second one of the same name is an error)."""
    if component.name in COMPONENTS:
        raise ValueError(f"a forecaster component named {component.name!r} is already registered")
    if "+" in component.name:
        raise ValueError(f"component name {component.name!r} contains '+', which names blends")
    COMPONENTS[component.name] = component
    return component


def component_folder(index: int, component: Component) -> str:
    return f"{FOLDER_PREFIX}{index}-{component.name}"


def load_component(folder: Path) -> Component:
    """The component saved in ``folder`` (named by :func:`component_folder`), by its registered class."""
    name = folder.name.split("-", 2)[-1]
    if not folder.name.startswith(FOLDER_PREFIX) or name not in COMPONENTS:
        raise ValueError(f"{folder} holds no registered component (known: {sorted(COMPONENTS)}); "
                         f"was it saved by a newer prescale?")
    return COMPONENTS[name].load(folder)


def is_learned(candidate: str) -> bool:
    """Whether a candidate (a component's name, or a blend ``<learned>+<simple>``) is built on a learned one."""
    component = COMPONENTS.get(candidate.split("+", 1)[0])
    return component is not None and component.learned


register(Persistence)
register(SeasonalNaive)
register(SimpleExponentialSmoothing)
register(DampedHoltWinters)
register(Ridge)
register(Fracast)
register(LstmCandidate)
register(TideCandidate)  # optional: trained when named in TrainConfig.extra_candidates
register(NHitsCandidate)
register(TsMixerCandidate)
