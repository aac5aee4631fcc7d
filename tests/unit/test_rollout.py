"""The pure parts of a rollout: sticky variant assignment, the record, the plan and a step's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_recipes.core.rollout import (
    Check,
    RolloutError,
    RolloutState,
    assign_variant,
    evaluate_check,
    failures,
    parse_plan,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_canary_share_is_within_two_points_over_ten_thousand_customers() -> None:
    for percent in (5.0, 25.0, 50.0):
        share = sum(assign_variant(c, salt="s1", percent=percent) == "candidate" for c in range(10_000)) / 100
        assert abs(share - percent) <= 2, (percent, share)


def test_assignment_is_sticky_and_growing_the_share_only_adds_customers() -> None:
    at5 = {c for c in range(5_000) if assign_variant(c, salt="s", percent=5) == "candidate"}
    at25 = {c for c in range(5_000) if assign_variant(c, salt="s", percent=25) == "candidate"}
    assert at5 == {c for c in range(5_000) if assign_variant(c, salt="s", percent=5) == "candidate"}
    assert at5 < at25
    other_salt = {c for c in range(5_000) if assign_variant(c, salt="t", percent=5) == "candidate"}
    assert len(at5 & other_salt) < len(at5) / 2  # another rollout samples other customers


def test_record_round_trips_and_refuses_bad_values() -> None:
    state = RolloutState("3", "canary", 5.0, "salt", "2026-12-01T00:00:00+00:00", step="2: canary 5%")
    assert RolloutState.from_json(state.to_json()) == state
    assert state.with_step(mode="canary", percent=25, step="3").salt == "salt"
    finished = state.finished("aborted", reason="error ratio", at="later")
    assert not finished.running
    assert finished.reason == "error ratio"
    with pytest.raises(RolloutError, match="percent"):
        RolloutState("3", "canary", 101, "s", "t")
    with pytest.raises(RolloutError, match="mode"):
        RolloutState("3", "blue-green", 5, "s", "t")  # type: ignore[arg-type]
    with pytest.raises(RolloutError, match="unreadable"):
        RolloutState.from_json('{"version": 3}')


def test_the_project_plan_is_valid_and_names_its_checks() -> None:
    plan = parse_plan(yaml.safe_load((REPO_ROOT / "monitoring/rollout-plan.yaml").read_text()))
    assert plan.steps[0].mode == "shadow"
    assert plan.steps[-1].percent == 50
    for step in plan.steps:
        for check in plan.checks_of(step):
            assert "$candidate" not in check.promql(candidate="4", champion="3")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"mode": "canary", "percent": 5, "duration_s": 60, "checks": ["nope"]}]}, "not defined"),
        ({"steps": [{"mode": "canary", "percent": 0, "duration_s": 60}]}, "percent"),
        (
            {"checks": [{"name": "x", "query": "up"}], "steps": [{"mode": "shadow", "percent": 1, "duration_s": 1}]},
            "max or min",
        ),
        (
            {
                "checks": [{"name": "x", "query": "$who", "max": 1}],
                "steps": [{"mode": "shadow", "percent": 1, "duration_s": 1}],
            },
            "placeholder",
        ),
        ({"steps": [{"mode": "shadow", "percent": 1, "duration_s": 1, "typo": 1}]}, "typo"),
    ],
)
def test_a_bad_plan_is_one_clear_error(document: dict[str, object], message: str) -> None:
    with pytest.raises(RolloutError, match=message):
        parse_plan(document)


def test_checks_pass_fail_or_are_inconclusive_without_data() -> None:
    ceiling = Check(name="error_ratio", query="x", max=0.01)
    floor = Check(name="recall", query="y", min=0.5, required=True)
    results = [
        evaluate_check(ceiling, 0.0),
        evaluate_check(ceiling, 0.2),
        evaluate_check(ceiling, None),
        evaluate_check(ceiling, float("nan")),
        evaluate_check(floor, None),
    ]
    assert [r.passed for r in results] == [True, False, None, None, False]
    assert [r.name for r in failures(results)] == ["error_ratio", "recall"]
    assert [r.name for r in failures(results, final=False)] == ["error_ratio"]  # recall: judged at the end
    assert failures([evaluate_check(floor, 0.1)], final=False) == []
    assert "0.2 (> 0.01)" in results[1].detail
