"""Scoring by entity ids and request fields: ``/predict`` (one transaction) and ``/predict/batch``.

The request bodies derive from the data contract, and FastAPI reads a body's model from the endpoint's
annotation: :func:`router` registers a copy of each endpoint annotated with this contract's model
(:func:`with_body`), so two apps with different contracts in one process do not share a body model.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError

from mlops_recipes.contract import EVENT_TIME, Contract
from mlops_recipes.observability import PREDICT, PREDICT_BATCH
from serving import logs
from serving.deps import Authorized, ServiceState, State, within_timeout
from serving.errors import PROBLEM_RESPONSES, too_many
from serving.model import LoadedModel
from serving.schemas import BatchRequest, BatchResponse, Prediction, Transaction, batch_model, transaction_model
from serving.scoring import score
from serving.validation import event_time_errors

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


async def scored(
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
    # Scored with the requests waiting beside it, if any (serving/batching.py).
    scoring = state.batches.score(transactions, model=model, scorer=partial(scored_by_rollout, state))
    predictions = await within_timeout(state, scoring)
    logs.note_scored([(p.model_version, p.variant) for p in predictions])  # the request's log line says who scored
    return model, predictions


def scored_by_rollout(
    state: ServiceState, transactions: Sequence[Transaction], champion: LoadedModel
) -> list[Prediction]:
    """The transactions scored as the rollout says (without a running one: by ``champion``); a worker thread's."""
    scorer = partial(
        score,
        features=state.features,
        contract=state.contract,
        metrics=state.metrics,
        monitor=state.monitor,
    )
    return state.rollout.score(transactions, champion=champion, scorer=scorer, monitor=state.monitor)


async def predict(transaction: Transaction, state: State) -> Prediction:
    """Score one transaction by entity ids (features from the online store) and request fields."""
    _, predictions = await scored(state, [transaction], lambda _: (EVENT_TIME,))
    return predictions[0]


async def predict_batch(batch: BatchRequest, state: State) -> BatchResponse:
    """Score up to SERVING_MAX_BATCH transactions in one call."""
    if len(batch.transactions) > state.serving.max_batch:
        raise too_many(len(batch.transactions), state.serving.max_batch, ("body", "transactions"))
    model, predictions = await scored(state, batch.transactions, lambda i: ("transactions", i, EVENT_TIME))
    return BatchResponse(model_name=model.name, model_version=model.version, predictions=predictions)


def with_body(endpoint: Endpoint, parameter: str, model: type[Any]) -> Endpoint:
    """A copy of ``endpoint`` whose ``parameter`` is annotated with ``model`` (the original stays as it is)."""
    copy = types.FunctionType(
        endpoint.__code__, endpoint.__globals__, endpoint.__name__, endpoint.__defaults__, endpoint.__closure__
    )
    copy.__kwdefaults__ = endpoint.__kwdefaults__
    copy.__doc__ = endpoint.__doc__
    copy.__module__ = endpoint.__module__
    copy.__qualname__ = endpoint.__qualname__
    copy.__annotations__ = {**endpoint.__annotations__, parameter: model}
    return copy  # type: ignore[return-value]


def router(contract: Contract) -> APIRouter:
    """The scoring routes, with request bodies derived from ``contract``."""
    transaction_body = transaction_model(contract)
    routes = APIRouter(tags=["scoring"], dependencies=[Authorized], responses=PROBLEM_RESPONSES)
    routes.post(PREDICT, response_model=Prediction)(with_body(predict, "transaction", transaction_body))
    routes.post(PREDICT_BATCH, response_model=BatchResponse)(
        with_body(predict_batch, "batch", batch_model(transaction_body))
    )
    return routes
