"""The promotion gate: pure decision logic, so the whole decision table is unit-tested.

Two floors: an absolute one (``register.floor``, on the metric's own scale) and one relative to what the data
allows, ``register.min_skill``: the share of the way from chance to a perfect score that the candidate must
cover, ``(score - chance) / (1 - chance)``. Chance is what a model that ranks at random scores on the same
holdout (:func:`chance_score`): the base rate for PR AUC and precision@k, 0.5 for ROC AUC, the FPR budget for
recall at that FPR. A PR AUC of 0.23 means little on balanced data and a lot at a 0.5 % fraud rate; the skill
says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class GateDecision:
    """Whether the candidate becomes champion, and why."""

    promote: bool
    reasons: tuple[str, ...]
    metric: str
    candidate_score: float
    champion_score: float | None
    # What a random ranking scores on the same holdout (None: the relative floor was not applied).
    chance_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for reports and tags."""
        return asdict(self) | {"reasons": list(self.reasons)}


def chance_score(metric: str, *, base_rate: float, max_fpr: float) -> float:
    """The metric's expected value for a model that ranks the holdout at random."""
    if metric in {"pr_auc", "precision_at_k"}:
        return base_rate
    if metric == "roc_auc":
        return 0.5
    if metric == "recall_at_fpr":
        return max_fpr
    raise ValueError(f"no chance level known for metric {metric!r}")


def skill(score: float, chance: float) -> float:
    """The share of the way from chance (0) to a perfect score (1); negative below chance."""
    return (score - chance) / (1.0 - chance) if chance < 1.0 else 0.0


def decide(
    *,
    metric: str,
    candidate_score: float,
    floor: float,
    min_improvement: float,
    champion_score: float | None,
    chance: float | None = None,
    min_skill: float = 0.0,
) -> GateDecision:
    """Promote when the candidate clears the floors and beats the champion (if any) by the margin.

    Scores come from the same holdout. A missing or NaN champion score means there is nothing to beat.
    ``chance`` (see :func:`chance_score`) enables the relative floor ``min_skill``.
    """

    def verdict(promote: bool, *reasons: str) -> GateDecision:
        return GateDecision(promote, reasons, metric, candidate_score, champion_score, chance)

    if math.isnan(candidate_score):
        return verdict(False, f"candidate {metric} is NaN")
    if candidate_score < floor:
        return verdict(False, f"candidate {metric}={candidate_score:.4f} is below the floor {floor:.4f}")
    cleared = f"candidate {metric}={candidate_score:.4f} clears the floor {floor:.4f}"
    if chance is not None:
        achieved = skill(candidate_score, chance)
        relative = (
            f"skill {achieved:.3f} over chance {chance:.4f} (register.min_skill {min_skill:.3f}: needs "
            f"{metric} >= {chance + min_skill * (1.0 - chance):.4f})"
        )
        if achieved < min_skill - 1e-9:  # a score printed as exactly the floor clears it
            return verdict(False, cleared, f"too little skill: {relative}")
        cleared = f"{cleared}; {relative}"
    if champion_score is None or math.isnan(champion_score):
        return verdict(True, cleared, "no champion to beat")
    needed = champion_score + min_improvement
    if candidate_score >= needed:
        return verdict(
            True, cleared, f"beats champion {metric}={champion_score:.4f} by at least {min_improvement:+.4f}"
        )
    return verdict(
        False,
        cleared,
        f"does not beat champion {metric}={champion_score:.4f} by {min_improvement:+.4f} (needs {needed:.4f})",
    )


@dataclass(frozen=True)
class SegmentScore:
    """One segment's gated metric on the holdout, and how many frauds it holds."""

    score: float
    positives: int


def check_segments(
    candidate: Mapping[str, SegmentScore],
    champion: Mapping[str, SegmentScore] | None,
    *,
    metric: str,
    min_positives: int,
    floor: float | None,
    floors: Mapping[str, float],
    max_regression: float | None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per-segment checks: (failures, notes). The candidate passes when there are no failures.

    A segment is gated when it holds at least ``min_positives`` frauds and its metric is defined. It fails
    below its floor (``floors[key]``, else ``floor``), or when it falls more than ``max_regression`` below the
    champion's score on the same segment (champion re-scored on the same holdout).
    """
    failures: list[str] = []
    skipped: list[str] = []
    gated = 0
    for key, seg in sorted(candidate.items()):
        if seg.positives < min_positives or math.isnan(seg.score):
            skipped.append(key)
            continue
        gated += 1
        bound = floors.get(key, floor)
        if bound is not None and seg.score < bound:
            failures.append(f"segment {key} {metric}={seg.score:.4f} is below its floor {bound:.4f}")
        theirs = champion.get(key) if champion else None
        if max_regression is not None and theirs is not None and not math.isnan(theirs.score):
            drop = theirs.score - seg.score
            if drop > max_regression:
                failures.append(
                    f"segment {key} {metric}={seg.score:.4f} regresses from the champion's {theirs.score:.4f} "
                    f"by {drop:.4f} (more than {max_regression:.4f})"
                )
    notes = []
    if not failures:
        notes.append(f"{gated} segment(s) pass their {metric} checks")
    if skipped:
        notes.append(f"not gated (fewer than {min_positives} frauds or undefined {metric}): {', '.join(skipped)}")
    return tuple(failures), tuple(notes)


def with_segments(decision: GateDecision, failures: tuple[str, ...], notes: tuple[str, ...]) -> GateDecision:
    """The global decision combined with the segment checks: any segment failure refuses the candidate."""
    return replace(decision, promote=decision.promote and not failures, reasons=(*decision.reasons, *failures, *notes))
