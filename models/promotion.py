"""Whether a new model takes the ``champion`` alias: the rule, and the words that explain it.

The yardstick is MASE on the held-out windows of *this* training (see
``scoring.py``), computed for the new candidate and, re-scored on the very same
windows with the same calibration, for the current champion. With margin ``r``:

    promote  <=>  there is no comparable champion, or  MASE_new <= (1 - r) * MASE_champion

so a new version must be better by ``r`` (default 2%), not merely different: the
alias does not flap between two equal models every day. When the new version
loses it gets the alias ``challenger`` (and keeps it until the next training);
when it wins, the old champion loses its alias and gets nothing.

A champion that cannot be compared (it forecasts other metrics, another step or
horizon, or could not be loaded) is replaced, and the reason says so. Pure: the
registry adapter fetches both score sets and applies the verdict. (Named ``judge``
and ``Verdict``, not decide/Decision: those are the scaling rule's, ``prescale.decision``.)
"""

from __future__ import annotations

from dataclasses import dataclass

from models.scoring import Scores

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Verdict:
    """The outcome and its numbers, ready for a model version's description."""

    promote: bool
    reason: str
    new_mase: float
    champion_mase: float | None
    margin: float

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


def judge(new: Scores, current: Scores | str | None, *, margin: float) -> Verdict:
    """Apply the rule of the module docstring. ``current``: the champion's scores, why it is incomparable, or None."""
    if current is None:
        return Verdict(True, "first model for this app and phase", new.mase, None, margin)
    if isinstance(current, str):
        return Verdict(True, f"the current champion cannot be compared: {current}", new.mase, None, margin)
    bar = (1.0 - margin) * current.mase
    if new.mase <= bar:
        gain = 1.0 - new.mase / current.mase if current.mase > 0 else 0.0
        reason = (f"MASE {new.mase:.4f} beats the champion's {current.mase:.4f} on the same held-out windows "
                  f"by {gain:.1%} (margin {margin:.1%})")
        return Verdict(True, reason, new.mase, current.mase, margin)
    reason = (f"MASE {new.mase:.4f} does not beat the champion's {current.mase:.4f} by the margin {margin:.1%} "
              f"(needed <= {bar:.4f}) on the same held-out windows")
    return Verdict(False, reason, new.mase, current.mase, margin)


def describe(
    verdict: Verdict,
    *,
    candidate: str,
    scores: dict[str, dict[str, float | None]],
    champion_version: str | None,
    window: dict[str, str],
    notes: tuple[str, ...] = (),
) -> str:
    """Markdown for the version's description: the verdict, its numbers, every candidate's scores."""
    outcome = "**promoted to `champion`**" if verdict.promote else "**kept as `challenger`**"
    lines = [
        f"{outcome}: {verdict.reason}.",
        "",
        f"- candidate: `{candidate}`; previous champion: "
        f"{'v' + champion_version if champion_version else 'none'}",
        f"- trained on {window.get('train_start')} .. {window.get('train_end')}; "
        f"held-out {window.get('test_start')} .. {window.get('test_end')}",
        *[f"- {note}" for note in notes],
        "",
        "| candidate | MAE | MAE last step | MASE | sMAPE | cov 80 | cov 90 | cov 90 raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in sorted(scores.items(), key=lambda kv: kv[1]["mase"] or 0.0):
        lines.append(
            f"| {name} | {_f(s['mae'])} | {_f(s['mae_last'])} | {_f(s['mase'], 4)} | {_f(s['smape'], 2)} "
            f"| {_p(s['coverage_80'])} | {_p(s['coverage_90'])} | {_p(s['coverage_90_raw'])} |"
        )
    return "\n".join(lines)


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
