"""The replay's policies, one registry: what the engine runs, the settings tree holds and the backtest offers.

:data:`POLICIES` maps a name to a :class:`~prescale.replay.policies.base.ReplayPolicy`; :func:`register`
adds one. The engine (``ReplayConfig``, ``backtest``), the settings tree (``prescale.settings``:
``replay.policies.<name>``), the backtest task and flow and the command line all read this dict, so a new
policy is one new module here (its ``PolicySettings``, its rule, its ``ReplayPolicy``) plus one
``register`` line below. Registration order is the order reports list them in.

Worked example, a reference that holds a fixed number of the cheapest nodes (``fixed.py``)::

    class FixedSettings(PolicySettings):
        nodes: tuple[int, ...] = Field(default=(1, 2), description="Node counts swept.")

    @dataclass(eq=False)
    class Fixed(Rule):
        ctx: Context
        nodes: int
        policy: str = "fixed"

        @property
        def setting(self) -> str:
            return f"nodes={self.nodes}"

        def step(self, t, ex):
            target = np.zeros(self.ctx.fleet.n, dtype=int)
            target[0] = self.nodes
            ex.apply(target, keep=np.zeros(len(self.ctx.fleet.metrics)))

    class FixedPolicy(Swept):
        name, description, settings_type = "fixed", "A fixed count of the first type.", FixedSettings

        def rules(self, settings, inp, ctx, config):
            return (Fixed(ctx, n) for n in settings.nodes)

        def runs(self, settings, inp, fleet):
            return len(settings.nodes)

then ``register(FixedPolicy())`` here; ``tests/replay/test_policy_contract.py`` runs it with the others.
"""

from __future__ import annotations

from prescale.decision import break_even, consolidate, retarget, trim, with_min_nodes
from prescale.replay.errors import ReplayError
from prescale.replay.policies.allocating import Allocating
from prescale.replay.policies.aws import AwsPredictive, AwsPredictivePolicy
from prescale.replay.policies.base import Context, PolicySettings, ReplayPolicy, Rule, Swept, Tick, run_rule
from prescale.replay.policies.crane import CraneEhpa, CraneEhpaPolicy
from prescale.replay.policies.oracle import OraclePolicy
from prescale.replay.policies.predictive import Predictive, PredictivePolicy
from prescale.replay.policies.reactive import Reactive, ReactivePolicy, stabilisation_steps
from prescale.replay.policies.static import StaticPeak, StaticPolicy

POLICIES: dict[str, ReplayPolicy] = {}


def register(policy: ReplayPolicy) -> ReplayPolicy:
    """Add ``policy`` to :data:`POLICIES` under its name (a second one of the same name is an error)."""
    if policy.name in POLICIES:
        raise ReplayError(f"a replay policy named {policy.name!r} is already registered")
    POLICIES[policy.name] = policy
    return policy


register(PredictivePolicy())
register(ReactivePolicy())
register(StaticPolicy())
register(OraclePolicy())
# The published predictive autoscalers, as references (issue 20): AWS predictive scaling, Crane's EHPA.
register(AwsPredictivePolicy())
register(CraneEhpaPolicy())
REFERENCES: tuple[str, ...] = ("aws", "crane")  # the published references: reported beside reactive everywhere

# Re-exported: the replay's rules and tests build on the decision's helpers.
__all__ = [
    "POLICIES", "REFERENCES", "Allocating", "AwsPredictive", "Context", "CraneEhpa", "PolicySettings", "Predictive",
    "Reactive", "ReplayPolicy", "Rule",
    "StaticPeak", "Swept", "Tick", "break_even", "consolidate", "register", "retarget", "run_rule",
    "stabilisation_steps", "trim", "with_min_nodes",
]
