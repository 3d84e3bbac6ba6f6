"""The forecaster component: the protocol every model inside a :class:`~models.forecaster.Forecaster` implements.

A component is one trained model of one (app, phase): the LSTM (``lstm.py``), a baseline
(``baselines.py``), or any forecaster to come. Training, scoring, saving and serving
treat every component alike, through this protocol and the registry in ``components.py``:

- ``train`` (a class method) fits on the training rows of one or more panels
  (:class:`TrainPart`) and returns, per part, the :class:`Trained` members that make
  its candidate (the LSTM: ``lstm_members`` networks whose quantiles are averaged; a
  baseline: itself), or why it cannot run on that part. A component fitted on several
  parts at once is a *global* model: the part's index then selects that panel's
  scaling (``part`` below); components fitted per panel ignore it;
- ``predict_at`` gives the raw quantiles ``(W, H, M, Q)`` from each origin of a panel
  (validation, held-out tail, replays), using rows up to each origin only;
- ``forecast`` gives ``(H, M, Q)`` after the panel's last row (serving);
- ``history_needed`` is how many rows of history ``forecast`` wants;
- ``save`` writes into an empty folder; ``load`` (a class method) reads it back. The
  forecaster names each component's folder ``component-<i>-<name>``, and the registry
  loads it by that name.

``learned`` marks a component with fitted weights (the LSTM): training blends each
learned candidate with the simple candidate that did best on validation
(``models.train``'s ensemble), and ranking prefers simple candidates on ties.

Deliberately not here: calibration, scoring and the blend weights. They belong to the
forecaster and to training, the same for every component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from models.series import Panel

if TYPE_CHECKING:
    from models.train import TrainConfig


@dataclass(frozen=True)
class TrainPart:
    """One panel's share of a (possibly global) fit: rows ``[0, train_stop)`` train, then validation."""

    panel: Panel
    train_stop: int
    val_stop: int


@dataclass
class Trained:
    """What training made for one part: the members of the candidate, its parameters (logged), its fit time."""

    members: list[Component]
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Component(Protocol):
    """One kind of forecasting model (see the module docstring)."""

    name: ClassVar[str]
    learned: ClassVar[bool]

    @classmethod
    def train(cls, parts: Sequence[TrainPart], config: TrainConfig, *,
              scratch: Path | None = None) -> list[Trained | str]:
        """Per part, the fitted members, or why this component cannot run there."""
        ...

    def predict_at(self, panel: Panel, origins: np.ndarray, *, part: int = 0) -> np.ndarray:
        """Raw quantiles ``(W, H, M, Q)`` from each origin of ``panel``."""
        ...

    def forecast(self, panel: Panel, *, part: int = 0) -> np.ndarray:
        """Raw quantiles ``(H, M, Q)`` for the rows after the panel's last row."""
        ...

    def history_needed(self) -> int:
        """Rows of history :meth:`forecast` wants."""
        ...

    def save(self, folder: Path) -> None:
        ...

    @classmethod
    def load(cls, folder: Path) -> Component:
        ...
