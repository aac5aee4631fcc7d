"""core/segments.py: segment labels from data-contract columns, and metrics per segment."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops_recipes.core.segments import as_document, assign, assign_all, from_document, mlflow_metrics, segment_metrics
from mlops_recipes.params import DEFAULT_SEGMENTS, ParamsError, SegmentParams, parse_params

pytestmark = pytest.mark.unit

NOW = pd.Timestamp("2026-11-30T12:00:00Z")


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_timestamp": [NOW] * 5,
            "channel": ["online", "pos", "atm", "online", None],
            "amount": [10.0, 50.0, 199.99, 200.0, np.nan],
            "account_created_at": [NOW - pd.Timedelta(days=d) for d in (1, 29.9, 30, 400)] + [pd.NaT],
        }
    )


def test_values_bands_and_ages(frame: pd.DataFrame) -> None:
    labels = assign_all(frame, (SegmentParams(name="channel", column="channel"), *DEFAULT_SEGMENTS))

    assert list(labels["channel"]) == ["online", "pos", "atm", "online", "missing"]
    # Bands are [lo, hi): 50 is in the middle band, 200 in the top one.
    assert list(labels["amount_band"]) == ["under_50", "50_to_200", "50_to_200", "over_200", "missing"]
    # A timestamp is banded by its age in days at the transaction.
    assert list(labels["account_age"]) == ["new", "new", "established", "established", "missing"]


def test_default_band_labels(frame: pd.DataFrame) -> None:
    labels = assign(frame, SegmentParams(name="amount", column="amount", bands=(50, 200)))

    assert list(labels)[:4] == ["under_50", "50_to_200", "50_to_200", "over_200"]


def test_unknown_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="merchant_category"):
        assign(frame, SegmentParams(name="mcc", column="merchant_category"))


def test_metrics_per_segment_by_hand() -> None:
    y = np.array([1, 0, 0, 1, 0, 0])
    s = np.array([0.9, 0.2, 0.6, 0.4, 0.1, 0.3])
    labels = pd.DataFrame({"channel": ["a", "a", "a", "b", "b", "b"]})

    table = segment_metrics(y, s, labels, threshold=0.5).set_index("segment")

    assert table.loc["channel/a", "rows"] == 3
    assert table.loc["channel/a", "positives"] == 1
    assert table.loc["channel/a", "roc_auc"] == pytest.approx(1.0)
    assert table.loc["channel/a", "precision_at_threshold"] == pytest.approx(0.5)  # 0.9 and 0.6 flagged
    assert table.loc["channel/b", "recall_at_threshold"] == pytest.approx(0.0)  # its fraud scored 0.4
    assert math.isnan(table.loc["channel/b", "precision_at_threshold"])  # nothing flagged


def test_single_class_segment_has_no_ranking_metrics() -> None:
    table = segment_metrics(
        np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9]), pd.DataFrame({"c": ["x", "x", "y"]}), threshold=0.5
    )

    only_legit = table.set_index("segment").loc["c/x"]
    assert math.isnan(only_legit["pr_auc"])
    assert math.isnan(only_legit["recall_at_threshold"])


def test_document_round_trip_and_mlflow_keys() -> None:
    y = np.array([1, 0, 0, 1, 0, 0])
    s = np.array([0.9, 0.2, 0.6, 0.4, 0.1, 0.3])
    table = segment_metrics(y, s, pd.DataFrame({"channel": ["a", "a", "a", "b", "b", "b"]}), threshold=0.5)

    document = as_document(table)
    back = from_document(document)

    assert document["channel"]["b"]["precision_at_threshold"] is None
    pd.testing.assert_frame_equal(back.round(6), table.round(6), check_dtype=False)
    keys = mlflow_metrics(table)
    assert keys["segment/channel/a/roc_auc"] == pytest.approx(1.0)
    assert "segment/channel/b/precision_at_threshold" not in keys  # undefined: left out
    assert keys["segment/channel/b/rows"] == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"evaluate": {"segments": [{"name": "a", "column": "amount", "bands": [200, 50]}]}}, "ascending"),
        ({"evaluate": {"segments": [{"name": "a", "column": "amount", "bands": [50], "labels": ["x"]}]}}, "2 labels"),
        ({"evaluate": {"segments": [{"name": "a", "column": "c"}, {"name": "a", "column": "d"}]}}, "unique"),
        ({"evaluate": {"segments": [{"name": "bad name", "column": "c"}]}}, "evaluate.segments.0.name"),
        ({"register": {"segments": {"floors": {"merchant/x": 0.5}}}}, "merchant/x"),
    ],
)
def test_segment_params_are_validated(override: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_params(override)
