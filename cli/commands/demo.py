"""`prescale demo`: the whole pipeline on bundled real traces, on embedded defaults.

The console shows one line per stage (``prescale.demo.stage``; a spinner while it runs), then the result
tables, at most 80 columns wide, and the next steps. The flows' run logs go to ``<home>/logs/demo.log``
(``cli.runtime.logs_to_file``); ``prescale -v demo`` (or ``demo -v``) keeps them on the console.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.commands.common import (
    ConsoleProgress,
    console,
    emit_json,
    quiet_flow_errors,
    run_guarded,
    set_verbose,
    settings_for_command,
    verbose,
)
from cli.runtime import log_folder, logs_to_file
from prescale.demo import DEFAULT_MANIFEST, load_manifest, reporting_to
from prescale.metrics.validation import MetricsInputError

WIDTH = 80  # the final screen fits a classic terminal
# The replay's oracle solves its MILP chunk by chunk, each within its share of `replay.policies.oracle`'s time
# limit (120 s). On the demo's analytics window one chunk ran to its 60 s to close its last 0.18% of gap; with
# 30 s the schedule cost the same to 0.005% (307.26 against 307.25 USD) and took 16 s instead of 61 s, which
# keeps `make run` within 5 minutes. The other apps' oracles finish well within their shares. A value the
# user sets wins.
DEMO_ENVIRONMENT = {"PRESCALE_REPLAY__POLICIES__ORACLE__TIME_LIMIT_SECONDS": "30"}
MAX_CHANGES = 14  # rows of the loop's change table; the ledger holds them all


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        manifest: Path = typer.Option(DEFAULT_MANIFEST, "--manifest", help="Which traces become which apps."),
        quick: bool = typer.Option(False, "--quick", help="Less history, training and loop (the test suite's mode)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        loud: bool = typer.Option(False, "--verbose", "-v", help="Show the flows' run logs on the console."),
    ) -> None:
        """Run the main job on the bundled traces (data/): ingest, train, replay, then the every-minute loop.

        Four apps (web, analytics, inference, transcoder) from real traces: ingest them, train and register
        their forecasters in MLflow, replay each app's last 2 days under the predictive, reactive, static and
        oracle policies, then play the traces on today's clock and run the orchestrate flow (the every-minute
        loop of `prescale serve`) at ten instants of the last half hour on the simulated cluster: what it
        ordered, booted and released per app, make-before-break across kinds. About 4-5 minutes on 2 cores
        (--quick: under 3). Everything lands under PRESCALE_HOME (default ./.prescale), the flows' logs in
        its logs/ folder (-v: on the console); `prescale serve` then shows the runs and models in the two UIs.
        """
        if loud:
            set_verbose(True)

        def body() -> None:
            load_manifest(manifest)  # a bad manifest is refused before Prefect starts (the flow reads it again)
            for key, value in DEMO_ENVIRONMENT.items():
                os.environ.setdefault(key, value)
            settings = settings_for_command()
            log = log_folder(settings) / "demo.log"
            out = screen()
            progress = ConsoleProgress(out, spinner=not verbose())
            if not as_json:
                out.print(f"prescale demo: state under [bold]{escape(str(settings.home))}[/]")
                if not verbose():
                    out.print(f"the flows' logs: {escape(str(log))} (`prescale -v demo` shows them here)")
            from flows.demo import demo as demo_flow

            with quiet_flow_errors((MetricsInputError,)), logs_to_file(log, verbose=verbose()):
                if as_json:
                    result = demo_flow(manifest=str(manifest), quick=quick)
                else:
                    with reporting_to(progress):
                        progress.waiting("starting Prefect (a local API server, ~20 s)", "Prefect ready")
                        result = demo_flow(manifest=str(manifest), quick=quick)
            saved = settings.home / "demo.json"
            saved.write_text(json.dumps(result, indent=1, default=str) + "\n")
            if as_json:
                emit_json(result)
            else:
                print_summary(result, log=None if verbose() else log, saved=saved, out=out)

        run_guarded(body, as_json=as_json, user_errors=(MetricsInputError,))


def table(title: str, columns: list[str], *, right: set[str] = frozenset(), no_wrap: set[str] = frozenset()) -> Table:
    """A compact table: one space between columns (the box's divider), a rule under the header, the title on the
    left."""
    out = Table(title=title, box=box.SIMPLE_HEAD, padding=0, show_edge=False, title_justify="left")
    for column in columns:
        out.add_column(column, justify="right" if column in right else "left", no_wrap=column in no_wrap)
    return out


def screen() -> Console:
    """The console of the final tables: the terminal's, at most :data:`WIDTH` columns."""
    return Console(width=min(console.width, WIDTH), highlight=False)


def print_summary(result: dict, *, log: Path | None = None, saved: Path | None = None,
                  out: Console | None = None) -> None:  # fmt: skip
    """Every table of the demo, then where things are and the next steps."""
    out = out or screen()
    print_data(out, result)
    print_models(out, result["train"]["models"])
    if result.get("loop"):
        print_loop(out, result["loop"])
    if result.get("replay"):
        print_replays(result["replay"], out=out)
    print_next_steps(out, result, log, saved)


def print_data(out: Console, result: dict) -> None:
    reports = {app: rep for rep in result["ingest"] for app in rep["per_app"]}
    data = table(f"data: the metrics store {result['store']}", ["app", "rows", "from", "to", "trace"],
                 right={"rows"}, no_wrap={"app", "from", "to"})  # fmt: skip
    for row in result["stored"]:
        rep = reports.get(row["app"], {})
        data.add_row(row["app"], f"{row['rows']:,}", row["first"][:10], row["last"][:10],
                     Path(rep.get("source", "-")).name)  # fmt: skip
    out.print()
    out.print(data)


def print_models(out: Console, models: list[dict]) -> None:
    """Each app and phase's champion and its held-out scores; why a phase has none under the table."""
    scores = table("forecasters (MLflow): each app and phase's champion",
                   ["app", "phase", "champion", "promoted", "MASE", "cov90"], right={"MASE", "cov90"},
                   no_wrap={"app", "phase", "champion"})  # fmt: skip
    skipped = []
    for m in models:
        score = (m.get("scores") or {}).get(m.get("champion") or "", {})
        champion = m.get("champion") or ("skipped*" if m.get("skipped") else "-")
        scores.add_row(m["app"], m["phase"], champion, "yes" if m.get("promoted") else "no",
                       _fmt(score.get("mase")), _fmt(score.get("coverage_90")))  # fmt: skip
        if m.get("skipped"):
            skipped.append(f"* {m['app']} {m['phase']}: {_clip(m['skipped'], 150)}")
    out.print()
    out.print(scores)
    for line in skipped:
        out.print(escape(line))


def print_loop(out: Console, loop: dict) -> None:
    """Per app what the every-minute loop did, then its changes decision by decision."""
    first, last = loop["first"][11:16], loop["last"][11:16]
    apps = table(f"the every-minute loop: orchestrate at {loop['cycles']} instants, {first}-{last} UTC",
                 ["app", "ordered", "booted", "released", "now on", "USD/h", "demand"],
                 right={"ordered", "booted", "released"}, no_wrap={"app"})  # fmt: skip
    for app in loop["apps"]:
        apps.add_row(app["app"], _nodes(app["ordered"]), "-" if app["booted"] is None else str(app["booted"]),
                     _nodes(app["released"]), _kinds(app["kinds_last"]),
                     _span(app["cost_first"], app["cost_last"], ".2f"), _demand(app, loop))  # fmt: skip
    out.print()
    out.print(apps)
    print_changes(out, loop)
    out.print("Nodes over the loop (booted: lived its type's lead time); USD/h and demand at the first and last "
              "decision. Each plan is make-before-break: old capacity drains only once the new serves.")


def print_changes(out: Console, loop: dict) -> None:
    changes = _chosen([c for app in loop["apps"] for c in app["changes"]])
    if not changes:
        return
    shown, total = changes
    steps = table("what each decision changed (nodes)", ["at", "app", "ordered", "released", "then"],
                  no_wrap={"at", "app"})  # fmt: skip
    for change in shown:
        steps.add_row(change["at"][11:16], change["app"], _types(change["ordered"]), _types(change["released"]),
                      _then(change))  # fmt: skip
    out.print()
    out.print(steps)
    if total > len(shown):
        out.print(f"({total - len(shown)} more changes in the ledger: {loop['ledger']})")


def _chosen(changes: list[dict]) -> tuple[list[dict], int] | None:
    """At most :data:`MAX_CHANGES`: every migration and each app's first change first, then the earliest."""
    if not changes:
        return None
    by_time = sorted(changes, key=lambda c: (c["at"], c["app"]))
    firsts = {c["app"]: c for c in reversed(by_time)}
    keys = [id(c) for c in by_time if c["migration"] or firsts[c["app"]] is c]
    keys += [id(c) for c in by_time if id(c) not in keys]
    keep = set(keys[:MAX_CHANGES])
    return [c for c in by_time if id(c) in keep], len(changes)


def _then(change: dict) -> str:
    """What followed: the kinds left for others (and how long the new ones served first), the boot time, the
    outcome when the plan did not apply."""
    parts = []
    if change["outcome"] != "applied":
        parts.append(change["outcome"])
    move = change.get("migration")
    if move:
        text = f"moved {_kinds(move['left'])} -> {_kinds(move['to'])}"
        if move.get("ready_before_s") is not None:
            text += f" ({_kinds(move['to'])} served {move['ready_before_s'] / 60:.1f} min first)"
        parts.append(text)
    if change["ordered"] and change.get("boot_s"):
        parts.append(f"booted in {change['boot_s'] / 60:.1f} min")
    return "; ".join(parts)


def print_next_steps(out: Console, result: dict, log: Path | None, saved: Path | None = None) -> None:
    home = result["home"]
    loop = result.get("loop") or {}
    out.print()
    out.print("[bold]Where things are[/]")
    out.print(f"  replay plots and report.json: {home}/backtest/<app>/")
    if loop:
        out.print(f"  decision ledger: {loop['ledger']}")
        out.print(f"  simulated cluster: {loop['cluster']}")
    if log is not None:
        out.print(f"  logs of every flow run: {log}")
    if saved is not None:
        out.print(f"  all of the above as JSON: {saved}")
    out.print("[bold]Next[/]: `make serve` (or `prescale serve`), then open")
    out.print("  Prefect  http://127.0.0.1:4200  every run above, its logs and artifacts")
    out.print("  MLflow   http://127.0.0.1:5000  the models, their scores and forecast plots")


def print_replays(replays: list[dict], *, out: Console | None = None) -> None:
    """One row per app: each policy's cost at the tightest budget both predictive and reactive meet (0.5% first)."""
    out = out or screen()
    columns = ["app", "budget", "predictive", "reactive", "static", "oracle", "vs react", "vs oracle"]
    costs_table = table("replay: USD over each app's last days at equal violation budgets", columns,
                        right=set(columns[1:]), no_wrap={"app"})  # fmt: skip
    for rep in replays:
        if "error" in rep:
            costs_table.add_row(rep["app"], f"[red]failed: {escape(_clip(rep['error'], 60))}[/]", *["-"] * 6)
            continue
        common = rep.get("common_budget")
        if common is None:
            costs_table.add_row(rep["app"], "none", *["-"] * 6)
            continue
        costs = common["costs"]
        costs_table.add_row(rep["app"], common["budget"],
                      *(_usd(costs.get(p)) for p in ("predictive", "reactive", "static", "oracle")),
                      _signed(common.get("vs_reactive")), _signed(common.get("over_oracle")))
    out.print()
    out.print(costs_table)
    out.print("each app on the profile of its name; windows: "
              + ", ".join(f"{r['app']} {_days(r['window'])} d from {r['window']['start'][:16]}"
                          for r in replays if "window" in r))
    out.print("budget: the share of minutes capacity may fall short, the tightest of 0.5%, 1%, 2%, 5%, 10% "
              "that both predictive and reactive meet; vs react: how much cheaper predictive is (negative: "
              "dearer); vs oracle: how much dearer than hindsight")
    print_ex_ante(replays, out=out)


def print_ex_ante(replays: list[dict], *, out: Console | None = None) -> None:
    """One row per app: its SLO, the policy tuned before the window, and what it did there against reactive."""
    out = out or screen()
    rows = [r for r in replays if r.get("ex_ante")]
    if not rows:
        return
    columns = ["app", "SLO", "rule", "short", "USD", "reactive same", "vs", "HPA 80%", "vs 80%"]
    ahead_table = table("prescale at each app's SLO, ex ante (tuned before the window, one run over it)", columns,
                        right=set(columns) - {"app", "rule"}, no_wrap={"app", "rule", "HPA 80%"})  # fmt: skip
    for rep in rows:
        ahead, slo = rep["ex_ante"], rep.get("slo", {})
        ours, default = ahead["predictive"], ahead.get("reactive_default") or {}
        ahead_table.add_row(rep["app"], f"{slo.get('violation_budget', 0):.1%}", ahead["policy"]["rule"],
                      f"{ours['violation_share']:.2%}", _usd(ours["cost"]), _usd(ahead["reactive_at_same_violations"]),
                      _signed(ahead.get("vs_reactive_same")),
                      f"{_usd(default.get('cost'))} ({default.get('violation_share', 0):.1%})",
                      _signed(ahead.get("vs_reactive_default")))
    out.print()
    out.print(ahead_table)
    out.print("SLO: the share of minutes capacity may fall short (the profile's slo.violation_budget); short: "
              "the share it fell short; reactive same: reactive's cost at that share (its best setting, found "
              "with hindsight); HPA 80%: reactive at the HPA default target, with the share it fell short")


def _demand(app: dict, loop: dict) -> str:
    """The demand at the first and last decision, in the profile metric's unit (its name when the unit is long)."""
    metric = app.get("metric") or ""
    unit = loop.get("units", {}).get(app["app"], {}).get(metric, "")
    return f"{_span(app['demand_first'], app['demand_last'], ',.0f')} {unit if 0 < len(unit) <= 6 else metric}"


def _days(window: dict) -> str:
    return f"{window['scored_steps'] * window['step_seconds'] / 86400:.1f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _nodes(counts: dict[str, int]) -> str:
    return str(sum(counts.values())) if counts else "0"


def _types(counts: dict[str, int]) -> str:
    """One type a line, the most nodes first."""
    return "\n".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))) or "-"


def _kinds(kinds) -> str:
    return ",".join(kinds) or "none"


def _span(first, last, fmt: str) -> str:
    if first is None:
        return "-"
    return format(first, fmt) if last is None or format(first, fmt) == format(last, fmt) else \
        f"{format(first, fmt)}->{format(last, fmt)}"


def _usd(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
