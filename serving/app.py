"""The FastAPI application: thin routes over the model manager, the online store and the shared scoring code.

``create_app()`` is the factory uvicorn calls (``serving.app:create_app``, ``factory=True``); nothing happens
at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mlops_recipes.contract import EVENT_TIME, Contract
from mlops_recipes.io import customer_events
from mlops_recipes.io.models import resolve_alias
from mlops_recipes.io.registry import CHALLENGER, CHAMPION
from mlops_recipes.settings import Settings
from serving import logs, v2
from serving.deps import Authorized, ServiceState, State, in_scoring_slot
from serving.errors import install_handlers, is_protocol_path, problem
from serving.features import FeatureStoreUnavailable, OnlineFeatures
from serving.metrics import ServiceMetrics
from serving.middleware import ServiceMiddleware
from serving.model import LoadedModel, ModelManager, ModelNotReady
from serving.monitoring import LiveMonitor, ProcessSampler
from serving.protocol import ProtocolError
from serving.rollout import RolloutService
from serving.schemas import (
    BatchRequest,
    BatchResponse,
    FeedbackRequest,
    FeedbackResponse,
    Prediction,
    Problem,
    Transaction,
    batch_model,
    transaction_model,
)
from serving.scoring import score
from serving.settings import ServingSettings
from serving.validation import event_time_errors

_log = logging.getLogger("serving.app")
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {
        "model": Problem,
        "description": "The body cannot be parsed (invalid UTF-8, nested too deep, too many digits).",
    },
    401: {"model": Problem, "description": "Missing or wrong API key."},
    413: {"model": Problem, "description": "The body is larger than SERVING_MAX_BODY_BYTES."},
    503: {"model": Problem, "description": "No model loaded yet, or the online store is down."},
    504: {"model": Problem, "description": "Scoring took longer than SERVING_REQUEST_TIMEOUT_S."},
}


async def _scored(
    state: ServiceState, transactions: Sequence[Transaction], where: Callable[[int], tuple[str | int, ...]]
) -> tuple[LoadedModel, list[Prediction]]:
    """Check the event times (``where(i)``: their field's location), then score in a slot, within the timeout."""
    errors = event_time_errors(
        [(where(i), t.event_timestamp) for i, t in enumerate(transactions)],
        now=dt.datetime.now(dt.UTC),
        max_future_s=state.serving.max_clock_skew_s,
        max_age_s=state.serving.max_event_age_s,
    )
    if errors:
        raise RequestValidationError(errors)
    model = state.models.require()  # read once: the whole request uses one model even if a swap happens now
    scorer = partial(
        score,
        features=state.features,
        contract=state.contract,
        threshold=state.serving.threshold,
        metrics=state.metrics,
        monitor=state.monitor,
    )
    rollout = partial(state.rollout.score, transactions, champion=model, scorer=scorer, monitor=state.monitor)
    return model, await in_scoring_slot(state, rollout)


def _too_many(count: int, limit: int, loc: tuple[str, ...]) -> RequestValidationError:
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


def _warm_up_features(state: ServiceState) -> Callable[[LoadedModel], None]:
    """Warm-up of a new model's feature service, run before the model is swapped in.

    Warming up after the swap would let the first requests to a model that just became ready (no champion at
    start, then a promotion) pay for opening the store (seconds: ``import feast``) and time out with 504.
    """

    def warm_up(model: LoadedModel) -> None:
        state.features.warm_up(model.feature_service, state.contract.placeholder_keys())

    return warm_up


def _freeze_heap(*, collect: bool) -> None:
    """Keep what is loaded now (libraries, model, store) out of the cyclic garbage collector's future passes.

    A full collection walks every tracked object, ~470k once MLflow, Feast and scikit-learn are imported (~0.3 s),
    and steady traffic triggers one every few seconds: that pause was the service's p99 (bench/serving.py).
    After a swap, ``collect`` unfreezes and collects first so that the old model's cycles can go; at start-up
    there is next to nothing to collect (tens of objects), not worth a full pass.
    """
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


async def _watch_registry(state: ServiceState) -> None:
    """Poll the registry alias; load, warm up and swap in a new version in the background."""
    while True:
        await asyncio.sleep(state.serving.poll_interval_s)
        try:
            swapped = await run_in_threadpool(state.models.refresh, _warm_up_features(state))
            if await run_in_threadpool(state.rollout.refresh, state.models, _warm_up_features(state)) or swapped:
                _freeze_heap(collect=True)
        except Exception:  # the watcher must outlive any single failure
            _log.exception("model watcher iteration failed")


# Aliases whose versions are exported: a challenger above the champion is a candidate the gate refused.
_WATCHED_ALIASES = (CHAMPION, CHALLENGER)


def _publish_monitoring(state: ServiceState) -> None:
    """One monitoring round: drift, worker resources, online-store freshness, registry aliases. Failures only log."""
    state.monitor.publish_drift()
    state.process.sample()
    try:
        for view, seconds in state.features.materialized_until().items():
            state.metrics.feature_freshness.labels(view).set(seconds)
    except FeatureStoreUnavailable as error:
        _log.warning("cannot read feature freshness: %s", error)
    for alias in _WATCHED_ALIASES:
        try:
            version = resolve_alias(state.settings, alias)
        except Exception as error:  # the registry being down must not stop the other figures
            _log.warning("cannot read registry alias %r: %s", alias, error)
            continue
        if version is not None:
            state.metrics.registry_alias_version.labels(alias).set(float(version))


async def _monitor(state: ServiceState) -> None:
    """Publish the monitoring figures on a timer, off the event loop."""
    while True:
        try:
            await run_in_threadpool(_publish_monitoring, state)
        except Exception:  # the loop must outlive any single failure
            _log.exception("monitoring round failed")
        await asyncio.sleep(state.serving.monitor_interval_s)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    # The service calls the estimator on NumPy rows in signature order; scikit-learn would warn on every call
    # that the array has no column names.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    await run_in_threadpool(state.models.refresh, _warm_up_features(state))
    await run_in_threadpool(state.rollout.refresh, state.models, _warm_up_features(state))
    state.rollout.start()
    _freeze_heap(collect=False)
    tasks = [asyncio.create_task(_watch_registry(state)), asyncio.create_task(_monitor(state))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        state.rollout.stop()


def _bound_mlflow_retries(serving: ServingSettings) -> None:
    """Cap the MLflow client's HTTP retries, unless the environment sets them.

    Start-up and every poll then wait at most about (retries + 1) x timeout + 1 + 2 + ... s for an unreachable
    tracking server (a refused connection fails at once), not MLflow's ~4 minutes of retries.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(serving.mlflow_http_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(serving.mlflow_http_timeout_s))


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    """Build the service (settings from the environment unless given)."""
    settings = settings or Settings()
    serving = serving or ServingSettings()
    logs.configure(serving.log_level, json_logs=serving.json_logs)
    _bound_mlflow_retries(serving)
    metrics = ServiceMetrics.create()
    state = ServiceState(
        settings=settings,
        serving=serving,
        metrics=metrics,
        models=ModelManager(
            settings=settings,
            alias=serving.model_alias,
            metrics=metrics,
            retry_base_s=serving.load_retry_base_s,
            retry_max_s=serving.load_retry_max_s,
            max_alias_skew_s=serving.max_alias_skew_s,
        ),
        features=OnlineFeatures(
            settings,
            update_customers=serving.update_customer_features and customer_events.supports(settings.contract()),
        ),
        contract=settings.contract(),
        scoring_slots=asyncio.Semaphore(serving.scoring_concurrency),
        monitor=LiveMonitor(
            metrics,
            window_rows=serving.drift_window_rows,
            min_rows=serving.drift_min_rows,
            remembered_scores=serving.remembered_scores,
        ),
        process=ProcessSampler(metrics),
        rollout=RolloutService(settings=settings, serving=serving, metrics=metrics),
    )
    app = FastAPI(
        title="mlops-recipes fraud scoring",
        summary="Scores card transactions with the registry's champion model and online features.",
        version="1",
        lifespan=_lifespan,
    )
    app.state.service = state
    app.add_middleware(
        ServiceMiddleware, metrics=metrics, max_body_bytes=serving.max_body_bytes, enabled=serving.metrics_enabled
    )

    install_handlers(app)

    @app.exception_handler(ModelNotReady)
    async def _not_ready(request: Request, error: ModelNotReady) -> JSONResponse:
        return problem(request.url.path, 503, str(error), {"Retry-After": "5"})

    @app.exception_handler(FeatureStoreUnavailable)
    async def _store_down(request: Request, error: FeatureStoreUnavailable) -> JSONResponse:
        state.metrics.store_errors.inc()
        _log.error("%s", error)
        return problem(request.url.path, 503, str(error), {"Retry-After": "1"})

    app.add_exception_handler(ProtocolError, v2.protocol_error)
    _routes(app, state.contract)
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


def _routes(app: FastAPI, contract: Contract) -> None:
    # The request models derive from the data contract; FastAPI reads a body's model from the annotation.
    transaction_body = transaction_model(contract)
    batch_body = batch_model(transaction_body)

    async def predict(transaction: Transaction, state: State) -> Prediction:
        """Score one transaction by entity ids (features from the online store) and request fields."""
        _, predictions = await _scored(state, [transaction], lambda _: (EVENT_TIME,))
        return predictions[0]

    predict.__annotations__["transaction"] = transaction_body
    app.post("/predict", response_model=Prediction, responses=_ERRORS, dependencies=[Authorized], tags=["scoring"])(
        predict
    )

    async def predict_batch(batch: BatchRequest, state: State) -> BatchResponse:
        """Score up to SERVING_MAX_BATCH transactions in one call."""
        if len(batch.transactions) > state.serving.max_batch:
            raise _too_many(len(batch.transactions), state.serving.max_batch, ("body", "transactions"))
        model, predictions = await _scored(state, batch.transactions, lambda i: ("transactions", i, EVENT_TIME))
        return BatchResponse(model_name=model.name, model_version=model.version, predictions=predictions)

    predict_batch.__annotations__["batch"] = batch_body
    app.post(
        "/predict/batch", response_model=BatchResponse, responses=_ERRORS, dependencies=[Authorized], tags=["scoring"]
    )(predict_batch)

    @app.post(
        "/feedback", response_model=FeedbackResponse, responses=_ERRORS, dependencies=[Authorized], tags=["monitoring"]
    )
    async def feedback(request: FeedbackRequest, state: State) -> FeedbackResponse:
        """Confirmed labels of transactions scored earlier with a ``transaction_id``: live precision and recall.

        Labels are matched with the scores this process returned (the last SERVING_REMEMBERED_SCORES); each
        score counts once. Unmatched ids are returned, not an error: a label may outlive the memory of a score.
        """
        if len(request.labels) > state.serving.max_batch:
            raise _too_many(len(request.labels), state.serving.max_batch, ("body", "labels"))
        result = state.monitor.label([(label.transaction_id, label.is_fraud) for label in request.labels])
        return FeedbackResponse(
            matched=result.matched, unmatched=len(result.unmatched_ids), unmatched_ids=result.unmatched_ids
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics(state: State) -> Response:
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)
