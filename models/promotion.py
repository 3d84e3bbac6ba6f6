"""Whether a new model takes the ``champion`` alias: the rule, and the words that explain it.

The yardstick is the decision score on the held-out windows of *this* training
(``scoring.py``: the pinball loss at 0.9, 0.99 and 0.995 at the tiers' lead steps,
over the persistence scale, lower is better), computed for the new candidate and,
re-scored on the very same windows with the same calibration, for the current
champion. When either has no decision score (quantiles without the tail levels),
both are compared on MASE instead: the two numbers are never mixed. With margin ``r``:

    promote  <=>  there is no comparable champion, or  score_new <= (1 - r) * score_champion

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

from models.scoring import Scores, rank_key

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
    yardstick: str = "decision score"  # or "MASE" when one side has no decision score
    new_score: float | None = None
    champion_score: float | None = None

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


def judge(new: Scores, current: Scores | str | None, *, margin: float) -> Verdict:
    """Apply the rule of the module docstring. ``current``: the champion's scores, why it is incomparable, or None."""
    if current is None or isinstance(current, str):
        reason = ("first model for this app and phase" if current is None
                  else f"the current champion cannot be compared: {current}")
        return Verdict(True, reason, new.mase, None, margin, new.rank_label, new.rank_score)
    both = new.decision is not None and current.decision is not None
    label = "decision score" if both else "MASE"
    mine, theirs = (new.decision, current.decision) if both else (new.mase, current.mase)
    bar = (1.0 - margin) * theirs
    promote = mine <= bar
    if promote:
        gain = 1.0 - mine / theirs if theirs > 0 else 0.0
        reason = (f"{label} {mine:.4f} beats the champion's {theirs:.4f} on the same held-out windows "
                  f"by {gain:.1%} (margin {margin:.1%}; MASE {new.mase:.4f} vs {current.mase:.4f})")
    else:
        reason = (f"{label} {mine:.4f} does not beat the champion's {theirs:.4f} by the margin {margin:.1%} "
                  f"(needed <= {bar:.4f}) on the same held-out windows (MASE {new.mase:.4f} vs {current.mase:.4f})")
    return Verdict(promote, reason, new.mase, current.mase, margin, label, mine, theirs)


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
        "Decision score: pinball loss at 0.9, 0.99 and 0.995 at the tiers' lead steps over the persistence scale "
        "(lower is better; it ranks the candidates). Cov 99 / excess 99.5: at the slowest lead scored.",
        "",
        "| candidate | decision score | MAE | MAE last step | MASE | sMAPE | cov 80 | cov 90 | cov 90 raw "
        "| cov 99 | excess 99.5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in sorted(scores.items(), key=lambda kv: rank_key(kv[1])):
        last = _slowest_lead(s)
        lines.append(
            f"| {name} | {_f(s.get('decision'), 4)} | {_f(s['mae'])} | {_f(s['mae_last'])} | {_f(s['mase'], 4)} "
            f"| {_f(s['smape'], 2)} | {_p(s['coverage_80'])} | {_p(s['coverage_90'])} | {_p(s['coverage_90_raw'])} "
            f"| {_p(last.get('coverage_0.99'))} | {_f(last.get('excess_0.995'))} |"
        )
    return "\n".join(lines)


def _slowest_lead(s: dict) -> dict:
    tail = s.get("tail") or {}
    return max(tail.values(), key=lambda v: v.get("step", 0)) if tail else {}


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
