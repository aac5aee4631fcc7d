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
from dataclasses import asdict, dataclass
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
