"""Concurrent scoring requests of one worker process, scored together in micro-batches.

While a scoring call runs (in the thread pool, CPU work under the GIL), the requests that arrive wait for a
scoring slot; the next call takes all of them that fit, up to ``SERVING_MAX_BATCH`` rows. A call pays one online
lookup, one model call and one customer-update transaction for its rows, where each request used to pay its own:
at 8 concurrent clients that is most of a request's scoring cost (docs/benchmarks.md). One request alone is
scored at once, as before: nothing waits for a batch to fill.

What a batch never changes:

* **one model**: requests are combined only with requests that read the same served model;
* **one transaction per customer per call**: a request whose customer is already in the batch (or in a request
  left waiting before it) waits for a later call. A customer's concurrent transactions are therefore scored in
  turn, each on features that count the ones before, exactly as one at a time: a burst of one card is what the
  velocity features are there to see. Within one ``/predict/batch`` request its own rows are still scored on the
  state before the request, as documented for that route. A read-only service (no customer update) has no such
  order to keep: there, a customer's requests are combined too;
* **each request's own fate**: a call that fails for several requests is run again request by request (in the
  same thread), so that a request that cannot be scored fails alone; an error every request would meet alike
  (``shared_errors``: the online store down) fails them all at once, without one more try each. As with a
  client's retry, a transaction sent without ``transaction_id`` whose customer update was written before the
  failure (a canary whose candidate failed after the champion's rows) is counted again;
* **each request's own timeout**: a request that times out (504) while it waits leaves the queue; one that
  times out while its call runs stops waiting, and the slot is released, as before batching (a stuck call
  cannot block the next ones); the call's other requests still get their results.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from mlops_recipes.contract import CUSTOMER
from serving.model import LoadedModel
from serving.schemas import Prediction, Transaction

# The scoring of a batch's transactions with one model; the batcher's callers all pass the same one.
Scorer = Callable[[Sequence[Transaction], LoadedModel], list[Prediction]]


@dataclasses.dataclass(eq=False)
class _Waiting:
    transactions: Sequence[Transaction]
    model: LoadedModel
    customers: frozenset[Any]
    future: asyncio.Future[list[Prediction]]
    taken: bool = False


class ScoringBatcher:
    """Score requests in the worker's scoring slots, combining those that wait (see the module doc)."""

    def __init__(
        self,
        slots: asyncio.Semaphore,
        *,
        max_rows: int,
        shared_errors: tuple[type[Exception], ...] = (),
        one_per_customer: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._slots = slots
        self._max_rows = max_rows
        self._shared_errors = shared_errors
        # Off only where scoring writes nothing (SERVING_UPDATE_CUSTOMER_FEATURES=false): order cannot matter there.
        self._one_per_customer = one_per_customer
        self._on_batch = on_batch  # (requests, rows) of each call: the service's batch-size histogram
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._running: set[asyncio.Future[None]] = set()  # the loop keeps only weak references to tasks

    async def score(
        self, transactions: Sequence[Transaction], *, model: LoadedModel, scorer: Scorer
    ) -> list[Prediction]:
        """``scorer(transactions, model)``, possibly in one call with other waiting requests."""
        request = _Waiting(
            transactions,
            model,
            frozenset(getattr(t, CUSTOMER) for t in transactions),
            asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(request)
        try:
            async with self._slots:
                if not request.taken:  # nobody took it while it waited for the slot: this call is its batch
                    batch = self._take(request)
                    # A task of its own: its end completes every request of the batch, even when this request's
                    # timeout cancels the wait here.
                    job = asyncio.ensure_future(self._run(batch, scorer))
                    self._running.add(job)
                    job.add_done_callback(self._running.discard)
                    await asyncio.shield(job)
            return await request.future
        finally:
            if not request.taken:  # cancelled (timed out) before any call took it
                self._waiting.remove(request)
            if not request.future.done():  # timed out while its call runs: nobody will read the outcome
                request.future.cancel()

    def _take(self, first: _Waiting) -> list[_Waiting]:
        """``first`` and the waiting requests that fit with it, in arrival order (see the module doc)."""
        batch, rows = [first], len(first.transactions)
        busy = set(first.customers)  # customers in the batch, or in a request left waiting (it goes first later)
        for waiting in self._waiting:
            if waiting is first or waiting.taken or waiting.future.done():
                continue
            fits = (
                waiting.model is first.model
                and rows + len(waiting.transactions) <= self._max_rows
                and (not self._one_per_customer or busy.isdisjoint(waiting.customers))
            )
            busy.update(waiting.customers)
            if fits:
                batch.append(waiting)
                rows += len(waiting.transactions)
        for taken in batch:
            taken.taken = True
            self._waiting.remove(taken)
        return batch

    async def _run(self, batch: list[_Waiting], scorer: Scorer) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch), sum(len(w.transactions) for w in batch))
        try:
            if len(batch) == 1:  # the request's own context: its log lines keep its request id
                outcomes = await run_in_threadpool(self._score, batch, scorer)
            else:  # several requests' work: log lines written meanwhile belong to none of them
                outcomes = await run_in_threadpool(contextvars.Context().run, self._score, batch, scorer)
        except BaseException as error:  # the pool itself failed (shutdown): no request may wait forever
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            raise
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():  # its request timed out meanwhile
                continue
            if isinstance(outcome, BaseException):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    def _score(self, batch: list[_Waiting], scorer: Scorer) -> list[list[Prediction] | BaseException]:
        """One call for the batch; if it fails for several requests, one call each (runs in a worker thread)."""
        try:
            predictions = scorer([t for w in batch for t in w.transactions], batch[0].model)
        except self._shared_errors as error:
            return [error] * len(batch)
        except Exception as error:
            if len(batch) == 1:
                return [error]
            return [self._alone(waiting, scorer) for waiting in batch]
        outcomes: list[list[Prediction] | BaseException] = []
        start = 0
        for waiting in batch:
            outcomes.append(predictions[start : start + len(waiting.transactions)])
            start += len(waiting.transactions)
        return outcomes

    @staticmethod
    def _alone(waiting: _Waiting, scorer: Scorer) -> list[Prediction] | BaseException:
        try:
            return scorer(waiting.transactions, waiting.model)
        except Exception as error:
            return error
