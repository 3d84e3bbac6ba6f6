"""The simulated cluster's state file: old files load, wrong shapes are refused by field, stale writers too.

``data/state-before-generations.json`` was written by the code before the ``generation`` field and the
schema existed (two apps, failures, spot preemptions, a hold and a scheduled fault): it must load as it did.
Every other case starts from it and breaks one thing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from prescale.catalog import load_profile
from prescale.cluster import ClusterError, ClusterUnavailable, Guardrails, SimulatedCluster, make_plan
from prescale.cluster.plan import placement
from prescale.cluster.statefile import read_state

OLD = Path(__file__).parent / "data" / "state-before-generations.json"
CPU = "m7i.xlarge"


@pytest.fixture
def old() -> dict:
    return json.loads(OLD.read_text())


def written(tmp_path: Path, data) -> Path:
    path = tmp_path / "state.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_file_from_before_generations_loads_as_it_did(tmp_path, catalog, old):
    assert "generation" not in old
    sim = SimulatedCluster.open(written(tmp_path, old), catalog)
    state = sim.observe()
    assert state.at == 5810.0
    assert {t: dict(p.claims) for t, p in state.pools.items()} == {"g6.xlarge": {"inference": 2}, CPU: {"web": 3}}
    assert sim.costs()["total"] == pytest.approx(2.1140325, rel=1e-12)
    assert len(sim.lifetimes()) == 13
    sim.save()  # generation 0 (none written) is the one it read
    assert json.loads(sim.path.read_text())["generation"] == 1


def _set(*keys, value):
    """A change to the old file: ``keys`` down to the value to replace."""

    def change(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return data

    return change


def _drop(*keys):
    def change(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        return data

    return change


WEB = f"web/{CPU}"
WRONG_SHAPES = [
    pytest.param(lambda d: [], "is a JSON array, not an object", id="top-level-array"),
    pytest.param(lambda d: "[1, 2", "is unreadable", id="not-json"),
    pytest.param(lambda d: None, "is a JSON null", id="top-level-null"),
    pytest.param(_set("version", value=2), "has version 2, expected 1", id="newer-version"),
    pytest.param(_set("version", value="1"), "has version '1', expected 1", id="version-as-string"),
    pytest.param(_set("version", value=True), "has version True", id="version-as-boolean"),
    pytest.param(_drop("world"), "world: Field required", id="no-world"),
    pytest.param(_drop("rng"), "rng: Field required", id="no-rng"),
    pytest.param(_set("world", value={"nodes": "x"}), "world.nodes: Input should be a valid array", id="nodes-string"),
    pytest.param(_set("world", value=[]), "world: Input should be an object", id="world-array"),
    pytest.param(_drop("world", "nodes", 0, "state"), "world.nodes.0.state: Field required", id="node-no-state"),
    pytest.param(_set("world", "nodes", 1, "state", value="gone"), "world.nodes.1.state", id="node-unknown-state"),
    pytest.param(_set("world", "nodes", 0, "ready_at", value="soon"), "world.nodes.0.ready_at", id="time-string"),
    pytest.param(_set("world", "nodes", 0, "created", value=None), "world.nodes.0.created", id="time-null"),
    pytest.param(_set("world", "now", value=float("nan")), "world.now: Input should be a finite", id="clock-nan"),
    pytest.param(_set("world", "now", value=float("inf")), "world.now: Input should be a finite", id="clock-inf"),
    pytest.param(_set("world", "claims", CPU, "web", value="3"), f"world.claims.{CPU}.web", id="claim-string"),
    pytest.param(_set("world", "claims", CPU, "web", value=-1), "greater than or equal to 0", id="claim-negative"),
    pytest.param(_set("world", "claims", CPU, "web", value=3.0), "valid integer", id="claim-float"),
    pytest.param(_set("world", "claims", CPU, value=["web"]), f"world.claims.{CPU}", id="claims-list"),
    pytest.param(
        _set("world", "claims", CPU, "Bad_App", value=1),
        "Bad_App (the key): Value error, app 'Bad_App' is not a valid",
        id="claim-bad-app",
    ),
    pytest.param(
        _set("world", "nodes", 0, "app", value="../../x"),
        "world.nodes.0.app: Value error, app '../../x' is not",
        id="node-app",
    ),
    pytest.param(
        _set("world", "workloads", "web", value={}),
        "world.workloads.web (the key): String should match",
        id="workload-key",
    ),
    pytest.param(_set("world", "workloads", WEB, "scheduled", value=[[1, 2]]), "scheduled.0", id="bucket-short"),
    pytest.param(
        _set("world", "workloads", WEB, "scheduled", value=[[1.0, "2", False]]), "scheduled.0.1", id="bucket-count"
    ),
    pytest.param(_drop("world", "workloads", WEB, "rpn"), f"world.workloads.{WEB}.rpn: Field required", id="no-rpn"),
    pytest.param(
        _set("world", "node_seconds", f"web/{CPU}/cheap", value=1.0), "world.node_seconds", id="cost-key-market"
    ),
    pytest.param(_set("world", "node_seconds", f"web/{CPU}/spot", value=-5.0), "node_seconds", id="cost-negative"),
    pytest.param(_set("world", "ledger", 0, "end", value={}), "world.ledger.0.end", id="ledger-end"),
    pytest.param(_set("world", "schedule", 0, "kind", value="explode"), "world.schedule.0.kind", id="fault-kind"),
    pytest.param(_set("world", "holds", value="all"), "world.holds", id="holds-string"),
    pytest.param(_set("world", "surprise", value=1), "world.surprise: Extra inputs", id="unknown-world-key"),
    pytest.param(_set("world", "nodes", 0, "type", value="x9.huge"), "world.nodes uses type 'x9.huge'", id="gone-type"),
    pytest.param(
        _set("world", "claims", value={"x9.huge": {"web": 1}}), "world.claims uses type 'x9.huge'", id="gone-claim"
    ),
    pytest.param(_set("rng", value=[3, [1, 2], None]), "rng is not a random generator's state", id="rng-short"),
    pytest.param(_set("rng", value="seed"), "rng: Input should be a valid", id="rng-string"),
    pytest.param(_set("generation", value=-1), "generation: Input should be greater", id="generation-negative"),
]


@pytest.mark.parametrize(("change", "says"), WRONG_SHAPES)
def test_a_wrong_shaped_state_is_refused_naming_the_file_and_the_field(tmp_path, catalog, old, change, says):
    path = written(tmp_path, change(copy.deepcopy(old)))
    with pytest.raises(ClusterError) as caught:
        SimulatedCluster.open(path, catalog)
    message = str(caught.value)
    assert str(path) in message and says in message
    assert "to start afresh" in message


def test_a_binary_state_file_is_refused(tmp_path, catalog):
    path = tmp_path / "state.json"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ClusterError, match="is unreadable"):
        SimulatedCluster.open(path, catalog)


def _leaves(value, at=()):
    """Every position in the state (of the random state's 625 words only the first two)."""
    yield at
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*at, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value[:2] if at == ("rng", 1) else value):
            yield from _leaves(inner, (*at, i))


def test_any_one_value_replaced_loads_and_runs_or_is_a_cluster_error(tmp_path, catalog, old):
    """Every position of the old file set to each of a few wrong values: never a TypeError/KeyError later."""
    path, refused, ran = tmp_path / "state.json", 0, 0
    for at in _leaves(old):
        for value in (None, "x", [], {}, -1, 2.5, True):
            data = _set(*at, value=value)(copy.deepcopy(old)) if at else value
            path.write_text(json.dumps(data))
            try:
                sim = SimulatedCluster.open(path, catalog)
                sim.observe(), sim.costs(), sim.lifetimes()
                sim.advance(2e6)  # past the scheduled fault and every timer
            except ClusterError:
                refused += 1
                continue
            ran += 1
    assert refused > 1000 and ran > 50  # both kinds happen: the check is neither vacuous nor everything


def test_a_stale_cluster_catches_up_before_it_applies(tmp_path, catalog):
    path = tmp_path / "state.json"
    web, analytics = SimulatedCluster.open(path, catalog), SimulatedCluster.open(path, catalog, now=500.0)
    for sim, app, nodes in ((web, "web", 2), (analytics, "analytics", 3)):
        observed = sim.observe()  # both observe the empty cluster
        profile = _profile(app)
        plan = make_plan(
            app, observed.holdings(app), {CPU: nodes}, catalog=catalog, profile=profile, guardrails=Guardrails()
        )
        assert sim.apply(plan).status == "applied"
    again = SimulatedCluster.open(path, catalog)
    assert dict(again.observe().pools[CPU].claims) == {"web": 2, "analytics": 3}
    assert read_state(path, catalog)["generation"] == 2
    assert again.now() >= 500.0  # the later clock of the two writers


def test_save_refuses_to_overwrite_a_state_it_has_not_seen(tmp_path, catalog):
    path = tmp_path / "state.json"
    first, second = SimulatedCluster.open(path, catalog), SimulatedCluster.open(path, catalog)
    first.set_nodes("web", placement(catalog[CPU], _profile("web")), 2)
    first.save()
    second.set_nodes("analytics", placement(catalog[CPU], _profile("analytics")), 1)
    with pytest.raises(ClusterError, match=r"saved by another writer \(generation 1\).*open it again"):
        second.save()
    assert dict(SimulatedCluster.open(path, catalog).observe().pools[CPU].claims) == {"web": 2}


def _profile(app: str):
    return load_profile(Path(__file__).resolve().parents[2] / "infra" / "apps" / f"{app}.yaml")


def test_a_state_that_cannot_be_written_is_the_cluster_unavailable(tmp_path, catalog):
    """Not bad input (exit 2) but the simulated cluster's API failing (exit 1), as for Kubernetes."""
    (tmp_path / "home").write_text("a file where the folder should be")
    sim = SimulatedCluster.open(tmp_path / "home" / "cluster" / "state.json", catalog)
    with pytest.raises(ClusterUnavailable, match="cannot open the lock .*state.json.lock"):
        sim.save()
