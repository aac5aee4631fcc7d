r"""Error responses that always render: one shape per API, whatever the client sent.

FastAPI's default validation handler echoes the offending input, and Starlette renders JSON with
``allow_nan=False`` and UTF-8: a ``NaN`` anywhere in the body (``json.loads`` accepts it), or a string with a
lone surrogate (``"\ud800"`` is valid JSON), turned a 422 into a 500. Here every echoed value goes through
:func:`renderable` first.

Two shapes, by path: the scoring API answers ``{"detail": ...}`` (FastAPI's), the Open Inference Protocol
routes under ``/v2`` answer ``{"error": "<message>"}`` (the protocol's; its clients decode only that), with 400
where the scoring API says 422.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlops_recipes.observability import PROTOCOL_PREFIX
from serving.schemas import Problem

_MAX_DEPTH = 8  # deeper parts of an echoed input are elided: the location already names the field
_MAX_ITEMS = 64

# The error responses the scoring API documents on its routes (the protocol routes document their own).
PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {
        "model": Problem,
        "description": "The body cannot be parsed (invalid UTF-8, nested too deep, too many digits).",
    },
    401: {"model": Problem, "description": "Missing or wrong API key."},
    413: {"model": Problem, "description": "The body is larger than SERVING_MAX_BODY_BYTES."},
    503: {"model": Problem, "description": "No model loaded yet, or the online store is down."},
    504: {"model": Problem, "description": "Scoring took longer than SERVING_REQUEST_TIMEOUT_S."},
}


def is_protocol_path(path: str) -> bool:
    """Whether ``path`` is an Open Inference Protocol route (answered in the protocol's error shape)."""
    return path == PROTOCOL_PREFIX or path.startswith(PROTOCOL_PREFIX + "/")


def safe_text(text: str) -> str:
    """``text`` that encodes as UTF-8 (lone surrogates replaced)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def renderable(value: Any, depth: int = 0) -> Any:
    """A JSON-renderable copy of ``value``: non-finite numbers and raw bytes as strings, bounded in depth."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        items = list(value.items())[:_MAX_ITEMS]
        return {safe_text(str(k)): renderable(v, depth + 1) for k, v in items}
    if isinstance(value, Sequence):
        return [renderable(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    return safe_text(str(value))


def safe_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic/FastAPI error records reduced to renderable ``loc``, ``msg``, ``type``, ``input``, ``ctx``."""
    rendered = []
    for error in errors:
        item: dict[str, Any] = {
            "type": safe_text(str(error.get("type", "value_error"))),
            "loc": [part if isinstance(part, int) else safe_text(str(part)) for part in error.get("loc", ())],
            "msg": safe_text(str(error.get("msg", ""))),
        }
        if "input" in error:
            item["input"] = renderable(error["input"])
        if isinstance(error.get("ctx"), Mapping):
            item["ctx"] = {safe_text(str(k)): renderable(v) for k, v in error["ctx"].items()}
        rendered.append(item)
    return rendered


def summary(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line naming each failing field: ``inputs.0.data: Input should be a finite number; ...``."""
    parts = []
    for error in errors:
        loc = [str(part) for part in error["loc"] if part != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {error['msg']}")
    return "; ".join(parts)


def problem(path: str, status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error response in the shape of the API that ``path`` belongs to."""
    key = "error" if is_protocol_path(path) else "detail"
    return JSONResponse({key: safe_text(message)}, status_code=status, headers=dict(headers or {}))


def too_many(count: int, limit: int, loc: tuple[str, ...]) -> RequestValidationError:
    """The batch limit (a setting) as a validation error, in the same shape as the schema's own."""
    return RequestValidationError(
        [
            {
                "type": "too_long",
                "loc": loc,
                "msg": f"{count} items exceed the limit of {limit} per request",
                "input": None,
            }
        ]
    )


async def _validation_failed(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # noqa: S101 (registered for this type only)
    errors = safe_errors(error.errors())
    if is_protocol_path(request.url.path):
        return problem(request.url.path, 400, summary(errors))
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101 (registered for this type only)
    detail = error.detail if isinstance(error.detail, str) else str(renderable(error.detail))
    status = error.status_code
    if is_protocol_path(request.url.path) and status == 422:  # the protocol says 400 for a malformed request
        status = 400
    return problem(request.url.path, status, detail, error.headers)


def install_handlers(app: FastAPI) -> None:
    """Replace FastAPI's validation and HTTP error handlers with the ones above."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(StarletteHTTPException, _http_error)
