"""What every router needs: the per-process service state, the API-key guard, and the bounded scoring call.

:class:`ScoringParts` is what scores a transaction in a process (the model manager, the online features, the live
monitor), built from the settings in one place for both shells that score: the HTTP service and the stream scorer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from mlops_recipes.contract import Contract
from mlops_recipes.observability import UNMATCHED_ROUTE
from mlops_recipes.settings import Settings
from serving.batching import ScoringBatcher
from serving.features import OnlineFeatures
from serving.metrics import ServiceMetrics
from serving.model import ModelManager
from serving.monitoring import LiveMonitor, ProcessSampler
from serving.rollout import RolloutService
from serving.settings import ServingSettings

T = TypeVar("T")


def bound_mlflow_retries(serving: ServingSettings) -> None:
    """Cap the MLflow client's HTTP retries, unless the environment sets them.

    Start-up and every poll then wait at most about (retries + 1) x timeout + 1 + 2 + ... s for an unreachable
    tracking server (a refused connection fails at once), not MLflow's ~4 minutes of retries.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(serving.mlflow_http_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(serving.mlflow_http_timeout_s))


@dataclass
class ScoringParts:
    """The champion's model manager, the online features and the live monitor of one scoring process."""

    models: ModelManager
    features: OnlineFeatures
    monitor: LiveMonitor

    @classmethod
    def create(cls, settings: Settings, serving: ServingSettings, metrics: ServiceMetrics) -> ScoringParts:
        """The parts as ``serving`` configures them (MLflow's HTTP retries bounded first)."""
        bound_mlflow_retries(serving)
        return cls(
            models=ModelManager(
                settings=settings,
                alias=serving.model_alias,
                metrics=metrics,
                retry_base_s=serving.load_retry_base_s,
                retry_max_s=serving.load_retry_max_s,
                max_alias_skew_s=serving.max_alias_skew_s,
                threshold_override=serving.threshold,
            ),
            features=OnlineFeatures(settings, update_customers=serving.update_customer_features),
            monitor=LiveMonitor(
                metrics,
                window_rows=serving.drift_window_rows,
                min_rows=serving.drift_min_rows,
                remembered_scores=serving.remembered_scores,
            ),
        )


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
    batches: ScoringBatcher  # /predict and /predict/batch, in the same slots
    monitor: LiveMonitor
    process: ProcessSampler
    rollout: RolloutService


# Dependencies are ``async``: FastAPI runs plain ``def`` ones in the thread pool, a thread hop per request each.
async def get_state(request: Request) -> ServiceState:
    """The service state of the running app."""
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def _check_key(request: Request, state: ServiceState, expected: SecretStr | None) -> None:
    """401 (counted by route) unless ``X-API-Key`` is ``expected``; no check when ``expected`` is None."""
    if expected is None:
        return
    given = request.headers.get("x-api-key", "")
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        route = getattr(request.scope.get("route"), "path", UNMATCHED_ROUTE)
        state.metrics.key_refusals.labels(route).inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid X-API-Key")


async def require_api_key(request: Request, state: State) -> None:
    """Scoring routes need ``X-API-Key`` when ``SERVING_API_KEY`` is set."""
    _check_key(request, state, state.serving.api_key)


async def require_feedback_key(request: Request, state: State) -> None:
    """``/feedback`` needs its own key, ``SERVING_FEEDBACK_API_KEY``, when set (else the scoring routes' rule).

    Labels drive live precision and recall, their alerts and retraining: a scoring client must not send them.
    """
    _check_key(request, state, state.serving.feedback_api_key or state.serving.api_key)


Authorized = Depends(require_api_key)
FeedbackAuthorized = Depends(require_feedback_key)


async def in_scoring_slot(state: ServiceState, call: Callable[[], T]) -> T:
    """Run ``call`` (scoring: CPU work) in the thread pool, in one of the scoring slots, within the timeout.

    Every scoring route goes through the slots (``/predict`` and ``/predict/batch`` through ``state.batches``,
    which combines waiting requests), so they share them and the timeout (504).
    """

    async def bounded() -> T:
        # Scoring is CPU work under the GIL: more threads at once per process only contend (see docs/benchmarks).
        # The slot is released when the timeout cancels the wait, so a stuck call cannot block the next ones.
        async with state.scoring_slots:
            return await run_in_threadpool(call)

    return await within_timeout(state, bounded())


async def within_timeout(state: ServiceState, scoring: Awaitable[T]) -> T:
    """``scoring``'s result, or 504 after ``SERVING_REQUEST_TIMEOUT_S`` (slot wait included)."""
    try:
        return await asyncio.wait_for(scoring, timeout=state.serving.request_timeout_s)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, f"scoring took longer than {state.serving.request_timeout_s} s"
        ) from None
