"""The promotion gate: pure decision logic, so the whole decision table is unit-tested."""

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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for reports and tags."""
        return asdict(self) | {"reasons": list(self.reasons)}


def decide(
    *,
    metric: str,
    candidate_score: float,
    floor: float,
    min_improvement: float,
    champion_score: float | None,
) -> GateDecision:
    """Promote when the candidate clears the floor and beats the champion (if any) by the margin.

    Scores come from the same holdout. A missing or NaN champion score means there is nothing to beat.
    """

    def verdict(promote: bool, *reasons: str) -> GateDecision:
        return GateDecision(promote, reasons, metric, candidate_score, champion_score)

    if math.isnan(candidate_score):
        return verdict(False, f"candidate {metric} is NaN")
    if candidate_score < floor:
        return verdict(False, f"candidate {metric}={candidate_score:.4f} is below the floor {floor:.4f}")
    cleared = f"candidate {metric}={candidate_score:.4f} clears the floor {floor:.4f}"
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
