"""The micro-batcher of /predict and /predict/batch: which waiting requests share a scoring call, and what a fault does.

The scorer here stands for the service's (lookup, model, update: tests/integration/test_serving_batches.py runs the
real one): it records the calls it gets and blocks the first one until the test lets it go, so that the requests
sent meanwhile are waiting when the next call forms.
"""

from __future__ import annotations

import asyncio
import threading
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from serving.batching import ScoringBatcher

# Model stand-ins (the batcher only compares them by identity and hands them to the scorer).
M: Any = "m"
OLD: Any = "old"
NEW: Any = "new"


class StoreDown(RuntimeError):
    """What every request would meet alike."""


def _tx(customer: int, amount: float = 1.0) -> Any:
    return types.SimpleNamespace(customer_id=customer, amount=amount)


class Scorer:
    """Answers each transaction with ``(customer, amount)``; amount -1 fails a call, -2 raises StoreDown."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, float]]] = []
        self.release = threading.Event()
        self.first_started = threading.Event()

    def __call__(self, transactions: Sequence[Any], model: Any) -> list[Any]:
        self.calls.append([(t.customer_id, t.amount) for t in transactions])
        if len(self.calls) == 1:
            self.first_started.set()
            self.release.wait(5)
        if any(t.amount == -2 for t in transactions):
            raise StoreDown("online store unavailable")
        if any(t.amount == -1 for t in transactions):
            raise ValueError("this row cannot be scored")
        return [(t.customer_id, t.amount, model) for t in transactions]


async def _while_first_call_runs(
    batcher: ScoringBatcher, scorer: Scorer, then: Callable[[], Awaitable[list[Any]]]
) -> tuple[Any, list[Any]]:
    """Start one request, wait until its call runs, run ``then`` (sends the waiting ones), let the call go."""
    first = asyncio.ensure_future(batcher.score([_tx(0)], model=M, scorer=scorer))
    await asyncio.to_thread(scorer.first_started.wait, 5)
    waiting = asyncio.ensure_future(then())
    await asyncio.sleep(0.05)  # the requests are queued behind the slot
    scorer.release.set()
    return await first, await waiting


def _batcher(**options: Any) -> tuple[ScoringBatcher, Scorer, list[int]]:
    sizes: list[int] = []
    batcher = ScoringBatcher(
        asyncio.Semaphore(1),
        max_rows=options.get("max_rows", 256),
        shared_errors=(StoreDown,),
        one_per_customer=options.get("one_per_customer", True),
        on_batch=lambda requests, rows: sizes.append(requests),
    )
    return batcher, Scorer(), sizes


def test_requests_that_wait_are_scored_in_one_call_each_getting_its_own_rows() -> None:
    async def main() -> tuple[Any, list[Any]]:
        batcher, scorer, sizes = _batcher()

        async def five() -> list[Any]:
            return await asyncio.gather(
                *(batcher.score([_tx(c, c * 10.0)], model=M, scorer=scorer) for c in range(1, 6))
            )

        first, rest = await _while_first_call_runs(batcher, scorer, five)
        return (first, scorer.calls, sizes), rest

    (first, calls, sizes), rest = asyncio.run(main())
    assert first == [(0, 1.0, "m")]
    assert calls == [[(0, 1.0)], [(c, c * 10.0) for c in range(1, 6)]]
    assert rest == [[(c, c * 10.0, "m")] for c in range(1, 6)]
    assert sizes == [1, 5]


def test_a_customer_already_in_the_call_waits_for_the_next_one_keeping_arrival_order() -> None:
    async def main() -> list[list[tuple[int, float]]]:
        batcher, scorer, _ = _batcher()

        async def burst() -> list[Any]:
            # customer 7 three times, customer 8 once in between, customer 9 last
            sent = [(7, 1.0), (8, 1.0), (7, 2.0), (7, 3.0), (9, 1.0)]
            return await asyncio.gather(*(batcher.score([_tx(c, a)], model=M, scorer=scorer) for c, a in sent))

        await _while_first_call_runs(batcher, scorer, burst)
        return scorer.calls

    calls = asyncio.run(main())
    # Never two transactions of one customer in a call; each of customer 7's comes after the one before it.
    assert calls == [[(0, 1.0)], [(7, 1.0), (8, 1.0), (9, 1.0)], [(7, 2.0)], [(7, 3.0)]]


def test_a_read_only_service_combines_a_customers_requests_too() -> None:
    async def main() -> list[list[tuple[int, float]]]:
        batcher, scorer, _ = _batcher(one_per_customer=False)

        async def burst() -> list[Any]:
            return list(await asyncio.gather(*(batcher.score([_tx(7, a)], model=M, scorer=scorer) for a in (1, 2, 3))))

        await _while_first_call_runs(batcher, scorer, burst)
        return scorer.calls

    assert asyncio.run(main()) == [[(0, 1.0)], [(7, 1.0), (7, 2.0), (7, 3.0)]]


def test_a_request_left_waiting_keeps_its_customers_later_requests_from_overtaking_it() -> None:
    async def main() -> list[list[tuple[int, float]]]:
        batcher, scorer, _ = _batcher(max_rows=3)

        async def sent() -> list[Any]:
            return list(
                await asyncio.gather(
                    batcher.score([_tx(1), _tx(2)], model=M, scorer=scorer),
                    batcher.score([_tx(3), _tx(4)], model=M, scorer=scorer),  # does not fit: 4 rows > 3
                    batcher.score([_tx(4, 2.0)], model=M, scorer=scorer),  # fits, but customer 4 waits above
                    batcher.score([_tx(5)], model=M, scorer=scorer),
                )
            )

        await _while_first_call_runs(batcher, scorer, sent)
        return scorer.calls

    calls = asyncio.run(main())
    assert calls == [[(0, 1.0)], [(1, 1.0), (2, 1.0), (5, 1.0)], [(3, 1.0), (4, 1.0)], [(4, 2.0)]]


def test_requests_read_by_different_models_are_not_combined() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        batcher, scorer, _ = _batcher()

        async def two_models() -> list[Any]:
            return list(
                await asyncio.gather(
                    batcher.score([_tx(1)], model=OLD, scorer=scorer),
                    batcher.score([_tx(2)], model=NEW, scorer=scorer),
                    batcher.score([_tx(3)], model=OLD, scorer=scorer),
                )
            )

        _, answers = await _while_first_call_runs(batcher, scorer, two_models)
        return scorer.calls, answers

    calls, answers = asyncio.run(main())
    assert calls[1:] == [[(1, 1.0), (3, 1.0)], [(2, 1.0)]]
    assert [a[0][2] for a in answers] == ["old", "new", "old"]


def _three_waiting(amounts: dict[int, float]) -> tuple[list[Any], list[Any]]:
    """Customers 1, 2 and 3 (with these amounts) sent while the first call runs: the calls and the answers."""

    async def main() -> tuple[list[Any], list[Any]]:
        batcher, scorer, _ = _batcher()

        async def three() -> list[Any]:
            return await asyncio.gather(
                *(batcher.score([_tx(c, amounts[c])], model=M, scorer=scorer) for c in (1, 2, 3)),
                return_exceptions=True,
            )

        _, answers = await _while_first_call_runs(batcher, scorer, three)
        return scorer.calls, answers

    return asyncio.run(main())


def test_a_request_that_cannot_be_scored_fails_alone() -> None:
    calls, answers = _three_waiting({1: 1.0, 2: -1.0, 3: 1.0})

    assert answers[0] == [(1, 1.0, "m")]
    assert answers[2] == [(3, 1.0, "m")]
    assert isinstance(answers[1], ValueError)
    # The combined call failed, then each request was scored alone.
    assert calls[1:] == [[(1, 1.0), (2, -1.0), (3, 1.0)], [(1, 1.0)], [(2, -1.0)], [(3, 1.0)]]


def test_an_error_every_request_would_meet_fails_them_all_without_a_try_each() -> None:
    calls, answers = _three_waiting({1: -2.0, 2: -2.0, 3: -2.0})

    assert all(isinstance(a, StoreDown) for a in answers)
    assert len(calls) == 2  # the first request's call and the one combined call


def test_a_request_that_times_out_while_waiting_leaves_the_queue_and_is_never_scored() -> None:
    async def main() -> tuple[list[Any], Any]:
        batcher, scorer, _ = _batcher()

        async def one_gives_up() -> list[Any]:
            impatient = batcher.score([_tx(1)], model=M, scorer=scorer)
            patient = batcher.score([_tx(2)], model=M, scorer=scorer)
            return list(await asyncio.gather(asyncio.wait_for(impatient, 0.01), patient, return_exceptions=True))

        _, answers = await _while_first_call_runs(batcher, scorer, one_gives_up)
        return scorer.calls, answers

    calls, answers = asyncio.run(main())
    assert isinstance(answers[0], TimeoutError)
    assert answers[1] == [(2, 1.0, "m")]
    assert calls == [[(0, 1.0)], [(2, 1.0)]]


def test_the_other_requests_of_a_call_get_their_results_when_its_leader_times_out() -> None:
    gates = [threading.Event(), threading.Event()]  # the first two calls wait for these
    started = [threading.Event(), threading.Event()]
    calls: list[list[int]] = []

    def slow(transactions: Sequence[Any], model: Any) -> list[Any]:
        calls.append([t.customer_id for t in transactions])
        if len(calls) <= 2:
            started[len(calls) - 1].set()
            gates[len(calls) - 1].wait(5)
        return [t.customer_id for t in transactions]

    async def main() -> tuple[Any, Any]:
        batcher = ScoringBatcher(asyncio.Semaphore(1), max_rows=256)
        first = asyncio.ensure_future(batcher.score([_tx(0)], model=M, scorer=slow))
        await asyncio.to_thread(started[0].wait, 5)
        # Both wait behind the first call; the next call takes them together, led by the one sent first.
        leader = asyncio.ensure_future(batcher.score([_tx(1)], model=M, scorer=slow))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(batcher.score([_tx(2)], model=M, scorer=slow))
        await asyncio.sleep(0.01)
        gates[0].set()
        await first
        await asyncio.to_thread(started[1].wait, 5)
        leader.cancel()  # what its timeout does (asyncio.wait_for), while its call is still running
        with pytest.raises(asyncio.CancelledError):
            await leader
        gates[1].set()
        return await asyncio.wait_for(follower, 5), calls

    answer, seen = asyncio.run(main())
    assert seen == [[0], [1, 2]]
    assert answer == [2]
