"""Strictness of request fields: finite numbers, JSON booleans, RFC 3339 timestamps within a window of now.

Kept apart from :mod:`serving.schemas` (which says *which* fields a request has) so that the two change
independently: the field list may be derived from the data contract, these rules apply whatever it says.

- ``json.loads`` accepts ``NaN``, ``Infinity`` and ``1e400`` (→ inf): :data:`FiniteFloat` refuses them by name.
- pydantic's lax mode reads ``0``/``1`` as booleans, ``true`` as 1 and numbers as Unix times; the OpenAPI
  document says ``boolean``, ``integer`` and ``date-time``: :data:`StrictBool`, :data:`NOT_A_BOOLEAN` and
  :data:`Timestamp` accept only what the schema says.
- A timestamp from 1970 or 2099 is well-formed but meaningless for windowed features:
  :func:`event_time_errors` checks it against a window of now from the settings (``SERVING_MAX_*``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic import StrictBool as StrictBool

__all__ = ["NOT_A_BOOLEAN", "FiniteFloat", "StrictBool", "Timestamp", "event_time_errors"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic's lax mode reads true as 1; JSON Schema's integer excludes booleans
        raise ValueError("must be an integer, not a boolean")
    return value


# Goes after the field's constraints in ``Annotated[int, Field(...), NOT_A_BOOLEAN]``: before them, pydantic drops
# the constraints from the JSON schema (minimum/maximum).
NOT_A_BOOLEAN = BeforeValidator(_not_a_boolean)

# RFC 3339 section 5.6 date-time (what OpenAPI's ``format: date-time`` means): the offset is required.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_string(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # built in Python (tests, batch code): already a datetime
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError("must be an RFC 3339 date-time string with a time zone offset, e.g. 2026-11-30T14:05:00Z")
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone offset (e.g. Z for UTC)")
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_rfc3339_string), AfterValidator(_aware)]


def event_time_errors(
    stamps: Sequence[tuple[tuple[str | int, ...], dt.datetime | None]],
    *,
    now: dt.datetime,
    max_future_s: float,
    max_age_s: float,
) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape) for timestamps outside ``[now - max_age_s, now + max_future_s]``.

    ``stamps`` are ``(location, value)`` pairs; a missing value (None: "now") is always in the window.
    """
    earliest = now - dt.timedelta(seconds=max_age_s)
    latest = now + dt.timedelta(seconds=max_future_s)
    errors = []
    for loc, value in stamps:
        if value is None or earliest <= value <= latest:
            continue
        where = "in the future" if value > latest else "in the past"
        errors.append(
            {
                "type": "value_error",
                "loc": ("body", *loc),
                "msg": f"Value error, too far {where}: event_timestamp must lie between now - {max_age_s:g} s "
                f"(older events have no features to score with) and now + {max_future_s:g} s (clock skew)",
                "input": value.isoformat(),
            }
        )
    return errors
