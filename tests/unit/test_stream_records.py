"""The pure parts of stream scoring: message and decision shapes, batching, backoff (mlops_recipes.core.stream)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_recipes.core.stream import (
    BODY_FIELD,
    PoisonMessage,
    backoff_s,
    dead_letter_fields,
    decision_fields,
    decode_body,
    disjoint_batches,
    entry_time_s,
    message_fields,
    read_decision,
)

pytestmark = pytest.mark.unit


def test_a_message_carries_the_predict_body_and_decodes_from_bytes() -> None:
    body = {"transaction_id": "t-1", "customer_id": 7, "amount": 12.5, "event_timestamp": "2026-12-01T10:00:00Z"}
    fields = {k.encode(): v.encode() for k, v in message_fields(body).items()}
    assert decode_body(fields) == body


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"payload": "{}"}, "no 'transaction' field"),
        ({BODY_FIELD: "{not json"}, "not JSON"),
        ({BODY_FIELD: "[1, 2]"}, "must be a JSON object, not list"),
        ({BODY_FIELD.encode(): b"\xff\xfe"}, "not JSON"),
    ],
)
def test_undecodable_messages_are_poison_with_a_reason(fields: dict[object, object], says: str) -> None:
    with pytest.raises(PoisonMessage, match=says):
        decode_body(fields)


def test_decisions_round_trip_with_source_and_latency() -> None:
    prediction = {"transaction_id": "t-1", "fraud_probability": 0.1 + 0.2, "is_fraud": False, "missing_features": []}
    fields = decision_fields(prediction, source_id="5-0", consumer="c", event_time_s=100.0, decided_at_s=100.25)
    assert all(isinstance(v, str) for v in fields.values())
    decoded = read_decision({k.encode(): v.encode() for k, v in fields.items()})
    assert decoded["fraud_probability"] == 0.1 + 0.2  # exact: JSON keeps a float's shortest repr
    assert decoded["latency_s"] == 0.25
    assert decoded["source_id"] == "5-0"
    assert decoded["is_fraud"] is False


def test_a_dead_letter_keeps_the_message_and_says_why() -> None:
    letter = dead_letter_fields({b"transaction": b"{x"}, source_id="1-0", error="bad", reason="schema", deliveries=3)
    assert letter == {"transaction": "{x", "source_id": "1-0", "error": "bad", "reason": "schema", "deliveries": "3"}


def test_entry_time_is_the_ids_milliseconds() -> None:
    assert entry_time_s(b"1764583200123-4") == pytest.approx(1764583200.123)


@given(st.lists(st.integers(min_value=0, max_value=5), max_size=40))
def test_disjoint_batches_keep_order_and_never_repeat_a_key(keys: list[int]) -> None:
    items = list(enumerate(keys))
    batches = disjoint_batches(items, lambda item: item[1])
    assert [item for batch in batches for item in batch] == items
    for batch in batches:
        assert len({k for _, k in batch}) == len(batch)
    # Greedy: each run ends only because the next key is already in it.
    for batch, following in itertools.pairwise(batches):
        assert following[0][1] in {k for _, k in batch}


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, base_s=0.5, max_s=3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_message_fields_are_compact_json() -> None:
    assert json.loads(message_fields({"a": 1})[BODY_FIELD]) == {"a": 1}
