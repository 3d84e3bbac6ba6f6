"""`backtest`: replay the last days of one app under every policy and compare them. Wiring only.

load the app's rows, its catalog and profile -> prepare (metric, grid, window, units, the SLO's tuning
stretch just before the window) -> train the forecaster on the history before the stretch and forecast every
step of the stretch and the window (batched) -> one ``replay-policy`` task per chosen policy (any registered
in ``prescale.replay.policies``: predictive, reactive and static sweeps, the oracle, the published references
AWS predictive scaling and Crane's EHPA; each with its settings from ``replay.policies``) -> ``ex-ante``: the
app's SLO policy tuned on the stretch, run once over the window with its controller, against reactive and the
references at the same realised violations -> scores, frontiers and costs at
equal violation budgets -> PNGs and ``report.json`` under ``<output>/<app>/`` -> a markdown artifact with the
table. Returns the ``prescale backtest --json`` object (plus ``files``).

Tasks run one at a time (``max_workers=1``): the replay is CPU-bound Python, and the policies share one
cache of covers. Large inputs are passed ``quote``-d: Prefect then neither walks them for futures nor
iterates a ``Catalog`` (which iterates its types) as if it were a mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from prescale.replay import POLICIES, BacktestResult, ReplayConfig
from prescale.replay.covers import CoverCache
from prescale.replay.engine import count_runs, runnable
from prescale.replay.policies import REFERENCES
from prescale.settings import load_settings
from tasks.backtest import (
    ex_ante_task,
    forecast_task,
    load_history,
    load_profile,
    prepare_task,
    publish_artifact,
    replay_task,
    write_report,
)
from tasks.train import checkpoints_folder


@flow(name="backtest", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def backtest(
    app: str,
    profile: str | None = None,
    days: float | None = None,
    metric: str | None = None,
    forecaster: str | None = None,
    policies: list[str] | None = None,
    peak_scale: float | None = None,
    tune_days: float | None = None,
) -> dict[str, Any]:
    settings = load_settings()
    overrides = {"days": days, "metric": metric, "forecaster": forecaster, "peak_scale": peak_scale,
                 "tune_days": tune_days}
    rs = settings.replay.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    config = ReplayConfig.from_settings(rs, policies=policies)  # an unknown policy fails here, before any I/O
    catalog, app_profile = load_profile(app, str(settings.search.catalog), str(settings.search.profiles), profile)
    rows = load_history(app, str(settings.store.root))
    prepared = prepare_task(app, quote(rows), quote(catalog), quote(app_profile), rs)
    with_forecast = any(POLICIES[p].needs_forecast for p in config.policies)
    inp, stretch = forecast_task(quote(prepared), settings.forecast, rs, with_forecast,
                                 scratch=checkpoints_folder(settings.home))
    fleet = prepared.fleet
    covers = CoverCache(fleet, resolution=config.cover_resolution)
    chosen = runnable(inp, config)
    total = sum(count_runs(p, inp, fleet, config) for p in chosen)
    results, seconds, done = {}, {}, 0
    for policy in chosen:
        results[policy], seconds[policy] = replay_task(policy, quote(inp), quote(fleet), config, quote(covers),
                                                       done, total)
        done += count_runs(policy, inp, fleet, config)
    budget = settings.slo.budget_for(app, app_profile.slo.violation_budget)
    slo: dict[str, Any] = {"violation_budget": budget}
    ahead = None
    if stretch is not None and "reactive" in results:
        references = {name: results[name] for name in REFERENCES if name in results}
        ahead = ex_ante_task(quote(stretch), quote(inp), quote(fleet), budget, quote(results["reactive"]), config,
                             quote(covers), quote(references))
    else:
        slo["note"] = prepared.stretch_note or "no ex-ante comparison: it needs forecasts and the reactive sweep"
    outcome = BacktestResult(inp, fleet, config, results, covers.stats, seconds, slo=slo, ex_ante=ahead)
    summary = outcome.to_dict()
    folder = Path(rs.output or settings.home / "backtest") / app
    files = write_report(quote(outcome), str(folder))
    publish_artifact(summary, files)
    _log(summary)
    return {**summary, "files": files}


def _log(summary: dict[str, Any]) -> None:
    logger = get_run_logger()
    for name, costs in summary["budget_costs"].items():
        logger.info("%s: cost at each budget %s (headline %s)", name, costs, summary["policies"][name]["setting"])
    for budget, c in summary["comparison"].items():
        logger.info("budget %s: predictive %s, over oracle %s", budget,
                    ", ".join(f"{k} {v}" for k, v in c.items() if k.startswith("vs_")), c["over_oracle"])
