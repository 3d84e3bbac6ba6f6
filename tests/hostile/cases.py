"""The hostile-input corpus: what an adversarial user hands every `prescale` command, and what must happen.

Each :class:`Case` is one command line run as a real process against a home seeded with data (an ingested
app, a cluster state, a ledger day). Files a case needs are written first, in ``{work}``: ``files`` maps a
name to its bytes. Placeholders in the arguments and environment: ``{work}`` (the case's scratch folder,
outside the home), ``{home}`` (the seeded home), ``{repo}`` (this checkout), ``{to_work}`` (``{work}``
relative to the profiles folder: ``--profile {to_work}/evil`` reaches a real file there unless the profile
lookup stays inside the folder).

What every case must show (``test_corpus.py``): the exit code (2 for a refusal, 0 where the input is taken
and the bad rows quarantined), every fragment of ``says`` in the output, no traceback, and no change to
any file that existed before, in the home or outside it. A refusal also writes nothing new in the home.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LONG = "a" * 300  # over every file system's 255-byte name limit
OVERFLOW = "9" * 20  # above any int64
BINARY = bytes(range(256)) * 4 + b"\x89PNG\r\n\x1a\n\x00\x00"
PROFILE = (
    "name: evil\ndescription: a profile outside the profiles folder\nmetrics:\n"
    "  - {name: requests_per_second, unit: req/s, source: app.requests_per_s, per_unit: 60}\n"
    "kinds: [cpu-vm]\nworkload_class: latency\nreplica: {vcpu: 0.5, memory_gib: 1}\n"
)
DEMAND = "requests_per_second,connections\n"  # web's two metrics


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    says: tuple[str, ...]
    exit: int = 2
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    state: bytes | None = None  # replaces the seeded cluster state file before the run


def _demand(rows: str, *, name: str = "demand.csv", header: str = DEMAND) -> dict[str, bytes]:
    return {name: (header + rows).encode()}


def _plan(*extra: str) -> tuple[str, ...]:
    return ("plan", "--app", "web", "--json", *extra)


CASES: list[Case] = [
    # -- ingest ---------------------------------------------------------------------------------------
    Case("ingest-traversal-in-app-cells",
         ("ingest", "{work}/m.csv", "--json"),
         ("invalid_app_name",), exit=0,
         files={"m.csv": b"ts,app,metric,value\n2026-01-02T00:00:00Z,web/../../../ledger/app=web,cpu_cores,1\n"
                         b"2026-01-02T00:01:00Z,../../../../outside,cpu_cores,1\n"
                         + f"2026-01-02T00:02:00Z,{LONG},cpu_cores,1\n".encode()}),
    Case("ingest-app-option-traversal", ("ingest", "{work}/m.csv", "--app", "../../x"), ("--app", "'../../x'"),
         files={"m.csv": b"ts,metric,value\n2026-01-02T00:00:00Z,cpu_cores,1\n"}),
    Case("ingest-app-option-too-long", ("ingest", "{work}/m.csv", "--app", LONG), ("--app", "300 characters"),
         files={"m.csv": b"ts,metric,value\n2026-01-02T00:00:00Z,cpu_cores,1\n"}),
    Case("ingest-binary-file", ("ingest", "{work}/m.csv", "--app", "web"), ("m.csv",), files={"m.csv": BINARY}),
    Case("ingest-missing-file", ("ingest", "{work}/absent.csv", "--app", "web"), ("absent.csv",)),
    Case("ingest-mapping-wrong-shape", ("ingest", "{work}/m.csv", "--mapping", "{work}/map.yaml"), ("map",),
         files={"m.csv": b"ts,v\n2026-01-02T00:00:00Z,1\n", "map.yaml": b"- a list\n- not a mapping\n"}),
    Case("ingest-mapping-binary", ("ingest", "{work}/m.csv", "--mapping", "{work}/map.yaml"), ("map",),
         files={"m.csv": b"ts,v\n2026-01-02T00:00:00Z,1\n", "map.yaml": BINARY}),
    # -- plan -----------------------------------------------------------------------------------------
    Case("plan-app-bad-case", ("plan", "--app", "Bad_App"), ("'Bad_App'", "Kubernetes Service name")),
    Case("plan-app-traversal", ("plan", "--app", "../../x"), ("'../../x'",)),
    Case("plan-profile-traversal", ("plan", "--app", "web", "--profile", "{to_work}/evil"),
         ("profile", "'../"), files={"evil.yaml": PROFILE.encode()}),
    Case("plan-profile-absolute", ("plan", "--app", "web", "--profile", "{work}/evil"), ("profile",),
         files={"evil.yaml": PROFILE.encode()}),
    Case("plan-demand-empty", _plan("--demand", "{work}/d.csv"), ("d.csv",), files={"d.csv": b""}),
    Case("plan-demand-binary", _plan("--demand", "{work}/d.csv"), ("d.csv",), files={"d.csv": BINARY}),
    Case("plan-demand-binary-json", _plan("--demand", "{work}/d.json"), ("d.json",), files={"d.json": BINARY}),
    Case("plan-demand-negative", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "requests_per_second", "-5"),
         files=_demand("-5,100\n-5,100\n")),
    Case("plan-demand-huge", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "1e+308"),
         files=_demand("1e308,100\n1e308,100\n")),
    Case("plan-demand-not-numbers", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "requests_per_second"),
         files=_demand("lots,100\nmore,100\n")),
    Case("plan-demand-bad-ts", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "ts"),
         files=_demand("yesterday,3000,60000\nnoon,3000,60000\n", header="ts," + DEMAND)),
    Case("plan-demand-bad-level", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "@abc"),
         files=_demand("1,2,3,4\n", header="requests_per_second@abc,requests_per_second@0.5,"
                                           "connections@0.1,connections@0.5\n")),
    Case("plan-demand-level-out-of-range", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "1.5"),
         files=_demand("1,2,3,4\n", header="requests_per_second@0.5,requests_per_second@1.5,"
                                           "connections@0.5,connections@1.5\n")),
    Case("plan-demand-quantiles-crossed", _plan("--demand", "{work}/demand.csv"), ("demand.csv", "0.9"),
         files=_demand("3000,2000,60000,70000\n3000,2000,60000,70000\n",
                       header="requests_per_second@0.5,requests_per_second@0.9,connections@0.5,connections@0.9\n")),
    Case("plan-demand-json-wrong-shape", _plan("--demand", "{work}/d.json"), ("d.json",),
         files={"d.json": b'{"start": "2026-01-01T00:00:00Z", "step_seconds": 60, "metrics": "x", '
                          b'"quantiles": [0.5], "values": "nope"}'}),
    Case("plan-demand-json-a-list", _plan("--demand", "{work}/d.json"), ("d.json",), files={"d.json": b"[1, 2]"}),
    Case("plan-current-overflow", _plan("--current", f"c7g.2xlarge={OVERFLOW}"), ("--current", OVERFLOW)),
    Case("plan-current-negative", _plan("--current", "c7g.2xlarge=-3"), ("--current", "-3")),
    Case("plan-bad-setting", _plan(), ("PRESCALE_SEARCH__TRIALS",), env={"PRESCALE_SEARCH__TRIALS": OVERFLOW * 20}),
    # -- apply ----------------------------------------------------------------------------------------
    Case("apply-app-traversal", ("apply", "--app", "../../x", "--json"), ("'../../x'",)),
    Case("apply-app-bad-case", ("apply", "--app", "Bad_App", "--json"), ("'Bad_App'",)),
    Case("apply-demand-negative", ("apply", "--app", "web", "--demand", "{work}/demand.csv", "--json"),
         ("demand.csv", "-5"), files=_demand("-5,100\n-5,100\n")),
    Case("apply-state-wrong-shape", ("apply", "--app", "web", "--json"), ("state.json",), state=b"[]"),
    Case("apply-state-wrong-types", ("apply", "--app", "web", "--json"), ("state.json", "nodes"),
         state=b'{"version": 1, "world": {"nodes": "x"}}'),
    Case("apply-state-binary", ("apply", "--app", "web", "--json"), ("state.json",), state=BINARY),
    # -- train ----------------------------------------------------------------------------------------
    Case("train-app-traversal", ("train", "--app", "../x", "--json"), ("'../x'",)),
    Case("train-app-too-long", ("train", "--app", LONG), ("300 characters",)),
    Case("train-bad-preset", ("train", "--app", "web", "--preset", "../../x"), ("preset", "'../../x'")),
    # -- backtest -------------------------------------------------------------------------------------
    Case("backtest-app-traversal", ("backtest", "--app", "../../x", "--json"), ("'../../x'",)),
    Case("backtest-profile-traversal", ("backtest", "--app", "web", "--profile", "{to_work}/evil"),
         ("profile",), files={"evil.yaml": PROFILE.encode()}),
    Case("backtest-days-overflow", ("backtest", "--app", "web", "--days", "1e308"), ("--days",)),
    # -- demo and serve -------------------------------------------------------------------------------
    Case("demo-manifest-traversal-app", ("demo", "--quick", "--manifest", "{work}/m.yaml"), ("m.yaml", "../x"),
         files={"m.yaml": b"apps:\n  - {app: ../x, file: t.csv}\n", "t.csv": b"ts,metric,value\n"}),
    Case("demo-manifest-binary", ("demo", "--quick", "--manifest", "{work}/m.yaml"), ("m.yaml",),
         files={"m.yaml": BINARY}),
    Case("demo-manifest-wrong-shape", ("demo", "--quick", "--manifest", "{work}/m.yaml"), ("m.yaml", "apps"),
         files={"m.yaml": b"apps: {web: 1}\n"}),
    Case("serve-bad-port", ("serve",), ("PRESCALE_SERVE__PREFECT_PORT",), env={"PRESCALE_SERVE__PREFECT_PORT": "-1"}),
]
