"""core/schema.py: the schema gate derived from the (demo) data contract, and its error messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from mlops_recipes.contract import demo_contract
from mlops_recipes.core.schema import DataValidationError, validate_transactions
from mlops_recipes.params import ValidateParams

pytestmark = pytest.mark.unit

PARAMS = ValidateParams(min_rows=5, max_rows=1000, min_fraud_rate=0.01, max_fraud_rate=0.5)
CONTRACT = [
    "transaction_id",
    "event_timestamp",
    "customer_id",
    "merchant_id",
    "amount",
    "channel",
    "account_created_at",
    "is_fraud",
]


@pytest.fixture
def valid(make_transactions: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """Ten valid rows, one of them fraud (rate 0.1)."""
    return make_transactions(
        {
            "event_timestamp": f"2024-01-0{1 + i // 4} {i:02d}:00",
            "customer_id": 1 + i % 3,
            "merchant_id": 1 + i % 2,
            "amount": 5.0 + i,
            "channel": ("pos", "online", "atm")[i % 3],
            "is_fraud": int(i == 7),
        }
        for i in range(10)
    )


def _failures(frame: pd.DataFrame, params: ValidateParams = PARAMS) -> tuple[list[dict[str, Any]], str]:
    with pytest.raises(DataValidationError) as info:
        validate_transactions(frame, params, demo_contract())
    return info.value.failures, str(info.value)


def _find(failures: list[dict[str, Any]], column: str, check_part: str) -> dict[str, Any]:
    matches = [f for f in failures if f["column"] == column and check_part in f["check"]]
    assert matches, f"no failure for column {column!r} / check ~{check_part!r} in {failures}"
    return matches[0]


def test_generated_frame_passes_and_extra_columns_are_dropped(small_generated: pd.DataFrame) -> None:
    frame = small_generated.assign(note="x", score=0.5)

    valid, summary = validate_transactions(frame, ValidateParams(min_rows=100), demo_contract())

    assert list(valid.columns) == CONTRACT
    assert len(valid) == len(small_generated)
    assert summary.rows == len(small_generated)
    assert summary.fraud_rate == pytest.approx(small_generated["is_fraud"].mean())
    assert summary.customers == small_generated["customer_id"].nunique()


def test_summary_of_a_hand_built_frame(valid: pd.DataFrame) -> None:
    _, summary = validate_transactions(valid, PARAMS, demo_contract())

    assert summary.rows == 10
    assert summary.fraud_rate == pytest.approx(0.1)
    assert (summary.customers, summary.merchants) == (3, 2)
    assert summary.start == "2024-01-01T00:00:00+00:00"
    assert summary.end == "2024-01-03T09:00:00+00:00"
    assert "account_created_before_transaction" in summary.checks


def test_negative_amount(valid: pd.DataFrame) -> None:
    valid.loc[[2, 6], "amount"] = [-1.0, 0.0]

    failures, message = _failures(valid)

    failure = _find(failures, "amount", "in_range")
    assert failure["rows"] == [2, 6]
    assert failure["count"] == 2
    assert "column 'amount', check 'in_range" in message
    assert "rows [2, 6]" in message


def test_unknown_channel(valid: pd.DataFrame) -> None:
    valid.loc[4, "channel"] = "phone"

    failures, message = _failures(valid)

    failure = _find(failures, "channel", "isin")
    assert failure["rows"] == [4]
    assert failure["examples"] == ["phone"]
    assert "column 'channel'" in message
    assert "['phone']" in message


def test_missing_column(valid: pd.DataFrame) -> None:
    failures, message = _failures(valid.drop(columns="merchant_id"))

    failure = _find(failures, "<table>", "column_in_dataframe")
    assert failure["examples"] == ["merchant_id"]
    assert "merchant_id" in message


def test_duplicate_transaction_id(valid: pd.DataFrame) -> None:
    valid.loc[5, "transaction_id"] = valid.loc[8, "transaction_id"]

    failures, message = _failures(valid)

    failure = _find(failures, "transaction_id", "uniqueness")
    assert sorted(failure["rows"]) == [5, 8]
    assert "'transaction_id'" in message


def test_naive_timestamps(valid: pd.DataFrame) -> None:
    valid["event_timestamp"] = valid["event_timestamp"].dt.tz_localize(None)

    failures, message = _failures(valid)

    failure = _find(failures, "event_timestamp", "UTC")
    assert failure["examples"] == ["datetime64[ns]"]
    assert "'event_timestamp'" in message


def test_timestamps_in_another_zone_are_rejected(valid: pd.DataFrame) -> None:
    valid["account_created_at"] = valid["account_created_at"].dt.tz_convert("Europe/Paris")

    failures, _ = _failures(valid)

    _find(failures, "account_created_at", "UTC")


def test_too_few_rows(valid: pd.DataFrame) -> None:
    failures, message = _failures(valid, PARAMS.model_copy(update={"min_rows": 11}))

    failure = _find(failures, "<table>", "row_count")
    assert "row_count_between_11_and_1000" in failure["check"]
    assert "row_count" in message


def test_too_many_rows(valid: pd.DataFrame) -> None:
    failures, _ = _failures(valid, PARAMS.model_copy(update={"min_rows": 2, "max_rows": 9}))

    _find(failures, "<table>", "row_count_between_2_and_9")


@pytest.mark.parametrize("frauds", [[], [0, 1, 2, 3, 4, 5]], ids=["no-fraud", "60%-fraud"])
def test_fraud_rate_out_of_bounds(valid: pd.DataFrame, frauds: list[int]) -> None:
    valid["is_fraud"] = 0
    valid.loc[frauds, "is_fraud"] = 1

    failures, message = _failures(valid)

    _find(failures, "<table>", "fraud_rate_between_0.01_and_0.5")
    assert "fraud_rate_between_0.01_and_0.5" in message


def test_fraud_rate_at_the_bounds_passes(valid: pd.DataFrame) -> None:
    valid["is_fraud"] = [1] * 5 + [0] * 5  # exactly max_fraud_rate=0.5

    validated, _ = validate_transactions(valid, PARAMS, demo_contract())

    assert len(validated) == 10


def test_label_outside_zero_one(valid: pd.DataFrame) -> None:
    valid.loc[3, "is_fraud"] = 2

    failures, _ = _failures(valid)

    assert _find(failures, "is_fraud", "isin")["rows"] == [3]


def test_account_created_after_the_transaction(valid: pd.DataFrame) -> None:
    valid.loc[3, "account_created_at"] = valid.loc[3, "event_timestamp"] + pd.Timedelta(seconds=1)

    failures, message = _failures(valid)

    failing = [f for f in failures if f["check"] == "account_created_before_transaction"]
    assert failing
    assert all(f["rows"] == [3] for f in failing)
    assert "check 'account_created_before_transaction'" in message
    assert "rows [3]" in message


def test_account_created_at_the_transaction_instant_is_fine(valid: pd.DataFrame) -> None:
    valid.loc[3, "account_created_at"] = valid.loc[3, "event_timestamp"]

    validated, _ = validate_transactions(valid, PARAMS, demo_contract())

    assert len(validated) == 10


def test_several_broken_checks_are_all_reported(valid: pd.DataFrame) -> None:
    valid.loc[1, "amount"] = -5.0
    valid.loc[2, "channel"] = "fax"
    valid.loc[3, "customer_id"] = -3

    failures, message = _failures(valid)

    assert {f["column"] for f in failures} >= {"amount", "channel", "customer_id"}
    assert message.startswith(f"{len(failures)} schema check(s) failed")


def test_examples_are_capped_at_five_rows(valid: pd.DataFrame) -> None:
    valid["amount"] = -1.0

    failures, _ = _failures(valid)

    failure = _find(failures, "amount", "in_range")
    assert failure["count"] == 10
    assert failure["rows"] == [0, 1, 2, 3, 4]
