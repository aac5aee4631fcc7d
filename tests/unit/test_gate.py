"""core/gate.py: the promotion decision table."""

from __future__ import annotations

import json
import math

import pytest

from mlops_recipes.core.gate import (
    GateDecision,
    SegmentScore,
    chance_score,
    check_segments,
    decide,
    skill,
    with_segments,
)

pytestmark = pytest.mark.unit

NAN = math.nan


@pytest.mark.parametrize(
    ("candidate", "floor", "margin", "champion", "promote", "mentions"),
    [
        pytest.param(0.29, 0.3, 0.0, None, False, ["0.2900", "below the floor 0.3000"], id="below-floor"),
        pytest.param(0.29, 0.3, 0.0, 0.1, False, ["0.2900", "0.3000"], id="below-floor-even-if-beats-champion"),
        pytest.param(0.3, 0.3, 0.0, None, True, ["0.3000", "clears the floor"], id="at-floor-exactly"),
        pytest.param(0.5, 0.3, 0.0, None, True, ["0.5000", "no champion"], id="first-model"),
        pytest.param(0.6, 0.3, 0.05, 0.5, True, ["0.6000", "0.5000", "+0.0500"], id="beats-champion-by-margin"),
        pytest.param(0.5, 0.3, 0.0, 0.5, True, ["beats champion", "0.5000"], id="equal-with-zero-margin"),
        pytest.param(0.52, 0.3, 0.05, 0.5, False, ["0.5000", "+0.0500", "needs 0.5500"], id="short-of-margin"),
        pytest.param(0.45, 0.3, 0.0, 0.5, False, ["0.4500", "0.5000"], id="worse-than-champion"),
        pytest.param(NAN, 0.3, 0.0, None, False, ["NaN"], id="nan-candidate"),
        pytest.param(NAN, 0.0, 0.0, 0.5, False, ["NaN"], id="nan-candidate-zero-floor"),
        pytest.param(0.4, 0.3, 0.0, NAN, True, ["no champion"], id="nan-champion-is-none"),
        pytest.param(0.48, 0.3, -0.05, 0.5, True, ["0.5000", "-0.0500"], id="negative-margin-tolerates-a-dip"),
        pytest.param(0.44, 0.3, -0.05, 0.5, False, ["needs 0.4500"], id="negative-margin-has-limits"),
    ],
)
def test_decision_table(
    candidate: float, floor: float, margin: float, champion: float | None, promote: bool, mentions: list[str]
) -> None:
    decision = decide(
        metric="pr_auc", candidate_score=candidate, floor=floor, min_improvement=margin, champion_score=champion
    )

    assert decision.promote is promote
    text = " | ".join(decision.reasons)
    assert "pr_auc" in text
    for fragment in mentions:
        assert fragment in text


def test_decision_records_its_inputs() -> None:
    decision = decide(metric="roc_auc", candidate_score=0.8, floor=0.5, min_improvement=0.01, champion_score=0.7)

    assert (decision.metric, decision.candidate_score, decision.champion_score) == ("roc_auc", 0.8, 0.7)


def test_as_dict_is_json_ready() -> None:
    decision = decide(metric="pr_auc", candidate_score=0.6, floor=0.3, min_improvement=0.0, champion_score=None)

    document = decision.as_dict()

    assert document["promote"] is True
    assert isinstance(document["reasons"], list)
    assert json.loads(json.dumps(document)) == document


def test_decision_is_immutable() -> None:
    decision = GateDecision(True, ("ok",), "pr_auc", 0.5, None)

    with pytest.raises(AttributeError):
        decision.promote = False  # type: ignore[misc]


# --- the floor relative to what the data allows (register.min_skill) -------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "chance", "min_skill", "promote", "mentions"),
    [
        # PR AUC 0.23 at a 0.5 % base rate: most of the achievable signal on such data (issue 11's file).
        pytest.param(0.23, 0.005, 0.1, True, ["skill 0.226", "chance 0.0050"], id="rare-fraud-modest-pr-auc"),
        # The same PR AUC on balanced data is worse than chance: refused.
        pytest.param(0.23, 0.5, 0.1, False, ["too little skill", "skill -0.540"], id="same-score-balanced-data"),
        # Shuffled labels: a PR AUC at about the base rate.
        pytest.param(0.0052, 0.005, 0.1, False, ["too little skill", "needs pr_auc >= 0.1045"], id="shuffled"),
        pytest.param(0.1045, 0.005, 0.1, True, ["skill 0.100"], id="at-the-relative-floor"),
    ],
)
def test_relative_floor(candidate: float, chance: float, min_skill: float, promote: bool, mentions: list[str]) -> None:
    decision = decide(
        metric="pr_auc",
        candidate_score=candidate,
        floor=0.0,
        min_improvement=0.0,
        champion_score=None,
        chance=chance,
        min_skill=min_skill,
    )
    assert decision.promote is promote
    reasons = " ".join(decision.reasons)
    for text in mentions:
        assert text in reasons, reasons
    assert "register.min_skill" in reasons
    assert decision.as_dict()["chance_score"] == chance


def test_chance_levels_per_metric() -> None:
    assert chance_score("pr_auc", base_rate=0.01, max_fpr=0.02) == 0.01
    assert chance_score("precision_at_k", base_rate=0.01, max_fpr=0.02) == 0.01
    assert chance_score("roc_auc", base_rate=0.01, max_fpr=0.02) == 0.5
    assert chance_score("recall_at_fpr", base_rate=0.01, max_fpr=0.02) == 0.02
    assert skill(1.0, 0.3) == pytest.approx(1.0)
    assert skill(0.3, 0.3) == 0.0


# --- per-segment checks -------------------------------------------------------------------------------------


def _segments(**scores: tuple[float, int]) -> dict[str, SegmentScore]:
    return {key.replace("__", "/"): SegmentScore(score, positives) for key, (score, positives) in scores.items()}


def test_a_candidate_that_regresses_on_one_segment_is_refused_while_the_global_metric_improves() -> None:
    champion = _segments(channel__online=(0.80, 40), channel__pos=(0.70, 30), account_age__new=(0.75, 20))
    candidate = _segments(channel__online=(0.90, 40), channel__pos=(0.80, 30), account_age__new=(0.60, 20))
    overall = decide(metric="pr_auc", candidate_score=0.85, floor=0.3, min_improvement=0.0, champion_score=0.78)
    assert overall.promote is True  # globally better

    failures, notes = check_segments(
        candidate, champion, metric="pr_auc", min_positives=10, floor=None, floors={}, max_regression=0.05
    )
    decision = with_segments(overall, failures, notes)

    assert decision.promote is False
    assert failures == (
        "segment account_age/new pr_auc=0.6000 regresses from the champion's 0.7500 by 0.1500 (more than 0.0500)",
    )
    assert decision.reasons[: len(overall.reasons)] == overall.reasons  # the global reasons stay


def test_segment_floor_and_per_segment_override() -> None:
    candidate = _segments(channel__online=(0.55, 40), channel__atm=(0.45, 12))

    failures, _ = check_segments(
        candidate,
        None,
        metric="pr_auc",
        min_positives=10,
        floor=0.5,
        floors={"channel/online": 0.6},
        max_regression=None,
    )

    assert failures == (
        "segment channel/atm pr_auc=0.4500 is below its floor 0.5000",
        "segment channel/online pr_auc=0.5500 is below its floor 0.6000",
    )


def test_small_or_undefined_segments_are_reported_not_gated() -> None:
    candidate = _segments(channel__atm=(0.1, 3), channel__pos=(NAN, 50), channel__online=(0.9, 40))

    failures, notes = check_segments(
        candidate, None, metric="pr_auc", min_positives=10, floor=0.5, floors={}, max_regression=0.0
    )

    assert failures == ()
    assert notes == (
        "1 segment(s) pass their pr_auc checks",
        "not gated (fewer than 10 frauds or undefined pr_auc): channel/atm, channel/pos",
    )


def test_segment_checks_never_promote_a_globally_refused_candidate() -> None:
    overall = decide(metric="pr_auc", candidate_score=0.2, floor=0.3, min_improvement=0.0, champion_score=None)

    decision = with_segments(overall, (), ("3 segment(s) pass their pr_auc checks",))

    assert decision.promote is False


def test_a_segment_the_champion_lacks_is_only_floor_checked() -> None:
    failures, _ = check_segments(
        _segments(channel__new_value=(0.2, 30)),
        _segments(channel__online=(0.9, 30)),
        metric="pr_auc",
        min_positives=10,
        floor=None,
        floors={},
        max_regression=0.0,
    )

    assert failures == ()
