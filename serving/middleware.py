"""Pure-ASGI middleware: request id, body-size limit, access log and HTTP metrics in one pass."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops_recipes.observability import PROBE_ROUTES, UNMATCHED_ROUTE, status_class
from serving.errors import is_protocol_path
from serving.logs import request_id, scored_by
from serving.metrics import ServiceMetrics

_log = logging.getLogger("serving.access")
_REQUEST_ID_HEADER = b"x-request-id"


class BodyTooLarge(HTTPException):
    """The request body exceeded the limit (an HTTPException, so body parsing does not turn it into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body exceeds {limit} bytes")


class ServiceMiddleware:
    """Wraps every HTTP request of the app."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int, enabled: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.metrics_enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(_REQUEST_ID_HEADER, b"").decode("latin-1")[:128] or uuid.uuid4().hex
        token = request_id.set(rid)
        scored: dict[str, int] = {}
        scored_token = scored_by.set(scored)
        started = time.perf_counter()
        status = 500
        declared = headers.get(b"content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                status = 413
                key = "error" if is_protocol_path(scope["path"]) else "detail"  # the Open Inference Protocol's shape
                await _reply(send, 413, {key: f"request body exceeds {self.max_body_bytes} bytes"}, rid)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                return message

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), (_REQUEST_ID_HEADER, rid.encode("latin-1"))]
                await send(message)

            await self.app(scope, limited_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            if self.metrics_enabled:
                self.metrics.requests.labels(route, method, status_class(status)).inc()
                self.metrics.request_latency.labels(route, method).observe(elapsed)
            if route not in PROBE_ROUTES or status >= 400:  # probes' successes would drown the log
                fields = {"method": method, "path": scope["path"], "status": status, "duration_ms": elapsed * 1000}
                if scored:  # e.g. {"v3 champion": 1} or, in a canary, {"v4 candidate": 1}
                    fields["scored_by"] = dict(scored)
                _log.info("request", extra=fields)
            scored_by.reset(scored_token)
            request_id.reset(token)


async def _reply(send: Send, status: int, body: dict[str, Any], rid: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (_REQUEST_ID_HEADER, rid.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
