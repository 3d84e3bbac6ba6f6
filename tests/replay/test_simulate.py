"""The capacity simulation: lead times, billing from order to release, cancels, make-before-break, migrations."""

from __future__ import annotations

import numpy as np
import pytest

from prescale.replay.simulate import Executor, count_migrations
from tests.replay.builders import fleet

VM, METAL = 0, 1


def _run(decisions: dict[int, tuple[list[int], float]], steps: int = 10):
    """``decisions``: step -> (target counts [vm, metal], keep); returns the series."""
    f = fleet()
    ex = Executor(f, steps)
    for t in range(steps):
        ex.begin(t)
        if t in decisions:
            target, keep = decisions[t]
            ex.apply(np.array(target), keep=np.array([keep]))
        ex.end()
    return f, ex.series()


@pytest.mark.parametrize(
    ("target", "ready_from"),
    [
        pytest.param([1, 0], 3, id="vm-serves-one-step-after-order"),
        pytest.param([0, 1], 7, id="metal-serves-five-steps-after-order"),
    ],
)
def test_a_node_serves_its_lead_time_after_the_order_and_is_billed_from_the_order(target, ready_from):
    f, s = _run({2: (target, 0.0)})
    i = int(np.flatnonzero(target)[0])
    assert s.ready[:, i].tolist() == [0] * ready_from + [1] * (10 - ready_from)
    assert s.held[:, i].tolist() == [0, 0] + [1] * 8
    assert s.cost_per_step(f).sum() == pytest.approx(8 * f.price[i] / 60)


def test_lowering_a_type_cancels_booting_nodes_first_and_stops_their_billing():
    f, s = _run({0: ([0, 2], 0.0), 3: ([0, 1], 0.0)})
    assert s.held[:, METAL].tolist() == [2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    assert s.ready[:, METAL].tolist() == [0] * 5 + [1] * 5
    assert s.removals[3, METAL] == 1


@pytest.mark.parametrize(
    ("keep", "vms_after_swap"),
    [
        pytest.param(0.0, [0, 0, 0, 0, 0, 0, 0], id="no-floor-releases-at-once"),
        # 4 VMs serve 40: the floor 30 lets one go at once, the other three once the metal serves (step 8)
        pytest.param(30.0, [3, 3, 3, 3, 3, 0, 0], id="make-before-break-waits-for-the-new-node"),
    ],
)
def test_a_release_waits_until_the_serving_floor_holds_without_the_node(keep, vms_after_swap):
    swap = {t: ([0, 1], keep) for t in range(3, 10)}
    _, s = _run({0: ([4, 0], 0.0), **swap})
    assert s.ready[3:, VM].tolist() == vms_after_swap
    assert s.ready[:, METAL].tolist() == [0] * 8 + [1, 1]


def test_migrations_count_nodes_swapped_between_types_only():
    orders = np.zeros((10, 2), dtype=int)
    removals = np.zeros((10, 2), dtype=int)
    orders[1, METAL] = 1
    removals[6, VM] = 3  # swap: three VMs leave after the metal was ordered
    removals[9, METAL] = 1  # plain scale-down, no order of another type before it in the window
    assert count_migrations(orders, removals, window=6) == 1
