"""What runs for the life of a worker process: the first model load, the registry watcher, the monitoring timer.

:func:`lifespan` is the app's lifespan (:func:`serving.app.create_app`): it loads the model before the first
request, then runs the two background loops until shutdown, each outliving any single failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import warnings
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from mlops_recipes.io.models import resolve_alias
from mlops_recipes.io.registry import CHALLENGER, CHAMPION
from serving.deps import ServiceState
from serving.features import FeatureStoreUnavailable
from serving.model import LoadedModel

_log = logging.getLogger("serving.app")

# Aliases whose versions are exported: a challenger above the champion is a candidate the gate refused.
WATCHED_ALIASES = (CHAMPION, CHALLENGER)


def warm_up_features(state: ServiceState) -> Callable[[LoadedModel], None]:
    """Warm-up of a new model's feature service, run before the model is swapped in.

    Warming up after the swap would let the first requests to a model that just became ready (no champion at
    start, then a promotion) pay for opening the store (seconds: ``import feast``) and time out with 504.
    """

    def warm_up(model: LoadedModel) -> None:
        state.features.warm_up(model.feature_service, state.contract.placeholder_keys())

    return warm_up


def freeze_heap(*, collect: bool) -> None:
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


async def watch_registry(state: ServiceState) -> None:
    """Poll the registry alias and the rollout record; load, warm up and swap in new versions in the background."""
    while True:
        await asyncio.sleep(state.serving.poll_interval_s)
        try:
            swapped = await run_in_threadpool(state.models.refresh, warm_up_features(state))
            # The rollout record (serving/rollout.py), read in the same loop: every worker converges on it alike.
            if await run_in_threadpool(state.rollout.refresh, state.models, warm_up_features(state)) or swapped:
                freeze_heap(collect=True)
        except Exception:  # the watcher must outlive any single failure
            _log.exception("model watcher iteration failed")


def publish_monitoring(state: ServiceState) -> None:
    """One monitoring round: drift, worker resources, online-store freshness, registry aliases. Failures only log."""
    state.monitor.publish_drift()
    state.process.sample()
    try:
        for view, seconds in state.features.materialized_until().items():
            state.metrics.feature_freshness.labels(view).set(seconds)
    except FeatureStoreUnavailable as error:
        _log.warning("cannot read feature freshness: %s", error.detail)
    for alias in WATCHED_ALIASES:
        try:
            version = resolve_alias(state.settings, alias)
        except Exception as error:  # the registry being down must not stop the other figures
            _log.warning("cannot read registry alias %r: %s", alias, error)
            continue
        if version is not None:
            state.metrics.registry_alias_version.labels(alias).set(float(version))


async def monitor(state: ServiceState) -> None:
    """Publish the monitoring figures on a timer, off the event loop."""
    while True:
        try:
            await run_in_threadpool(publish_monitoring, state)
        except Exception:  # the loop must outlive any single failure
            _log.exception("monitoring round failed")
        await asyncio.sleep(state.serving.monitor_interval_s)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model (start-up), run the watcher and the monitoring timer, cancel both at shutdown."""
    state: ServiceState = app.state.service
    # The service calls the estimator on NumPy rows in signature order; scikit-learn would warn on every call
    # that the array has no column names.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    await run_in_threadpool(state.models.refresh, warm_up_features(state))
    await run_in_threadpool(state.rollout.refresh, state.models, warm_up_features(state))
    state.rollout.start()
    freeze_heap(collect=False)
    tasks = [asyncio.create_task(watch_registry(state)), asyncio.create_task(monitor(state))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        state.rollout.stop()
