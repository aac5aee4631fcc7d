"""The pure parts of stream scoring: message and decision shapes, idempotency keys, batching, backoff.

The stream scorer (``serving.stream``) reads transactions from a stream and writes one decision per transaction
to another; everything here is independent of Redis so that producers (the traffic tool, benchmarks, tests) and
the scorer agree on one definition:

* an input message holds the transaction as the JSON body ``/predict`` takes, in the field :data:`BODY_FIELD`;
* a decision is the ``/predict`` answer, one field per key, each value JSON-encoded (``redis-cli`` shows it
  as written, any client decodes it with one ``json.loads`` per field), plus where and when it was decided;
* a dead letter keeps the original fields and says why it was refused and how often it was delivered;
* the idempotency key of a decision is the transaction id: a redelivered message, or a transaction published
  twice, finds its decision already written and is acknowledged without a second one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

BODY_FIELD = "transaction"

T = TypeVar("T")


class PoisonMessage(ValueError):
    """A message that can never be scored (not JSON, not an object, fails the request schema): a dead letter."""


def message_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """The stream fields of a transaction to score: its ``/predict`` body as JSON."""
    return {BODY_FIELD: json.dumps(dict(body), separators=(",", ":"), default=str)}


def decode_body(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """The ``/predict`` body of a message, or :class:`PoisonMessage` saying what is wrong with it."""
    raw = fields.get(BODY_FIELD, fields.get(BODY_FIELD.encode()))
    if raw is None:
        names = sorted(_text(name) for name in fields)
        raise PoisonMessage(f"no {BODY_FIELD!r} field (the transaction as JSON); fields: {names}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise PoisonMessage(f"the {BODY_FIELD!r} field is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise PoisonMessage(f"the {BODY_FIELD!r} field must be a JSON object, not {type(body).__name__}")
    return body


def entry_time_s(entry_id: bytes | str) -> float:
    """When Redis appended an entry (the milliseconds part of its id): the event time of a message without one."""
    return int(_text(entry_id).split("-", 1)[0]) / 1000.0


def decision_key(prefix: str, transaction_id: str) -> str:
    """The key that marks a transaction as decided (its value: the decision's entry id)."""
    return f"{prefix}:{transaction_id}"


def decision_fields(
    prediction: Mapping[str, Any], *, source_id: str, consumer: str, event_time_s: float, decided_at_s: float
) -> dict[str, str]:
    """The output entry of one decision: the ``/predict`` answer plus its source, consumer and latency."""
    record = {
        **prediction,
        "source_id": source_id,
        "consumer": consumer,
        "event_time": event_time_s,
        "decided_at": decided_at_s,
        "latency_s": decided_at_s - event_time_s,
    }
    return {name: json.dumps(value, separators=(",", ":")) for name, value in record.items()}


def read_decision(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """A decision entry back as values (the inverse of :func:`decision_fields`)."""
    return {_text(name): json.loads(value) for name, value in fields.items()}


def dead_letter_fields(
    fields: Mapping[Any, Any], *, source_id: str, error: str, reason: str, deliveries: int
) -> dict[str, str]:
    """A dead letter: the message's own fields, then why it was refused and how often it was delivered."""
    letter = {_text(name): _text(value) for name, value in fields.items()}
    letter.update({"source_id": source_id, "error": error, "reason": reason, "deliveries": str(deliveries)})
    return letter


def disjoint_batches(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Split ``items`` in order into runs in which no key appears twice.

    A batch is scored on the state before it; two transactions of one customer in one batch would both miss the
    other. Scoring the runs one after the other gives every transaction the state after all earlier ones of its
    customer, as ``/predict`` one call at a time and as the training rows (point in time).
    """
    batches: list[list[T]] = []
    seen: set[Hashable] = set()
    for item in items:
        k = key(item)
        if not batches or k in seen:
            batches.append([])
            seen = set()
        batches[-1].append(item)
        seen.add(k)
    return batches


def backoff_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """Wait before retry ``attempt`` (1, 2, ...): doubling from ``base_s``, at most ``max_s``."""
    return float(min(base_s * 2 ** max(attempt - 1, 0), max_s))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
