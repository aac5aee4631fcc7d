"""Structured JSON logs with the request id of the request being served."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Filled by the scoring routes, written by the middleware into the request's log line: which model versions and
# variants (champion / a canary's candidate) scored the request. A dict the route mutates, so that it reaches the
# middleware whatever context the route ran in.
scored_by: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("scored_by", default=None)


def note_scored(versions_and_variants: list[tuple[str, str]]) -> None:
    """Count ``(model_version, variant)`` pairs for the request's log line (no-op outside a request)."""
    record = scored_by.get()
    if record is not None:
        for version, variant in versions_and_variants:
            key = f"v{version} {variant}"
            record[key] = record.get(key, 0) + 1


# Attributes every LogRecord has; anything else passed with ``extra=`` goes into the JSON object.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        document: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            document["request_id"] = rid
        document.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure(level: str, *, json_logs: bool) -> None:
    """Route every logger (ours, uvicorn's, Feast's, MLflow's) to one stderr handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("serving", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True  # our middleware writes one access line per request
