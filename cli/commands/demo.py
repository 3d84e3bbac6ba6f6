"""`prescale demo`: the whole pipeline on bundled real traces, on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cli.commands.common import console, emit_json, quiet_flow_errors, run_guarded, settings_for_command
from prescale.demo import DEFAULT_MANIFEST, load_manifest
from prescale.metrics.validation import MetricsInputError


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        manifest: Path = typer.Option(DEFAULT_MANIFEST, "--manifest", help="Which traces become which apps."),
        quick: bool = typer.Option(False, "--quick", help="Less history and training (the test suite's mode)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Run the main job on the bundled traces (data/): ingest, train and register, replay under each policy.

        Four apps (web, analytics, inference, transcoder) from real traces: ingest them, train and register
        their forecasters in MLflow, then replay each app's last 2 days under the predictive, reactive,
        static and oracle policies and compare their costs at equal violations. About 4 minutes on 2
        cores (--quick: under 3). Everything lands under PRESCALE_HOME (default ./.prescale); every step
        is a Prefect flow run; `prescale serve` then shows them, and the models, in the two UIs.
        """

        def body() -> None:
            load_manifest(manifest)  # a bad manifest is refused before Prefect starts (the flow reads it again)
            settings = settings_for_command()
            if not as_json:
                console.print(f"prescale demo: state under [bold]{settings.home}[/] (starting Prefect, ~20 s) ...")
            from flows.demo import demo as demo_flow

            with quiet_flow_errors((MetricsInputError,)):
                result = demo_flow(manifest=str(manifest), quick=quick)
            if as_json:
                emit_json(result)
            else:
                print_summary(result)

        run_guarded(body, as_json=as_json, user_errors=(MetricsInputError,))


def print_summary(result: dict) -> None:
    ingest = Table(title="ingested")
    for column in ("app", "source", "read", "accepted", "quarantined", "note"):
        ingest.add_column(column, justify="right" if column in {"read", "accepted", "quarantined"} else "left")
    for rep in result["ingest"]:
        note = "already ingested" if rep["already_ingested"] else ""
        apps = ", ".join(rep["per_app"])
        ingest.add_row(
            apps, Path(rep["source"]).name, f"{rep['read']:,}", f"{rep['accepted']:,}", f"{rep['quarantined']:,}", note
        )
    console.print(ingest)
    stored = Table(title=f"stored in {result['store']}")
    for column in ("app", "rows", "metrics", "from", "to", "partitions"):
        stored.add_column(column)
    for row in result["stored"]:
        stored.add_row(
            row["app"], f"{row['rows']:,}", ", ".join(row["metrics"]), row["first"], row["last"], str(row["partitions"])
        )
    console.print(stored)
    models = Table(title="forecasters (MLflow)")
    for column in ("app", "phase", "champion", "promoted", "MASE", "cov90", "note"):
        models.add_column(column)
    for m in result["train"]["models"]:
        score = (m.get("scores") or {}).get(m.get("champion") or "", {})
        models.add_row(
            m["app"],
            m["phase"],
            str(m.get("champion") or "-"),
            str(m.get("promoted")),
            _fmt(score.get("mase")),
            _fmt(score.get("coverage_90")),
            m.get("skipped") or "",
        )
    console.print(models)
    if result.get("replay"):
        print_replays(result["replay"])
    console.print(f"MLflow runs and models: {result['tracking_uri']}", highlight=False)
    console.print(f"Prefect flow runs: recorded under {result['home']}/prefect", highlight=False)
    console.print("Open both UIs on this state: `prescale serve` (or `make serve`), then Prefect at "
                  "http://127.0.0.1:4200 and MLflow at http://127.0.0.1:5000", highlight=False)


def print_replays(replays: list[dict]) -> None:
    """One row per app: each policy's cost at the tightest budget both predictive and reactive meet (0.5% first)."""
    table = Table(title="replay: USD over each app's last days at equal violation budgets", box=box.SIMPLE)
    for column in ("app", "days", "budget", "predictive", "reactive", "static", "oracle", "vs react", "vs oracle"):
        table.add_column(column, justify="left" if column == "app" else "right", no_wrap=column == "app")
    for rep in replays:
        if "error" in rep:
            table.add_row(rep["app"], f"[red]failed: {escape(rep['error'])}[/]", *["-"] * 7)
            continue
        window = rep["window"]
        days = f"{window['scored_steps'] * window['step_seconds'] / 86400:.1f}"
        common = rep.get("common_budget")
        if common is None:
            table.add_row(rep["app"], days, "none", *["-"] * 6)
            continue
        costs = common["costs"]
        table.add_row(rep["app"], days, common["budget"],
                      *(_usd(costs.get(p)) for p in ("predictive", "reactive", "static", "oracle")),
                      _signed(common.get("vs_reactive")), _signed(common.get("over_oracle")))
    console.print(table)
    console.print("each app on the profile of its name; windows: "
                  + ", ".join(f"{r['app']} from {r['window']['start'][:16]}" for r in replays if "window" in r),
                  highlight=False)
    console.print("budget: the share of minutes capacity may fall short, the tightest of 0.5%, 1%, 2%, 5%, 10% "
                  "that both predictive and reactive meet; vs react: how much cheaper predictive is (negative: "
                  "dearer); vs oracle: how much dearer than hindsight", highlight=False)
    print_ex_ante(replays)
    for rep in replays:
        if "files" in rep:
            folder = rep["files"]["report"].rsplit("/", 1)[0]
            console.print(f"  {rep['app']}: plots and report.json in {folder}", highlight=False)


def print_ex_ante(replays: list[dict]) -> None:
    """One row per app: its SLO, the policy tuned before the window, and what it did there against reactive."""
    rows = [r for r in replays if r.get("ex_ante")]
    if not rows:
        return
    table = Table(title="prescale at each app's SLO, ex ante (tuned before the window, one run over it)",
                  box=box.SIMPLE)
    for column in ("app", "SLO", "rule", "short", "USD", "reactive same", "vs", "reactive 80%", "vs 80%"):
        table.add_column(column, justify="left" if column in ("app", "rule") else "right", no_wrap=column == "app")
    for rep in rows:
        ahead, slo = rep["ex_ante"], rep.get("slo", {})
        ours, default = ahead["predictive"], ahead.get("reactive_default") or {}
        table.add_row(rep["app"], f"{slo.get('violation_budget', 0):.1%}", ahead["policy"]["rule"],
                      f"{ours['violation_share']:.2%}", _usd(ours["cost"]), _usd(ahead["reactive_at_same_violations"]),
                      _signed(ahead.get("vs_reactive_same")),
                      f"{_usd(default.get('cost'))} ({default.get('violation_share', 0):.1%})",
                      _signed(ahead.get("vs_reactive_default")))
    console.print(table)
    console.print("SLO: the share of minutes capacity may fall short (the profile's slo.violation_budget); short: "
                  "the share it fell short; reactive same: reactive's cost at that share (its best setting, found "
                  "with hindsight); reactive 80%: the HPA default, with the share it fell short", highlight=False)


def _usd(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
