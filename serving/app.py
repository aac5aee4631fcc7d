"""The FastAPI application: the service state, the middleware, the error handlers and the routers.

``create_app()`` is the factory uvicorn calls (``serving.app:create_app``, ``factory=True``); nothing happens
at import time. The routes live in :mod:`serving.routes` (one module per concern), the start-up and background
loops in :mod:`serving.lifespan`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from mlops_recipes.settings import Settings
from serving import logs
from serving.batching import ScoringBatcher
from serving.deps import ScoringParts, ServiceState
from serving.errors import install_handlers, is_protocol_path, problem
from serving.features import FeatureStoreUnavailable
from serving.lifespan import lifespan
from serving.metrics import ServiceMetrics
from serving.middleware import ServiceMiddleware
from serving.model import ModelNotReady
from serving.monitoring import ProcessSampler
from serving.protocol import ProtocolError
from serving.rollout import RolloutService
from serving.routes import feedback, metrics, predict, v2
from serving.settings import ServingSettings

_log = logging.getLogger("serving.app")


def _state(settings: Settings, serving: ServingSettings) -> ServiceState:
    """Everything the routes share in one worker process."""
    metrics = ServiceMetrics.create()
    parts = ScoringParts.create(settings, serving, metrics)
    slots = asyncio.Semaphore(serving.scoring_concurrency)
    return ServiceState(
        settings=settings,
        serving=serving,
        metrics=metrics,
        models=parts.models,
        features=parts.features,
        contract=settings.contract(),
        scoring_slots=slots,
        batches=ScoringBatcher(
            slots,
            max_rows=serving.max_batch,
            shared_errors=(FeatureStoreUnavailable,),
            one_per_customer=serving.update_customer_features,
            on_batch=lambda requests, _rows: metrics.scoring_batch.observe(requests),
        ),
        monitor=parts.monitor,
        process=ProcessSampler(metrics),
        rollout=RolloutService(settings=settings, serving=serving, metrics=metrics),
    )


async def _not_ready(request: Request, error: Exception) -> JSONResponse:
    return problem(request.url.path, 503, str(error), {"Retry-After": "5"})


async def _store_down(request: Request, error: Exception) -> JSONResponse:
    state: ServiceState = request.app.state.service
    state.metrics.store_errors.inc()
    _log.error("%s", getattr(error, "detail", error))  # the body names no host, port or driver message
    return problem(request.url.path, 503, str(error), {"Retry-After": "1"})


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    """Build the service (settings from the environment unless given)."""
    settings = settings or Settings()
    serving = serving or ServingSettings()
    logs.configure(serving.log_level, json_logs=serving.json_logs)
    state = _state(settings, serving)
    app = FastAPI(
        title="MLOps Recipes fraud scoring",
        summary="Scores card transactions with the registry's champion model and online features.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = state
    app.add_middleware(
        ServiceMiddleware, metrics=state.metrics, max_body_bytes=serving.max_body_bytes, enabled=serving.metrics_enabled
    )
    install_handlers(app)
    app.add_exception_handler(ModelNotReady, _not_ready)
    app.add_exception_handler(FeatureStoreUnavailable, _store_down)
    app.add_exception_handler(ProtocolError, v2.protocol_error)
    app.include_router(predict.router(state.contract))
    app.include_router(feedback.router)
    app.include_router(metrics.router)
    app.include_router(v2.router)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus what the protocol routes parse by hand; their errors are the protocol's (no 422)."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(v2.openapi_components())
        # The per-request limit is a setting: the document states this deployment's value.
        limit = app.state.service.serving.max_batch
        schemas["BatchRequest"]["properties"]["transactions"]["maxItems"] = limit
        schemas["FeedbackRequest"]["properties"]["labels"]["maxItems"] = limit
        for path, operations in spec["paths"].items():
            if not is_protocol_path(path):
                continue
            for operation in operations.values():
                operation["responses"].pop("422", None)
                ok = operation["responses"].get("200", {}).get("content", {})
                if path.endswith("/infer") and "application/json" in ok:
                    ok["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        app.openapi_schema = spec
    return app.openapi_schema
