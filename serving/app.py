"""The FastAPI application: thin routes over the model manager, the online store and the shared scoring code.

``create_app()`` is the factory uvicorn calls (``serving.app:create_app``, ``factory=True``); nothing happens
at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mlops_recipes.contract import Contract
from mlops_recipes.io.models import resolve_alias
from mlops_recipes.io.registry import CHALLENGER, CHAMPION
from mlops_recipes.settings import Settings
from serving import logs
from serving.features import FeatureStoreUnavailable, OnlineFeatures
from serving.metrics import ServiceMetrics
from serving.middleware import ServiceMiddleware
from serving.model import LoadedModel, ModelManager, ModelNotReady
from serving.monitoring import LiveMonitor, ProcessSampler
from serving.schemas import (
    BatchRequest,
    BatchResponse,
    FeedbackRequest,
    FeedbackResponse,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Prediction,
    Problem,
    ReadyState,
    TensorMetadata,
    Transaction,
    batch_model,
    transaction_model,
)
from serving.scoring import score
from serving.settings import ServingSettings

_log = logging.getLogger("serving.app")
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or wrong API key."},
    503: {"model": Problem, "description": "No model loaded yet, or the online store is down."},
    504: {"model": Problem, "description": "Scoring took longer than SERVING_REQUEST_TIMEOUT_S."},
}


@dataclass
class ServiceState:
    """Everything the routes need, built once per process in the lifespan."""

    settings: Settings
    serving: ServingSettings
    metrics: ServiceMetrics
    models: ModelManager
    features: OnlineFeatures
    contract: Contract
    scoring_slots: asyncio.Semaphore
    monitor: LiveMonitor
    process: ProcessSampler


# Dependencies are ``async``: FastAPI runs plain ``def`` ones in the thread pool, a thread hop per request each.
async def get_state(request: Request) -> ServiceState:
    """The service state of the running app."""
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


async def require_api_key(request: Request, state: State) -> None:
    """Scoring routes need ``X-API-Key`` when ``SERVING_API_KEY`` is set."""
    expected = state.serving.api_key
    if expected is None:
        return
    given = request.headers.get("x-api-key", "")
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid X-API-Key")


Authorized = Depends(require_api_key)


async def _scored(state: ServiceState, transactions: Sequence[Transaction]) -> tuple[LoadedModel, list[Prediction]]:
    model = state.models.require()  # read once: the whole request uses one model even if a swap happens now

    async def bounded() -> list[Prediction]:
        # Scoring is CPU work under the GIL: more threads at once per process only contend (see docs/benchmarks).
        # The slot is released when the timeout cancels the wait, so a stuck call cannot block the next ones.
        async with state.scoring_slots:
            return await run_in_threadpool(
                score,
                transactions,
                model=model,
                features=state.features,
                contract=state.contract,
                threshold=state.serving.threshold,
                metrics=state.metrics,
                monitor=state.monitor,
            )

    try:
        predictions = await asyncio.wait_for(bounded(), timeout=state.serving.request_timeout_s)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, f"scoring took longer than {state.serving.request_timeout_s} s"
        ) from None
    return model, predictions


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
            if await run_in_threadpool(state.models.refresh, _warm_up_features(state)):
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


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    """Build the service (settings from the environment unless given)."""
    settings = settings or Settings()
    serving = serving or ServingSettings()
    logs.configure(serving.log_level, json_logs=serving.json_logs)
    metrics = ServiceMetrics.create()
    state = ServiceState(
        settings=settings,
        serving=serving,
        metrics=metrics,
        models=ModelManager(settings=settings, alias=serving.model_alias, metrics=metrics),
        features=OnlineFeatures(settings, update_customers=serving.update_customer_features),
        contract=settings.contract(),
        scoring_slots=asyncio.Semaphore(serving.scoring_concurrency),
        monitor=LiveMonitor(
            metrics,
            window_rows=serving.drift_window_rows,
            min_rows=serving.drift_min_rows,
            remembered_scores=serving.remembered_scores,
        ),
        process=ProcessSampler(metrics),
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

    @app.exception_handler(ModelNotReady)
    async def _not_ready(_: Request, error: ModelNotReady) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(FeatureStoreUnavailable)
    async def _store_down(_: Request, error: FeatureStoreUnavailable) -> JSONResponse:
        state.metrics.store_errors.inc()
        _log.error("%s", error)
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})

    _routes(app, state.contract)
    return app


def _routes(app: FastAPI, contract: Contract) -> None:
    # The request models derive from the data contract; FastAPI reads a body's model from the annotation.
    transaction_body = transaction_model(contract)
    batch_body = batch_model(transaction_body)

    async def predict(transaction: Transaction, state: State) -> Prediction:
        """Score one transaction by entity ids (features from the online store) and request fields."""
        _, predictions = await _scored(state, [transaction])
        return predictions[0]

    predict.__annotations__["transaction"] = transaction_body
    app.post("/predict", response_model=Prediction, responses=_ERRORS, dependencies=[Authorized], tags=["scoring"])(
        predict
    )

    async def predict_batch(batch: BatchRequest, state: State) -> BatchResponse:
        """Score up to SERVING_MAX_BATCH transactions in one call."""
        if len(batch.transactions) > state.serving.max_batch:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"batch of {len(batch.transactions)} exceeds the limit of {state.serving.max_batch}",
            )
        model, predictions = await _scored(state, batch.transactions)
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
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"{len(request.labels)} labels exceed the limit of {state.serving.max_batch} per request",
            )
        result = state.monitor.label([(label.transaction_id, label.is_fraud) for label in request.labels])
        return FeedbackResponse(
            matched=result.matched, unmatched=len(result.unmatched_ids), unmatched_ids=result.unmatched_ids
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics(state: State) -> Response:
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v2/health/live", response_model=ReadyState, response_model_exclude_none=True, tags=["v2"])
    async def live() -> ReadyState:
        """The process is up (it may not be ready)."""
        return ReadyState(live=True)

    @app.get(
        "/v2/health/ready",
        response_model=ReadyState,
        response_model_exclude_none=True,
        responses={503: {"model": ReadyState}},
        tags=["v2"],
    )
    async def ready(state: State, response: Response) -> ReadyState:
        """Ready once a model is loaded."""
        is_ready = state.models.current is not None
        if not is_ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadyState(ready=is_ready)

    @app.get("/v2/models/{model_name}", response_model=ModelMetadata, responses={404: {"model": Problem}}, tags=["v2"])
    async def model_metadata(model_name: str, state: State) -> ModelMetadata:
        """Name, version and tensor layout of the served model."""
        model = _named_model(state, model_name)
        return ModelMetadata(
            name=model.name,
            versions=[model.version],
            platform="sklearn",
            inputs=[TensorMetadata(name="input-0", datatype="FP64", shape=[-1, len(model.features)])],
            outputs=[TensorMetadata(name="fraud_probability", datatype="FP64", shape=[-1])],
        )

    @app.get(
        "/v2/models/{model_name}/ready",
        response_model=ReadyState,
        responses={404: {"model": Problem}, 503: {"model": ReadyState}},
        tags=["v2"],
    )
    async def model_ready(model_name: str, state: State) -> ReadyState:
        """Whether the named model is loaded."""
        _named_model(state, model_name)
        return ReadyState(ready=True)

    @app.post(
        "/v2/models/{model_name}/infer",
        response_model=InferResponse,
        responses={**_ERRORS, 404: {"model": Problem}},
        dependencies=[Authorized],
        tags=["v2"],
    )
    async def infer(model_name: str, request: InferRequest, state: State) -> InferResponse:
        """Raw feature tensors in signature order (see the metadata route): no feature lookup."""
        model = _named_model(state, model_name)
        matrix = _tensor_matrix(request, model, max_rows=state.serving.max_batch)
        probabilities = await run_in_threadpool(model.predict, matrix)
        return InferResponse(
            model_name=model.name,
            model_version=model.version,
            id=request.id,
            outputs=[
                InferOutput(
                    name="fraud_probability",
                    shape=[len(probabilities)],
                    datatype="FP64",
                    data=probabilities.tolist(),
                )
            ],
        )


def _named_model(state: ServiceState, model_name: str) -> LoadedModel:
    model = state.models.require()
    if model_name != model.name:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_name!r} is not served here (try {model.name!r})")
    return model


def _tensor_matrix(request: InferRequest, model: LoadedModel, *, max_rows: int) -> np.ndarray:
    width = len(model.features)
    try:
        if len(request.inputs) == 1 and len(request.inputs[0].shape) == 2:
            tensor = request.inputs[0]
            rows, cols = tensor.shape
            matrix = np.array(tensor.data, dtype=np.float64).reshape(rows, cols)
        else:
            by_name = {tensor.name: tensor for tensor in request.inputs}
            missing = [name for name in model.features if name not in by_name]
            if missing:
                raise ValueError(f"missing input tensors: {missing}")
            matrix = np.column_stack([np.array(by_name[n].data, dtype=np.float64).ravel() for n in model.features])
    except (ValueError, TypeError) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"bad input tensor: {error}") from None
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"expected shape [n, {width}] (features in signature order), got {list(matrix.shape)}",
        )
    if not 1 <= matrix.shape[0] <= max_rows:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"between 1 and {max_rows} rows per request")
    return matrix
