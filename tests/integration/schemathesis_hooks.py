"""schemathesis hooks for the service's run-time rules that JSON Schema cannot state.

``event_timestamp`` must lie within a window of *now* (``SERVING_MAX_EVENT_AGE_S`` before, ``SERVING_MAX_CLOCK_SKEW_S``
after; the schema's description says so): a schema cannot express a range relative to the clock, so schema-valid
(positive) cases get a timestamp inside the window; negative cases are sent as generated. The window itself is
tested in ``test_serving_errors.py`` (1970, 2099).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import schemathesis


def _in_window(item: Any) -> None:
    if isinstance(item, dict) and isinstance(item.get("event_timestamp"), str):
        item["event_timestamp"] = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Timestamps of positive cases into the window of now."""
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return
    _in_window(case.body)
    for item in case.body.get("transactions") or []:
        _in_window(item)
