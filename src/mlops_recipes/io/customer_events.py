"""Each customer's recent events, beside the online store: what the per-transaction update of their row needs.

The online service scores a transaction on the customer's row, then records the transaction here and writes the
row *after* it (:func:`mlops_recipes.core.aggregates.customer_row`, the batch definition in incremental form)
through Feast, so that the customer's next transaction is scored on features that include it. The log lives in a
real store chosen by the same Feast configuration as the online store, never in process memory, so every worker
and every restart sees the same history:

* embedded profile (SQLite online store): a SQLite file next to it, ``customer_events.db``; one write transaction
  at a time across processes (``BEGIN IMMEDIATE``);
* scaled profile (Redis online store): two hashes per customer on the same Redis, under a per-customer lock
  (``SET NX PX``, released only by its holder).

Customers are keyed as the data contract types them (integer or string ids; SQLite keeps keys as text, so a
string id keeps its leading zeros). Without an account-creation date the account age is NaN in the computed row,
and the Feast writer leaves it out (the view has no such feature).

The update of one customer is one critical section: duplicate check, event insert, row computation, the Feast
write, then the log commit. Concurrent transactions of one customer therefore each see all earlier ones (no lost
update); a ``transaction_id`` already recorded is not counted again (a client retry); a failed Feast write leaves
the log as it was (no half-written state: the transaction is simply not counted, and a retry counts it).

Late events (older than the customer's latest recorded one) join the windows they fall in; the row stays stamped
at the customer's latest event time, so the windows never move backwards. Events older than the longest window
before the latest event can no longer count: Redis deletes them at once; SQLite, whose windows skip them, drops
them once they are a quarter of the customer's row.

Row stamps increase strictly per customer (the latest event time, or one microsecond after the previous stamp
when a late or same-instant event does not move it), because Feast's Redis writer skips a row whose timestamp is
not newer than the stored one.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import json
import logging
import math
import operator
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mlops_recipes.contract import ACCOUNT_CREATED, AMOUNT, CUSTOMER, EVENT_TIME, TRANSACTION_ID
from mlops_recipes.core.aggregates import customer_row_in_order, longest_window_us
from mlops_recipes.errors import ReportedError

_log = logging.getLogger(__name__)

# A customer's key, as the data contract types it (``ids.customer_id``: int or string).
CustomerKey = int | str
# What a writer does with a computed row: (customer_id, stamp, row). The Feast write in production.
RowWriter = Callable[[Sequence[tuple[CustomerKey, dt.datetime, dict[str, float]]]], None]


class EventLogError(ReportedError, RuntimeError):
    """The event log could not be read or written (store down, lock not obtained in time)."""


@dataclasses.dataclass(frozen=True)
class CustomerEvent:
    """A scored transaction as the customer's history needs it."""

    customer_id: CustomerKey
    transaction_id: str
    time_us: int
    amount: float


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What recording one event did."""

    counted: bool  # False: this transaction_id was already in the customer's history
    row: dict[str, float] | None = None  # the row written, when counted
    stamp: dt.datetime | None = None


def time_us(value: dt.datetime) -> int:
    """Integer microseconds since the epoch of a timestamp (naive values are UTC, as everywhere here)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _stamp(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


def row_after(
    times_us: Sequence[int], amounts: Sequence[float], *, account_created_ts: float, previous_stamp_us: int | None
) -> tuple[dict[str, float], int, int]:
    """The row after a customer's logged events (in time order; older ones are ignored), its stamp and the horizon.

    Events at or before the horizon (the longest window before the latest event) no longer count: the log may
    delete them.
    """
    latest = int(times_us[-1])
    row = customer_row_in_order(times_us, amounts, account_created_ts=account_created_ts)
    stamp = latest if previous_stamp_us is None else max(latest, previous_stamp_us + 1)
    return row, stamp, latest - longest_window_us()


def next_row(
    history: dict[str, tuple[int, float]],
    new: Sequence[CustomerEvent],
    *,
    account_created_ts: float,
    previous_stamp_us: int | None,
) -> tuple[dict[str, float], int, list[str]]:
    """The row after ``new`` events join ``history``, its stamp, and the ids that left the longest window.

    ``history`` maps transaction_id → (time µs, amount); the expired ids are the ones to delete from the log.
    """
    merged = {**history, **{e.transaction_id: (e.time_us, e.amount) for e in new}}
    ordered = sorted(merged.values(), key=operator.itemgetter(0))
    row, stamp, horizon = row_after(
        [t for t, _ in ordered],
        [a for _, a in ordered],
        account_created_ts=account_created_ts,
        previous_stamp_us=previous_stamp_us,
    )
    return row, stamp, [tx for tx, (t, _) in merged.items() if t <= horizon]


def _split(
    logged: dict[str, tuple[int, float]], replace_until_us: int | None
) -> tuple[dict[str, tuple[int, float]], list[str]]:
    """The logged events to keep, and the ids a rebuild replaces (those up to ``replace_until_us``)."""
    if replace_until_us is None:
        return logged, []
    kept = {tx: v for tx, v in logged.items() if v[0] > replace_until_us}
    return kept, [tx for tx in logged if tx not in kept]


def _by_customer(events: Iterable[CustomerEvent]) -> dict[CustomerKey, list[CustomerEvent]]:
    grouped: dict[CustomerKey, list[CustomerEvent]] = {}
    for event in events:
        grouped.setdefault(event.customer_id, []).append(event)
    return grouped


class CustomerEventLog(Protocol):
    """Where the customers' recent events live; both backends behave the same (tests run on both)."""

    def record(
        self, event: CustomerEvent, *, account_created_ts: float | None, write: RowWriter
    ) -> Recorded:  # pragma: no cover - protocol
        """Record ``event`` and write the customer's new row, atomically per customer; see the module doc."""
        ...

    def record_all(
        self,
        events: Sequence[CustomerEvent],
        account_created_ts: Mapping[CustomerKey, float],
        *,
        write: RowWriter,
    ) -> dict[CustomerKey, int | Exception]:  # pragma: no cover - protocol
        """Record a scored batch's ``events``; per customer, the events counted, or the error that kept them out.

        SQLite records the whole batch in one write transaction (all or nothing); Redis customer by customer.
        """
        ...

    def load(
        self,
        events: Iterable[CustomerEvent],
        account_created_ts: dict[CustomerKey, float],
        *,
        write: RowWriter,
        replace_until_us: int | None = None,
    ) -> int:  # pragma: no cover - protocol
        """Backfill: merge events and rewrite each touched customer's row; returns the events counted.

        With ``replace_until_us``, the customers' logged events up to that time are replaced by ``events`` (the
        batch is the truth up to its end); later ones (scored after the batch was cut) are kept, so a rebuild
        never takes a row back in time.
        """
        ...

    def history(self, customer_id: CustomerKey) -> tuple[dict[str, tuple[int, float]], float]:  # pragma: no cover
        """The customer's logged events (transaction_id → (time µs, amount)) and account creation time (or NaN)."""
        ...

    def clear(self) -> None:  # pragma: no cover - protocol
        """Forget every customer's history (tests, and a rebuild from scratch)."""
        ...


def _created(stored: float | None, given: float | None) -> float:
    if stored is not None and not math.isnan(stored):
        return stored
    return math.nan if given is None else given


# One row per customer: their events within the longest window as three packed columns in time order (ids as a JSON
# list, times and amounts as little-endian int64 / float64 arrays), with the account creation time and the last
# row's stamp.
# An update is then one read and one write of one row, whatever the history's length: with a row per event it
# stepped through every logged event of the customer (~75 here), and each step of Python's sqlite3 releases and
# re-takes the GIL, which the service's event-loop thread is waiting for under load.
# Keys are TEXT: integer ids compare equal to their text form, string ids are kept as they are (an INTEGER column
# would turn "007" into 7). Earlier layouts (a row per event) are moved into this table once, on the first
# connection.
_TABLE = (
    "CREATE TABLE IF NOT EXISTS customer_history (customer_key TEXT PRIMARY KEY, account_created_ts REAL, "
    "stamp_us INTEGER, transaction_ids TEXT NOT NULL DEFAULT '[]', times_us BLOB NOT NULL DEFAULT x'', "
    "amounts BLOB NOT NULL DEFAULT x'')"
)
# Earlier layouts: table -> its events as (key, transaction_id, time_us, amount) or its state as (key, created,
# stamp). Integer keys (customer_events / customer_state), a rowid events table (customer_log_events), a clustered
# one (customer_log); customer_log_state held the state of the last two.
_LEGACY_EVENTS = {
    "customer_events": "SELECT CAST(customer_id AS TEXT), transaction_id, time_us, amount FROM customer_events",
    "customer_log_events": "SELECT customer_key, transaction_id, time_us, amount FROM customer_log_events",
    "customer_log": "SELECT customer_key, transaction_id, time_us, amount FROM customer_log",
}
_LEGACY_STATE = {
    "customer_state": "SELECT CAST(customer_id AS TEXT), account_created_ts, stamp_us FROM customer_state",
    "customer_log_state": "SELECT customer_key, account_created_ts, stamp_us FROM customer_log_state",
}
_COLUMNS = "customer_key, account_created_ts, stamp_us, transaction_ids, times_us, amounts"
_SELECT = f"SELECT {_COLUMNS} FROM customer_history WHERE customer_key IN "  # noqa: S608 - constant
_UPSERT = (
    f"INSERT INTO customer_history ({_COLUMNS}) VALUES {{rows}} ON CONFLICT(customer_key) DO UPDATE SET "  # noqa: S608
    "account_created_ts = excluded.account_created_ts, stamp_us = excluded.stamp_us, "
    "transaction_ids = excluded.transaction_ids, times_us = excluded.times_us, amounts = excluded.amounts"
)
# Customers per statement: one read and one write of all of a scoring call's customers (each statement a single
# GIL release of Python's sqlite3, which the event loop is waiting for under load), within SQLite's limit of
# 32,766 bound values for a rebuild's thousands of customers.
_CUSTOMERS_PER_STATEMENT = 2_000


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CUSTOMERS_PER_STATEMENT):
        yield items[start : start + _CUSTOMERS_PER_STATEMENT]


@functools.lru_cache(maxsize=64)  # statement texts by customer count (a call's few sizes)
def _select(customers: int) -> str:
    return _SELECT + "(" + ", ".join("?" * customers) + ")"


@functools.lru_cache(maxsize=64)  # statement texts by customer count (a call's few sizes)
def _upsert(customers: int) -> str:
    return _UPSERT.format(rows=", ".join(["(?, ?, ?, ?, ?, ?)"] * customers))


def _packed(typecode: str, blob: bytes = b"") -> array.array[Any]:
    """A packed little-endian column of the table as an array of Python numbers (``q``: int64, ``d``: float64)."""
    values = array.array(typecode)
    values.frombytes(blob)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _blob(values: array.array[Any]) -> bytes:
    if _BIG_ENDIAN:
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


_BIG_ENDIAN = sys.byteorder == "big"
# Events older than the longest window before the latest one no longer count (the windows skip them by
# bisection), so they are dropped only once they are more than this share of a customer's row: dropping them
# decodes and re-encodes the row's ids, which at a customer's steady rate would happen at nearly every update.
_EXPIRED_SHARE_DROPPED = 0.25


class _History:
    """One customer's row of ``customer_history``, unpacked, its events in time order (ties in arrival order).

    Time order is what lets each window be a tail of the events (:func:`customer_row_in_order`); a late event is
    inserted in its place, and rows written before the order was kept are sorted once (``PRAGMA user_version``).

    The ids stay the JSON text they are stored as until something needs them as a list: an update only appends
    one and checks that it is new, both done on the text (``json.dumps`` of the list writes each id as
    ``json.dumps`` of the id, joined by ``", "``), which saves decoding and encoding a few dozen ids per scored
    transaction. A match in the text (a retry, or an id whose quoted form occurs inside another) is checked on
    the decoded list.
    """

    def __init__(
        self,
        ids: list[str] | str,
        times: array.array[int],
        amounts: array.array[float],
        created: float | None = None,
        stamp_us: int | None = None,
    ) -> None:
        self._ids: list[str] | None = ids if isinstance(ids, list) else None
        self._ids_text: str | None = ids if isinstance(ids, str) else None
        self.times = times  # µs, ascending
        self.amounts = amounts
        self.created = created
        self.stamp_us = stamp_us

    @classmethod
    def of(cls, events: dict[str, tuple[int, float]], created: float | None, stamp_us: int | None) -> _History:
        """A history of events given as transaction_id → (time µs, amount), in any order."""
        ordered = sorted(events.items(), key=lambda item: item[1][0])  # by time
        return cls(
            [tx for tx, _ in ordered],
            array.array("q", [t for _, (t, _) in ordered]),
            array.array("d", [a for _, (_, a) in ordered]),
            created,
            stamp_us,
        )

    @classmethod
    def read(cls, connection: sqlite3.Connection, customers: Sequence[CustomerKey]) -> dict[CustomerKey, _History]:
        """The customers' histories (an empty one for a customer the log does not know), one query per chunk."""
        found: dict[str, _History] = {}
        for chunk in _chunks(customers):
            for key, created, stamp, ids, times, amounts in connection.execute(_select(len(chunk)), chunk):
                found[key] = cls(ids, _packed("q", times), _packed("d", amounts), created, stamp)
        # Keys are stored as TEXT (the column's affinity turns an integer id into its digits).
        return {c: found.get(str(c)) or cls([], _packed("q"), _packed("d")) for c in customers}

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = json.loads(self._ids_text or "[]")
            self._ids_text = None
        return self._ids

    def unlogged(self, events: Sequence[CustomerEvent]) -> list[CustomerEvent]:
        """``events`` whose ids are not logged yet, the first of each id (a lone event checked on the text)."""
        distinct = list({e.transaction_id: e for e in events}.values())
        if (
            len(distinct) == 1
            and self._ids_text is not None
            and json.dumps(distinct[0].transaction_id) not in self._ids_text
        ):
            return distinct
        known = set(self.ids)
        return [e for e in distinct if e.transaction_id not in known]

    def append(self, events: Sequence[CustomerEvent]) -> None:
        """Log new ``events`` (their ids not yet logged), each in its place in time order."""
        new = sorted(events, key=operator.attrgetter("time_us"))  # stable: same-instant events keep their arrival order
        if self.times and new[0].time_us < self.times[-1]:  # a late event: merge the whole row in time order
            merged = sorted(
                [*zip(self.ids, self.times, self.amounts, strict=True)]
                + [(e.transaction_id, e.time_us, e.amount) for e in new],
                key=operator.itemgetter(1),
            )
            self._ids = [tx for tx, _, _ in merged]
            self.times = array.array("q", [t for _, t, _ in merged])
            self.amounts = array.array("d", [a for _, _, a in merged])
            return
        if self._ids_text is not None:
            quoted = ", ".join(json.dumps(e.transaction_id) for e in new)
            head = self._ids_text[:-1]  # without the closing bracket
            self._ids_text = f"{head}{', ' if head != '[' else ''}{quoted}]"
        else:
            self.ids.extend(e.transaction_id for e in new)
        self.times.extend(e.time_us for e in new)
        self.amounts.extend(e.amount for e in new)

    def drop_through(self, time_us: int, *, share: float = 0.0) -> None:
        """Forget the events at or before ``time_us`` if they are more than ``share`` of the row (a prefix)."""
        count = bisect.bisect_right(self.times, time_us)
        if count and count > share * len(self.times):
            self._ids = self.ids[count:]
            del self.times[:count]
            del self.amounts[:count]

    def stored(self, customer: CustomerKey) -> tuple[Any, ...]:
        """The row to write back: the table's columns, in order."""
        created = None if self.created is None or math.isnan(self.created) else self.created
        ids = self._ids_text if self._ids_text is not None else json.dumps(self.ids)
        return (customer, created, self.stamp_us, ids, _blob(self.times), _blob(self.amounts))

    @staticmethod
    def write(connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Upsert rows made by :meth:`stored`, one statement per chunk."""
        for chunk in _chunks(rows):
            connection.execute(_upsert(len(chunk)), [value for row in chunk for value in row])


# The log's ``user_version`` from which every row's events are in time order (rows written before are sorted once).
_IN_TIME_ORDER = 1


def _sort_rows(connection: sqlite3.Connection) -> None:
    """Put every row's events in time order (rows written before the log kept that order)."""
    rows = connection.execute(f"SELECT {_COLUMNS} FROM customer_history").fetchall()  # noqa: S608 - constant
    for key, created, stamp, ids, times, amounts in rows:
        history = _History(ids, _packed("q", times), _packed("d", amounts), created, stamp)
        if any(later < earlier for earlier, later in itertools.pairwise(history.times)):
            events = dict(zip(history.ids, zip(history.times, history.amounts, strict=True), strict=True))
            _History.write(connection, [_History.of(events, created, stamp).stored(key)])


def _create_tables(connection: sqlite3.Connection) -> None:
    """The log's table, and the move of a legacy log into it, in one write transaction (any process may race)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(_TABLE)
        existing = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        events: dict[str, dict[str, tuple[int, float]]] = {}
        for table, select in _LEGACY_EVENTS.items():
            if table in existing:
                for key, tx, t, amount in connection.execute(select):
                    events.setdefault(key, {})[tx] = (int(t), float(amount))
        state = {
            key: (created, stamp)
            for table, select in _LEGACY_STATE.items()
            if table in existing
            for key, created, stamp in connection.execute(select)
        }
        for key in events.keys() | state.keys():
            created, stamp = state.get(key, (None, None))
            _History.write(connection, [_History.of(events.get(key, {}), created, stamp).stored(key)])
        if connection.execute("PRAGMA user_version").fetchone()[0] < _IN_TIME_ORDER:
            _sort_rows(connection)
            connection.execute(f"PRAGMA user_version = {_IN_TIME_ORDER}")
        for table in existing & (_LEGACY_EVENTS.keys() | _LEGACY_STATE.keys()):
            connection.execute(f"DROP TABLE {table}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


class SqliteEventLog:
    """The embedded backend: one SQLite file, one writer at a time across every process (``BEGIN IMMEDIATE``).

    A writer waits at most ``busy_timeout_s`` for another one (an update takes ~1 ms), well inside the service's
    request timeout: a store that stays locked fails the update, not the request.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 1.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection per process, used by one thread at a time

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            # WAL: readers never wait for the writer; NORMAL: no fsync per commit (a power cut may lose the last
            # commits, a process crash loses nothing). The log is rebuilt from the data by the features stage.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            checkpoint_off_the_request_path(connection, self.path)
            _create_tables(connection)
            self._connection = connection
        return self._connection

    @staticmethod
    def _merge(
        history: _History,
        customer: CustomerKey,
        events: Sequence[CustomerEvent],
        created: float | None,
        replace_until_us: int | None,
    ) -> tuple[int, tuple[CustomerKey, dt.datetime, dict[str, float]] | None]:
        if replace_until_us is not None:  # a rebuild: the batch replaces what the log holds up to its end
            history.drop_through(replace_until_us)
        new = history.unlogged(events)
        if not new:  # every id already logged: a client's retry changes nothing
            return 0, None
        history.append(new)
        history.created = _created(history.created, created)
        row, history.stamp_us, horizon = row_after(
            history.times, history.amounts, account_created_ts=history.created, previous_stamp_us=history.stamp_us
        )
        history.drop_through(horizon, share=_EXPIRED_SHARE_DROPPED)  # events that can no longer count
        return len(new), (customer, _stamp(history.stamp_us), row)

    def _transaction(
        self,
        groups: dict[CustomerKey, list[CustomerEvent]],
        created: dict[CustomerKey, float],
        write: RowWriter,
        replace_until_us: int | None = None,
    ) -> list[tuple[int, tuple[CustomerKey, dt.datetime, dict[str, float]] | None]]:
        with self._lock:
            try:
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise EventLogError(f"customer event log unavailable: {error}") from error
            try:
                # One read and one write of all the customers' rows (see _CUSTOMERS_PER_STATEMENT).
                histories = _History.read(connection, list(groups))
                results = [
                    self._merge(histories[c], c, events, created.get(c), replace_until_us)
                    for c, events in groups.items()
                ]
                changed = [(c, pending) for c, (_, pending) in zip(groups, results, strict=True) if pending is not None]
                if changed:
                    _History.write(connection, [histories[c].stored(c) for c, _ in changed])
                    write([pending for _, pending in changed])  # inside the transaction: no other writer meanwhile
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return results

    def record(self, event: CustomerEvent, *, account_created_ts: float | None, write: RowWriter) -> Recorded:
        """Record ``event`` and write the customer's new row in one write transaction."""
        created = {} if account_created_ts is None else {event.customer_id: account_created_ts}
        [(counted, pending)] = self._transaction({event.customer_id: [event]}, created, write)
        return _recorded(counted, pending)

    def record_all(
        self, events: Sequence[CustomerEvent], account_created_ts: Mapping[CustomerKey, float], *, write: RowWriter
    ) -> dict[CustomerKey, int | Exception]:
        """Record ``events`` and write their customers' rows in one write transaction (one Feast write)."""
        groups = _by_customer(events)
        try:
            results = self._transaction(groups, dict(account_created_ts), write)
        except Exception as error:  # rolled back: no customer of the batch is changed
            return dict.fromkeys(groups, error)
        return {customer: counted for customer, (counted, _) in zip(groups, results, strict=True)}

    def load(
        self,
        events: Iterable[CustomerEvent],
        account_created_ts: dict[CustomerKey, float],
        *,
        write: RowWriter,
        replace_until_us: int | None = None,
    ) -> int:
        """Merge ``events`` and write each touched customer's final row, in one transaction."""
        with self._lock:
            connection = self._connect()
            connection.executemany(
                "INSERT INTO customer_history (customer_key, account_created_ts) VALUES (?, ?) "
                "ON CONFLICT(customer_key) DO UPDATE SET account_created_ts = excluded.account_created_ts",
                list(account_created_ts.items()),
            )
        results = self._transaction(_by_customer(events), account_created_ts, write, replace_until_us)
        return sum(counted for counted, _ in results)

    def history(self, customer_id: CustomerKey) -> tuple[dict[str, tuple[int, float]], float]:
        """The customer's logged events and account creation time (a read: no write lock)."""
        with self._lock:
            try:
                connection = self._connect()
                history = _History.read(connection, [customer_id])[customer_id]
            except sqlite3.Error as error:
                raise EventLogError(f"customer event log unavailable: {error}") from error
        created = math.nan if history.created is None else float(history.created)
        events = zip(history.times, history.amounts, strict=True)
        return dict(zip(history.ids, events, strict=True)), created

    def clear(self) -> None:
        """Forget every customer's history."""
        with self._lock:
            connection = self._connect()
            connection.execute("DELETE FROM customer_history")


# Releases the lock only if it still holds this holder's token (a lock that expired may belong to another now).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisEventLog:
    """The scaled backend: per customer a hash of events and a hash of state, updated under a per-customer lock.

    Keys carry the customer in a hash tag (``{…}``) so that one customer's keys stay on one cluster slot. The lock
    is a lease: a holder that stalls longer than ``lock_lease_ms`` (a frozen process) loses it.
    """

    def __init__(self, client: Any, *, project: str, lock_lease_ms: int = 5_000, lock_wait_s: float = 1.0) -> None:
        self._client = client
        self._prefix = f"mlops:{project}:customer"
        self._lease_ms = lock_lease_ms
        self._wait_s = lock_wait_s
        self._release = client.register_script(_RELEASE)

    def _keys(self, customer_id: CustomerKey) -> tuple[str, str, str]:
        base = f"{self._prefix}:{{{customer_id}}}"
        return f"{base}:events", f"{base}:state", f"{base}:lock"

    def _acquire(self, lock: str) -> str:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self._wait_s
        pause = 0.0005
        while not self._client.set(lock, token, nx=True, px=self._lease_ms):
            if time.monotonic() > deadline:
                raise EventLogError(f"customer lock {lock} not obtained within {self._wait_s} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return token

    def _merge(
        self,
        customer: CustomerKey,
        events: Sequence[CustomerEvent],
        created_given: float | None,
        write: RowWriter,
        replace_until_us: int | None = None,
    ) -> tuple[int, tuple[CustomerKey, dt.datetime, dict[str, float]] | None]:
        import redis

        events_key, state_key, lock = self._keys(customer)
        try:
            token = self._acquire(lock)
        except redis.RedisError as error:
            raise EventLogError(f"customer event log unavailable: {type(error).__name__}: {error}") from error
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(events_key)
                pipe.hmget(state_key, ["account_created_ts", "stamp_us"])
                raw_events, (raw_created, raw_stamp) = pipe.execute()
            logged = {}
            for tx, value in raw_events.items():
                t, a = value.split(b" ")
                logged[tx.decode()] = (int(t), float(a))
            history, replaced = _split(logged, replace_until_us)
            new = list({e.transaction_id: e for e in events if e.transaction_id not in history}.values())
            if not new:
                return 0, None
            created = _created(None if raw_created is None else float(raw_created), created_given)
            previous = None if raw_stamp is None else int(raw_stamp)
            row, stamp_us, expired = next_row(history, new, account_created_ts=created, previous_stamp_us=previous)
            pending = (customer, _stamp(stamp_us), row)
            write([pending])
            with self._client.pipeline(transaction=True) as pipe:
                dropped = set(replaced) - {e.transaction_id for e in new}
                if dropped:
                    pipe.hdel(events_key, *dropped)
                pipe.hset(events_key, mapping={e.transaction_id: f"{e.time_us} {e.amount!r}" for e in new})
                if expired:
                    pipe.hdel(events_key, *expired)
                state = {"stamp_us": str(stamp_us)}
                if not math.isnan(created):
                    state["account_created_ts"] = repr(created)
                pipe.hset(state_key, mapping=state)
                pipe.execute()
            return len(new), pending
        except redis.RedisError as error:
            raise EventLogError(f"customer event log unavailable: {type(error).__name__}: {error}") from error
        finally:
            with contextlib.suppress(redis.RedisError):  # the lease expires on its own
                self._release(keys=[lock], args=[token])

    def record(self, event: CustomerEvent, *, account_created_ts: float | None, write: RowWriter) -> Recorded:
        """Record ``event`` and write the customer's new row under the customer's lock."""
        counted, pending = self._merge(event.customer_id, [event], account_created_ts, write)
        return _recorded(counted, pending)

    def record_all(
        self, events: Sequence[CustomerEvent], account_created_ts: Mapping[CustomerKey, float], *, write: RowWriter
    ) -> dict[CustomerKey, int | Exception]:
        """Record ``events`` customer by customer, each under its lock: one customer's failure spares the others."""
        outcomes: dict[CustomerKey, int | Exception] = {}
        for customer, group in _by_customer(events).items():
            try:
                outcomes[customer] = self._merge(customer, group, account_created_ts.get(customer), write)[0]
            except Exception as error:
                outcomes[customer] = error
        return outcomes

    def load(
        self,
        events: Iterable[CustomerEvent],
        account_created_ts: dict[CustomerKey, float],
        *,
        write: RowWriter,
        replace_until_us: int | None = None,
    ) -> int:
        """Merge ``events`` customer by customer (each under its lock) and write each one's final row."""
        for customer, created in account_created_ts.items():
            self._client.hset(self._keys(customer)[1], "account_created_ts", repr(created))
        groups = _by_customer(events)
        return sum(
            self._merge(c, group, account_created_ts.get(c), write, replace_until_us)[0] for c, group in groups.items()
        )

    def history(self, customer_id: CustomerKey) -> tuple[dict[str, tuple[int, float]], float]:
        """The customer's logged events and account creation time (a read: no lock)."""
        import redis

        events_key, state_key, _ = self._keys(customer_id)
        try:
            with self._client.pipeline(transaction=True) as pipe:  # one snapshot of both keys
                pipe.hgetall(events_key)
                pipe.hget(state_key, "account_created_ts")
                raw_events, raw_created = pipe.execute()
        except redis.RedisError as error:
            raise EventLogError(f"customer event log unavailable: {type(error).__name__}: {error}") from error
        events = {}
        for tx, value in raw_events.items():
            t, a = value.split(b" ")
            events[tx.decode()] = (int(t), float(a))
        return events, math.nan if raw_created is None else float(raw_created)

    def clear(self) -> None:
        """Forget every customer's history (this project's keys only)."""
        keys = list(self._client.scan_iter(match=f"{self._prefix}:*", count=1000))
        if keys:
            self._client.delete(*keys)


# Commits on the request path never checkpoint (copy the write-ahead log back into the database file) below this
# many WAL pages: the checkpointer thread does it every CHECKPOINT_INTERVAL_S instead. Left to SQLite's default
# (1,000 pages, ~4 MB: every ~200 updates here), the committing request paid a checkpoint of a few milliseconds,
# the service's p99. The bound stays as a backstop should the thread stop (~400 MB of WAL).
REQUEST_PATH_CHECKPOINT_PAGES = 100_000
CHECKPOINT_INTERVAL_S = 1.0
# A PASSIVE checkpoint copies what it can without waiting for anyone; but the log only starts again from its
# beginning when a checkpoint has copied *every* frame before the next write, which under sustained writes never
# happens: measured, the log grew by ~10 MB a second of load, without bound. Past this many frames the thread runs a
# RESTART checkpoint: it waits (at most RESTART_WAIT_S) for the writer of the moment, copies the few frames the
# PASSIVE one left and makes the next writer start the log again; writers wait for it meanwhile (3-6 ms measured
# under load, about every 25 s at 650 updates/s). JOURNAL_SIZE_LIMIT then truncates the file itself.
RESTART_AFTER_FRAMES = 16_384  # 64 MB of 4 KiB pages
RESTART_WAIT_S = 0.2
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class _Checkpointer:
    """WAL checkpoints of this process' SQLite files, off the request path, on one daemon thread.

    PASSIVE never waits for readers or writers (it copies what it can, the rest next time), and sqlite3 releases
    the GIL while it runs, so the copy uses the other core instead of a request's time; a RESTART one bounds the
    log (see :data:`RESTART_AFTER_FRAMES`). Started on the first
    :meth:`watch` (never at import); several processes checkpointing one file is safe (SQLite serialises them).
    """

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, path: Path) -> None:
        with self._lock:
            self._paths.add(path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoint", daemon=True)
                self._thread.start()

    def watched(self) -> set[Path]:
        """The files checkpointed now (a removed file is forgotten at the next round)."""
        with self._lock:
            return set(self._paths)

    def _run(self) -> None:
        connections: dict[Path, sqlite3.Connection] = {}
        while True:
            time.sleep(CHECKPOINT_INTERVAL_S)
            for path in sorted(self.watched()):
                if not path.exists():  # its project was removed (a test's, a rebuilt store): forget it
                    with self._lock:
                        self._paths.discard(path)
                    _close(connections.pop(path, None))
                    continue
                try:
                    connection = connections.get(path)
                    if connection is None:
                        # mode=rw: never creates a database file where one was removed meanwhile.
                        connection = sqlite3.connect(
                            f"{path.as_uri()}?mode=rw", uri=True, timeout=RESTART_WAIT_S, check_same_thread=False
                        )
                        connections[path] = connection
                    _checkpoint(connection)
                except Exception as error:  # locked, removed, anything: try again next round, never stop
                    _log.debug("WAL checkpoint of %s skipped: %s: %s", path, type(error).__name__, error)
                    _close(connections.pop(path, None))


def _checkpoint(connection: sqlite3.Connection) -> None:
    """A PASSIVE checkpoint, then a RESTART one if the log is past :data:`RESTART_AFTER_FRAMES` (see above)."""
    _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if frames > RESTART_AFTER_FRAMES:
        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()  # waits RESTART_WAIT_S at most


def _close(connection: sqlite3.Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(sqlite3.Error):
            connection.close()


_CHECKPOINTS = _Checkpointer()


def checkpoint_off_the_request_path(connection: sqlite3.Connection, path: Path) -> None:
    """Make ``connection``'s commits leave WAL checkpoints of ``path`` to the checkpointer thread (see above)."""
    connection.execute(f"PRAGMA wal_autocheckpoint={REQUEST_PATH_CHECKPOINT_PAGES}")
    connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    _CHECKPOINTS.watch(path)


def _write_ahead_log(online_db: Path) -> None:
    """Switch Feast's SQLite online store to WAL (a setting of the database file, kept across connections).

    In its default rollback-journal mode every row written costs several fsyncs and blocks every reader of the
    file meanwhile: with a write per scored transaction, the workers' lookups would queue behind the writes.
    """
    online_db.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(online_db, timeout=5.0)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def open_event_log(store: Any) -> CustomerEventLog:
    """The event log beside ``store``'s online store: chosen by the same Feast configuration.

    SQLite online store → ``customer_events.db`` in its folder; Redis → the same server, under ``mlops:<project>:``.
    """
    config = store.config
    online = config.online_store
    kind = getattr(online, "type", None)
    if kind == "sqlite":
        path = Path(online.path)
        if not path.is_absolute():
            path = Path(config.repo_path) / path
        _write_ahead_log(path)
        return SqliteEventLog(path.parent / "customer_events.db")
    if kind == "redis":
        import redis
        from feast.infra.online_stores.redis import RedisOnlineStore

        # Feast's own parser, so that the log reads FEAST_REDIS_CONNECTION exactly as the online store does.
        nodes, options = RedisOnlineStore._parse_connection_string(online.connection_string)
        client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **options)
        return RedisEventLog(client, project=config.project)
    raise EventLogError(f"no customer event log for online store type {kind!r} (supported: sqlite, redis)")


def _recorded(counted: Any, pending: Any) -> Recorded:
    """What :meth:`record` reports, from a backend's merge result (``pending``: None when nothing was written)."""
    if pending is None:
        return Recorded(counted=False)
    return Recorded(counted=bool(counted), row=pending[2], stamp=pending[1])


class CustomerUpdates:
    """The per-transaction update of customer rows: the event log plus Feast's online write of the view.

    One object per process (it holds connections); the online service and, later, the stream scorer call
    :meth:`record_all` after scoring, the features stage calls :meth:`rebuild`.
    """

    def __init__(self, store: Any, *, log: CustomerEventLog | None = None) -> None:
        from mlops_recipes.io.feature_store import OnlineRowWriter, per_transaction_views

        views = per_transaction_views(store)
        if len(views) != 1:
            raise EventLogError(f"expected one feature view tagged refresh: per-transaction, found {views}")
        self.log = log if log is not None else open_event_log(store)  # first: it puts SQLite in WAL mode
        self.writer = OnlineRowWriter(store, views[0])

    def record_all(
        self, events: Sequence[CustomerEvent], account_created_ts: Mapping[CustomerKey, float]
    ) -> dict[CustomerKey, int | Exception]:
        """Count a scored batch's ``events``: per customer, the events counted or the error (see the log's)."""
        return self.log.record_all(events, account_created_ts, write=self.writer)

    def row_before(self, customer_id: CustomerKey, time_us: int) -> dict[str, float] | None:
        """The customer's row as of just before ``time_us``, from the log: what training sees for an event then.

        None when the customer has no event before then within the longest window (features missing, as in the
        point-in-time join, whose customer TTL is that window). Used when the online row already counts events
        at or after the transaction's time: a same-instant event, a late one, or a client's retry.
        """
        events, created = self.log.history(customer_id)
        before = sorted((t, a) for t, a in events.values() if t < time_us)
        if not before or before[-1][0] <= time_us - longest_window_us():
            return None
        return customer_row_in_order([t for t, _ in before], [a for _, a in before], account_created_ts=created)

    def rebuild(self, transactions: Any) -> dict[str, int]:
        """Load a transaction table (ingest columns) into the log and rewrite every customer's row from it.

        Only each customer's events within the longest window before their latest one are needed. Events the log
        holds from after the table's end (scored online meanwhile) are kept and counted in the rows.
        """
        import pandas as pd

        has_created = ACCOUNT_CREATED in transactions.columns  # the contract may declare no account date
        frame = transactions[
            [TRANSACTION_ID, CUSTOMER, EVENT_TIME, AMOUNT, *([ACCOUNT_CREATED] if has_created else [])]
        ]
        micros = frame[EVENT_TIME].dt.tz_convert("UTC").dt.as_unit("us").astype("int64")
        latest = micros.groupby(frame[CUSTOMER]).transform("max")
        recent = frame.loc[micros > latest - longest_window_us()]
        recent_us = micros.loc[recent.index]
        events = [
            CustomerEvent(customer_id=_key(c), transaction_id=str(tx), time_us=int(t), amount=float(a))
            for c, tx, t, a in zip(recent[CUSTOMER], recent[TRANSACTION_ID], recent_us, recent[AMOUNT], strict=True)
        ]
        created: dict[CustomerKey, float] = {}
        if has_created:
            last = frame.sort_values(EVENT_TIME, kind="stable").groupby(CUSTOMER).tail(1)
            created = {
                _key(c): float(pd.Timestamp(ts).timestamp())
                for c, ts in zip(last[CUSTOMER], last[ACCOUNT_CREATED], strict=True)
            }
        counted = self.log.load(events, created, write=self.writer, replace_until_us=int(micros.max()))
        return {"customers": int(frame[CUSTOMER].nunique()), "events": counted}


def _key(value: Any) -> CustomerKey:
    """A customer id from a DataFrame as the plain int or str the log and Feast's entity keys take."""
    native = value.item() if hasattr(value, "item") else value
    return native if isinstance(native, str) else int(native)
