"""Forecast quality and training time on the real traces in ../shared/traces.

Series (attribution in ../shared/traces/README.md):
- NASA-HTTP requests at 1 minute and at 5 minutes (the 5-minute buckets summed from
  the 1-minute file; a bucket with any missing minute is missing, 1,444 of them);
- the three cluster aggregates' CPU: Alibaba 2018 ``cpu_util_percent``, Google 2019
  ``avg_cpu``, Azure 2019 ``cpu_usage`` (5 minutes; synthetic start dates);
- the 20 Azure V1 VMs with the highest mean CPU (``microsoft_avg_100.csv``, 5
  minutes, synthetic start 2017-01-01 UTC), with ONE global LSTM for all twenty.

Each series goes through exactly what ``prescale train`` runs (``models.train``,
default configuration, no registry): the last 20% held out, rolling origins at
every row, the 15-minute horizon at the series' step, the same windows for every
candidate, conformal calibration, the champion = lowest held-out MASE. Reported
per series: every candidate's MAE (all steps, last step), MASE, sMAPE, 80/90%
coverage raw and calibrated, training seconds, the champion, and the MAE ratio of
the best LSTM-based candidate (``lstm`` or ``lstm+<baseline>``) to the best of the
four baselines. Separately: the LSTM candidate (all its networks) trained on 14 days of
5-minute NASA data, timed.

The targets of issue 3 are evaluated from these numbers and printed with them,
met or not. Writes benchmarks/results/forecast.json and forecast.md
(``--quick``: fewer series and the small preset, to forecast-quick.*;
``--series nasa-5m,nasa-1m``: only the named series, default preset, to
forecast-series.*, for iterating on one kind of data; naming some of the VMs fits
the global LSTM on those only).

    .venv/bin/python benchmarks/forecast.py [--quick] [--series NAMES] [--traces ../shared/traces]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from models.baselines import BASELINES
from models.component import TrainPart
from models.components import is_learned
from models.lstm import LstmCandidate
from models.series import Panel, panel_from_wide
from models.train import PanelResult, TrainConfig, split_panel, train_panels

RESULTS = Path(__file__).parent / "results"
DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


# -- the traces ---------------------------------------------------------------------------------------

def nasa(traces: Path, step: str) -> Panel:
    raw = pd.read_csv(traces / "nasa_http" / "nasa_requests_1min_reconstructed.csv")
    raw.columns = ["ts", "requests"]
    index = pd.DatetimeIndex(pd.to_datetime(raw["ts"])).tz_localize("-04:00").tz_convert("UTC")
    series = pd.Series(raw["requests"].to_numpy(dtype=float), index=index)
    if step == "5min":
        series = series.resample("5min").sum(min_count=5)  # a bucket missing any minute is missing
    return panel_from_wide(series.to_frame("requests"), max_fill_steps=0)


def aggregates(traces: Path) -> dict[str, Panel]:
    files = {
        "alibaba2018-cpu": ("alibaba2018_machine_usage_300s.csv", "cpu_util_percent"),
        "google2019-cpu": ("google2019_instance_usage_300s.csv", "avg_cpu"),
        "azure2019-cpu": ("azure2019_vm_cpu_mem_300s.csv", "cpu_usage"),
    }
    out = {}
    for name, (file, column) in files.items():
        frame = pd.read_csv(traces / "cluster_aggregates" / file)
        index = pd.date_range("2020-01-06", periods=len(frame), freq="300s", tz="UTC")
        out[name] = panel_from_wide(pd.DataFrame({column: frame[column].to_numpy(dtype=float)}, index=index))
    return out


def per_vm(traces: Path, count: int) -> dict[str, Panel]:
    frame = pd.read_csv(traces / "azure_v1_pervm" / "microsoft_avg_100.csv").drop(columns=["step_5min"])
    frame.index = pd.date_range("2017-01-01", periods=len(frame), freq="300s", tz="UTC")
    top = frame.mean().sort_values(ascending=False).index[:count]
    return {f"vm-{vm}": panel_from_wide(frame[[vm]].rename(columns={vm: "cpu_pct"})) for vm in top}


# -- evaluation ---------------------------------------------------------------------------------------

def series_row(group: str, result: PanelResult) -> dict[str, Any]:
    row: dict[str, Any] = {"group": group, "series": result.key, "rows": len(result.panel),
                           "step_seconds": result.panel.step_seconds, "skipped": result.skipped}
    if result.skipped:
        return row
    candidates = {}
    for name, c in result.candidates.items():
        s = c.scores
        candidates[name] = {"mae": s.mae, "mae_last": s.mae_last, "mase": s.mase, "smape": s.smape,
                            "pinball": s.pinball, "coverage_80": s.coverage_80, "coverage_90": s.coverage_90,
                            "coverage_80_raw": s.coverage_80_raw, "coverage_90_raw": s.coverage_90_raw,
                            "train_seconds": c.train_seconds}
    baselines = [n for n in candidates if n in BASELINES]
    lstm_based = [n for n in candidates if is_learned(n)]
    best_base = min(baselines, key=lambda n: candidates[n]["mae"])
    best_base_last = min(candidates[n]["mae_last"] for n in baselines)
    row.update(candidates=candidates, champion=result.best, windows=len(result.split.test_origins),
               best_baseline=best_base, unavailable=result.unavailable)
    if lstm_based:
        best_lstm = min(lstm_based, key=lambda n: candidates[n]["mae"])
        row.update(
            best_lstm_based=best_lstm,
            ratio_mae=candidates[best_lstm]["mae"] / candidates[best_base]["mae"],
            ratio_mae_last=min(candidates[n]["mae_last"] for n in lstm_based) / best_base_last,
            ratio_mae_lstm_only=candidates["lstm"]["mae"] / candidates[best_base]["mae"] if "lstm" in candidates
            else None,
        )
    champion = candidates[result.best]
    row.update(champion_ratio_mae=champion["mae"] / candidates[best_base]["mae"],
               champion_ratio_mae_last=champion["mae_last"] / best_base_last,
               champion_coverage_90=champion["coverage_90"], champion_coverage_90_raw=champion["coverage_90_raw"])
    return row


def time_one_model(panel: Panel, config: TrainConfig, days: float = 14.0) -> dict[str, Any]:
    """Train the LSTM candidate (all its ``lstm_members`` networks) on the last ``days`` of a 5-minute panel
    (its split), timed end to end."""
    rows = int(days * 86_400 / panel.step_seconds)
    tail = Panel(panel.index[-rows:], panel.values[-rows:], panel.metrics, panel.step_seconds)
    split = split_panel(tail, config)
    started = time.perf_counter()
    members = LstmCandidate.fit_members([TrainPart(tail, split.train_stop, split.val_stop)], config)
    return {"days": days, "rows": rows, "seconds": time.perf_counter() - started,
            "epochs": sum(m.epochs_trained for m in members), "networks": len(members),
            "train_rows": int(split.train_stop)}


def targets(rows: list[dict[str, Any]], timing: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 3's targets, checked against the measured numbers."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r.get("skipped"):
            by_group.setdefault(r["group"], []).append(r)
    out = []
    for r in by_group.get("nasa", []):
        lstm_champion = is_learned(r["champion"])
        out.append(_target(f"{r['series']}: LSTM-based champion, MAE <= 0.95 x best baseline",
                           f"champion {r['champion']}, ratio {r['champion_ratio_mae']:.3f} "
                           f"(best LSTM-based {r.get('ratio_mae', float('nan')):.3f})",
                           lstm_champion and r["champion_ratio_mae"] <= 0.95))
        out.append(_target(f"{r['series']}: last-step MAE <= 0.90 x best baseline",
                           f"LSTM-based {r.get('ratio_mae_last', float('nan')):.3f}, champion "
                           f"{r['champion_ratio_mae_last']:.3f}",
                           lstm_champion and r["champion_ratio_mae_last"] <= 0.90))
    for r in by_group.get("aggregate", []):
        ratio = r.get("ratio_mae", float("nan"))
        ok = ratio <= 1.05 or r["champion"] in BASELINES
        out.append(_target(f"{r['series']}: LSTM-based <= 1.05 x best baseline, else a baseline is champion",
                           f"ratio {ratio:.3f}, champion {r['champion']}", ok))
    vms = by_group.get("per-vm", [])
    if vms:
        median = float(np.median([r.get("ratio_mae", np.nan) for r in vms]))
        worse_but_lstm = [r["series"] for r in vms if r.get("ratio_mae", 0) > 1.0 and is_learned(r["champion"])]
        out.append(_target("per-VM: median LSTM-based ratio <= 1.05 (baseline champion where worse)",
                           f"median {median:.3f}; LSTM-based champions where worse: {len(worse_but_lstm)}",
                           median <= 1.05 and not worse_but_lstm))
    coverages = [(r["series"], r["champion_coverage_90"]) for group in by_group.values() for r in group]
    outside = [f"{s} {c:.3f}" for s, c in coverages if not 0.87 <= c <= 0.93]
    lo, hi = min(c for _, c in coverages), max(c for _, c in coverages)
    out.append(_target("calibrated 90% coverage of the champion within 87-93% on every series",
                       f"range {lo:.3f}-{hi:.3f}" + (f"; outside: {', '.join(outside)}" if outside else ""),
                       not outside))
    if timing:
        out.append(_target("one LSTM trains in < 60 s on 14 days of 5-minute data",
                           f"{timing['seconds']:.1f} s ({timing.get('networks', 1)} network(s), "
                           f"{timing['epochs']} epochs in all)", timing["seconds"] < 60))
    return out


def _target(name: str, measured: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": measured, "met": bool(met)}


# -- report ------------------------------------------------------------------------------------------------

def markdown(payload: dict[str, Any]) -> str:
    lines = ["# Forecast benchmark", "",
             f"{payload['machine']['cpus']} CPUs, torch {payload['machine']['torch']} "
             f"({payload['machine']['torch_threads']} threads), preset `{payload['preset']}`, "
             f"{payload['seconds']:.0f} s in all. Held-out tail = last 20%, horizon 15 minutes, "
             "stride 1; MAE in the series' units; ratio = best LSTM-based / best baseline MAE.", "",
             "## Targets (issue 3)", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |" for t in payload["targets"]]
    lines += ["", "## Per series", "",
              "| series | champion | ratio MAE | ratio last | champion cov 90 (raw) | LSTM train s |",
              "|---|---|---:|---:|---:|---:|"]
    for r in payload["series"]:
        if r.get("skipped"):
            lines.append(f"| {r['series']} | skipped: {r['skipped']} | | | | |")
            continue
        lstm = r["candidates"].get("lstm", {})
        lines.append(
            f"| {r['series']} | {r['champion']} | {r.get('ratio_mae', float('nan')):.3f} | "
            f"{r.get('ratio_mae_last', float('nan')):.3f} | {r['champion_coverage_90']:.3f} "
            f"({r['champion_coverage_90_raw']:.3f}) | {lstm.get('train_seconds', float('nan')):.1f} |"
        )
    lines += ["", "## Every candidate", "",
              "| series | candidate | MAE | MAE last | MASE | sMAPE | cov 80 (raw) | cov 90 (raw) | train s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in payload["series"]:
        for name, c in sorted(r.get("candidates", {}).items(), key=lambda kv: kv[1]["mae"]):
            mark = " **(champion)**" if name == r["champion"] else ""
            lines.append(
                f"| {r['series']} | {name}{mark} | {c['mae']:.4g} | {c['mae_last']:.4g} | {c['mase']:.3f} | "
                f"{c['smape']:.1f} | {c['coverage_80']:.3f} ({c['coverage_80_raw']:.3f}) | "
                f"{c['coverage_90']:.3f} ({c['coverage_90_raw']:.3f}) | {c['train_seconds']:.1f} |"
            )
    timing = payload.get("timing")
    if timing:
        lines += ["", f"One LSTM candidate ({timing.get('networks', 1)} network(s)) on the last "
                      f"{timing['days']:.0f} days of 5-minute NASA data ({timing['rows']} rows): "
                      f"{timing['seconds']:.1f} s, {timing['epochs']} epochs in all."]
    lines += ["", "Per-VM series share one global LSTM: its training time is the same figure on every VM row.",
              "Traces: NASA-HTTP (Internet Traffic Archive), Azure Public Dataset V1/V2 (CC-BY-4.0), Alibaba "
              "cluster-trace-v2018, Google cluster data 2019 (CC-BY)."]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------------------

Groups = list[tuple[str, list[tuple[str, Panel]]]]


def select(groups: Groups, names: list[str]) -> Groups:
    """Only the series named (a group keeps the named members); unknown names are refused."""
    known = [key for _, panels in groups for key, _ in panels]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown series {unknown}; choose from {known}")
    kept = [(group, [(k, p) for k, p in panels if k in names]) for group, panels in groups]
    return [(group, panels) for group, panels in kept if panels]


def run(traces: Path, *, quick: bool, series: list[str] | None = None) -> dict[str, Any]:
    # one torch thread: on a shared 2-core host two threads measured 3-8x slower (spin-waiting)
    config = TrainConfig.preset("small") if quick else TrainConfig()
    groups: Groups = []
    five = nasa(traces, "5min")
    if quick:
        groups.append(("nasa", [("nasa-5m (last 21 days)", Panel(five.index[-21 * 288:], five.values[-21 * 288:],
                                                                   five.metrics, five.step_seconds))]))
        aggs = aggregates(traces)
        groups.append(("aggregate", [("alibaba2018-cpu", aggs["alibaba2018-cpu"])]))
        groups.append(("per-vm", list(per_vm(traces, 3).items())))
    else:
        groups.append(("nasa", [("nasa-5m", five)]))
        groups.append(("nasa", [("nasa-1m", nasa(traces, "1min"))]))
        groups += [("aggregate", [(name, panel)]) for name, panel in aggregates(traces).items()]
        groups.append(("per-vm", list(per_vm(traces, 20).items())))
    if series:
        groups = select(groups, series)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as progress:
        bar = progress.add_task("forecast benchmark", total=sum(len(p) for _, p in groups) + 1)
        for group, panels in groups:
            label = panels[0][0] if len(panels) == 1 else f"{group} ({len(panels)} series, one global LSTM)"
            progress.update(bar, description=label)
            def say(msg: str, label: str = label) -> None:
                progress.update(bar, description=f"{label}: {msg}")

            results = train_panels(panels, config, progress=say)
            for result in results:
                rows.append(series_row(group, result))
                progress.advance(bar)
        progress.update(bar, description="timing one LSTM on 14 days of 5-minute NASA")
        timing = time_one_model(five, config)
        progress.advance(bar)
    payload = {
        "preset": "small" if quick else "default", "quick": quick, "series_selected": series,
        "config": asdict(config),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version()},
        "series": rows, "timing": timing, "seconds": time.perf_counter() - started,
    }
    payload["targets"] = targets(rows, timing)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer series, the small preset (a smoke run)")
    parser.add_argument("--series", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                        help="only these series, comma-separated (e.g. nasa-5m,nasa-1m or vm-817395); "
                             "default preset unless --quick; results go to forecast-series.* (the VMs named "
                             "share one global LSTM fitted on them only)")
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="folder of the shared traces")
    args = parser.parse_args()
    if not args.traces.is_dir():
        raise SystemExit(f"no traces at {args.traces}: pass --traces PATH (see ../shared/traces/README.md)")
    payload = run(args.traces, quick=args.quick, series=args.series)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "forecast-series" if args.series else "forecast-quick" if args.quick else "forecast"
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1, default=_json))
    text = markdown(payload)
    (RESULTS / f"{stem}.md").write_text(text)
    Console().print(Markdown(text))


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
