"""Every registered replay policy keeps the contract the engine, the settings tree and the backtest rely on.

Parametrised over ``prescale.replay.POLICIES``, so a new policy is held to it by registering it: on a small
seeded trace it produces scored points and a frontier, makes exactly the runs it announced (one progress tick
each) with distinct settings, follows the settings the config gives it, is deterministic, and has a typed,
described settings group in the settings tree.
"""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay import POLICIES, PolicySettings, ReplayConfig, ReplayError, replay_policy
from prescale.replay.engine import context, count_runs
from prescale.settings import Settings
from tests.replay.builders import fleet, replay_input

EVERY = [pytest.param(name, id=name) for name in POLICIES]


def _trace(seed: int = 7, steps: int = 180) -> np.ndarray:
    """A two-hour periodic load with seeded noise: short enough for the oracle, long enough to scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return np.maximum(120 + 80 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 5, steps), 5.0)


def _replay(name: str, config: ReplayConfig):
    f, inp = fleet(), replay_input(_trace(), start=30, spread=0.05)
    ticks: list[tuple[int, int, str]] = []
    total = count_runs(name, inp, f, config)
    result = replay_policy(name, inp, context(inp, f, config), config,
                           progress=lambda done, of, message: ticks.append((done, of, message)), total=total)
    return result, ticks, total


def _smaller(name: str) -> dict:
    """The policy's settings with every swept tuple cut to its first value (a sweep of one point each)."""
    defaults = POLICIES[name].settings_type()
    return {k: v[:1] for k, v in defaults.model_dump().items() if isinstance(v, tuple) and len(v) > 1}


@pytest.mark.parametrize("name", EVERY)
def test_a_policy_scores_every_run_it_announces_into_a_frontier(name):
    result, ticks, total = _replay(name, ReplayConfig())
    assert result.policy == name
    assert len(result.points) == total >= 1
    assert [done for done, _, _ in ticks] == list(range(1, total + 1))
    assert len({p.setting for p in result.points}) == total, "every run needs its own setting label"
    frontier = result.frontier()
    assert frontier and any(row["pareto"] for row in frontier)
    for point in result.points:
        assert point.score.cost > 0 and point.score.scored_minutes == 150.0
    assert result.headline() is not None and set(result.series) == {result.headline().setting}


@pytest.mark.parametrize("name", EVERY)
def test_a_policy_follows_the_settings_the_config_gives_it(name):
    smaller = _smaller(name)
    config = ReplayConfig(settings={name: smaller})
    assert all(getattr(config.settings_for(name), k) == v for k, v in smaller.items())
    result, _, total = _replay(name, config)
    assert len(result.points) == total
    if smaller:  # a policy that sweeps: one point per swept value, so cutting the sweep cuts the runs
        assert total < count_runs(name, replay_input(_trace(), start=30), fleet(), ReplayConfig())


@pytest.mark.parametrize("name", EVERY)
def test_a_policy_is_deterministic(name):
    config = ReplayConfig(settings={name: _smaller(name)})
    first, _, _ = _replay(name, config)
    second, _, _ = _replay(name, config)
    assert [(p.setting, p.score) for p in first.points] == [(p.setting, p.score) for p in second.points]


@pytest.mark.parametrize("name", EVERY)
def test_a_policy_rejects_settings_it_does_not_have(name):
    with pytest.raises(ReplayError, match=name):
        ReplayConfig(settings={name: {"no_such_knob": 1}})


@pytest.mark.parametrize("name", EVERY)
def test_a_policy_has_a_described_settings_group_in_the_settings_tree(name):
    policy = POLICIES[name]
    assert issubclass(policy.settings_type, PolicySettings) and policy.description
    group = getattr(Settings().replay.policies, name)
    assert isinstance(group, policy.settings_type) and group == policy.settings_type()
    assert all(field.description for field in policy.settings_type.model_fields.values())
    config = ReplayConfig.from_settings(Settings().replay)
    assert config.settings_for(name) == group and name in config.policies


def test_an_unknown_policy_is_refused_with_the_registered_names():
    with pytest.raises(ReplayError, match="choose from " + ", ".join(POLICIES)):
        ReplayConfig(policies=("no-such-policy",))
