"""io/customer_events.py on a real SQLite file: counting, retries, late events, rollback, rebuild.

The writer is the boundary to Feast; here it collects the rows it is given (and raises where a test injects a
failure). The Redis backend runs the same checks in tests/integration/test_scaled_profile.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from pathlib import Path

import pytest

from mlops_recipes.io.customer_events import CustomerEvent, EventLogError, SqliteEventLog, time_us

pytestmark = pytest.mark.unit

T0 = time_us(dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC))
MINUTE = 60_000_000
DAY = 86_400_000_000


class Rows:
    """A RowWriter that keeps what it was asked to write."""

    def __init__(self) -> None:
        self.written: list[tuple[int, dt.datetime, dict[str, float]]] = []

    def __call__(self, rows: object) -> None:
        self.written.extend(rows)  # type: ignore[call-overload]

    @property
    def last(self) -> dict[str, float]:
        return self.written[-1][2]


def _event(tx: str, minutes: float, amount: float = 10.0, customer: int = 1) -> CustomerEvent:
    return CustomerEvent(customer_id=customer, transaction_id=tx, time_us=T0 + int(minutes * MINUTE), amount=amount)


@pytest.fixture
def log(tmp_path: Path) -> SqliteEventLog:
    return SqliteEventLog(tmp_path / "customer_events.db")


def test_each_event_is_counted_in_the_row_after_it(log: SqliteEventLog) -> None:
    rows = Rows()

    log.record(_event("a", 0, 10.0), account_created_ts=5.0, write=rows)
    recorded = log.record(_event("b", 30, 30.0), account_created_ts=None, write=rows)

    assert recorded.counted
    assert rows.last["cust_txn_count_1h"] == 2
    assert rows.last["cust_amount_sum_1h"] == 40.0
    assert rows.last["cust_amount_mean_30d"] == 20.0
    assert rows.last["cust_last_txn_ts"] == (T0 + 30 * MINUTE) / 1e6
    # The account creation time given with the first event is kept.
    assert rows.last["cust_account_created_ts"] == 5.0
    assert [stamp for _, stamp, _ in rows.written] == [
        dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 30, 12, 30, tzinfo=dt.UTC),
    ]


def test_a_retried_transaction_id_counts_once(log: SqliteEventLog) -> None:
    rows = Rows()
    log.record(_event("a", 0), account_created_ts=None, write=rows)

    again = log.record(_event("a", 0), account_created_ts=None, write=rows)

    assert not again.counted
    assert len(rows.written) == 1  # nothing rewritten


def test_a_late_event_joins_its_windows_and_the_stamp_still_moves_forward(log: SqliteEventLog) -> None:
    rows = Rows()
    log.record(_event("new", 120, 100.0), account_created_ts=None, write=rows)

    log.record(_event("late", 90, 1.0), account_created_ts=None, write=rows)

    (_, first, _), (_, second, row) = rows.written
    # The row stays the state as of the latest event (two hours in): the late one is inside its hour.
    assert row["cust_last_txn_ts"] == (T0 + 120 * MINUTE) / 1e6
    assert row["cust_txn_count_1h"] == 2
    assert second == first + dt.timedelta(microseconds=1)  # strictly newer: Feast's Redis writer needs it


def test_an_event_older_than_the_longest_window_is_not_counted(log: SqliteEventLog) -> None:
    rows = Rows()
    log.record(_event("now", 0), account_created_ts=None, write=rows)

    log.record(_event("ancient", -31 * 24 * 60), account_created_ts=None, write=rows)

    assert rows.last["cust_txn_count_7d"] == 1
    assert rows.last["cust_amount_mean_30d"] == 10.0


def test_same_instant_events_both_count(log: SqliteEventLog) -> None:
    rows = Rows()
    log.record(_event("a", 0, 1.0), account_created_ts=None, write=rows)

    log.record(_event("b", 0, 2.0), account_created_ts=None, write=rows)

    assert rows.last["cust_txn_count_1h"] == 2
    assert rows.written[1][1] > rows.written[0][1]


def test_customers_do_not_mix(log: SqliteEventLog) -> None:
    rows = Rows()
    log.record(_event("a", 0, customer=1), account_created_ts=None, write=rows)

    log.record(_event("a", 1, customer=2), account_created_ts=None, write=rows)  # same id, another customer

    assert [customer for customer, _, _ in rows.written] == [1, 2]
    assert rows.last["cust_txn_count_1h"] == 1


def test_a_failed_write_leaves_no_trace_and_a_retry_counts(log: SqliteEventLog) -> None:
    def store_down(rows: object) -> None:
        raise ConnectionError("online store down (fault injected)")

    with pytest.raises(ConnectionError):
        log.record(_event("a", 0), account_created_ts=None, write=store_down)

    rows = Rows()
    retried = log.record(_event("a", 0), account_created_ts=None, write=rows)
    assert retried.counted
    assert rows.last["cust_txn_count_1h"] == 1


def test_a_scored_batch_is_one_write_counted_per_customer(log: SqliteEventLog) -> None:
    rows, calls = Rows(), []

    def write(batch: object) -> None:
        calls.append(batch)
        rows(batch)

    log.record(_event("a", 0, customer=1), account_created_ts=None, write=rows)
    outcomes = log.record_all(
        [_event("a", 1, customer=1), _event("b", 2, 5.0, customer=1), _event("c", 2, customer=2)],
        {2: 7.0},
        write=write,
    )

    assert outcomes == {1: 1, 2: 1}  # customer 1's "a" was logged already: a retry within the batch
    assert len(calls) == 1  # one Feast write for the whole batch, one row per customer
    by_customer = {customer: row for customer, _, row in rows.written[1:]}
    assert by_customer[1]["cust_txn_count_1h"] == 2
    assert by_customer[1]["cust_amount_sum_1h"] == 15.0
    assert by_customer[2]["cust_txn_count_1h"] == 1
    assert by_customer[2]["cust_account_created_ts"] == 7.0


def test_a_scored_batch_that_cannot_be_written_changes_no_customer(log: SqliteEventLog) -> None:
    def store_down(rows: object) -> None:
        raise ConnectionError("online store down (fault injected)")

    outcomes = log.record_all([_event("a", 0, customer=1), _event("b", 0, customer=2)], {}, write=store_down)

    assert set(outcomes) == {1, 2}
    assert all(isinstance(error, ConnectionError) for error in outcomes.values())
    assert log.history(1)[0] == {}
    assert log.history(2)[0] == {}


def test_a_batch_reads_and_writes_customers_beyond_one_statement(
    log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_recipes.io import customer_events

    monkeypatch.setattr(customer_events, "_CUSTOMERS_PER_STATEMENT", 2)  # 5 customers: 3 statements each way
    rows = Rows()
    first = log.record_all([_event(f"t{c}", 0, customer=c) for c in range(5)], {}, write=rows)
    again = log.record_all([_event(f"u{c}", 1, customer=c) for c in range(5)], {}, write=rows)

    assert first == again == dict.fromkeys(range(5), 1)
    assert sorted(c for c, _, row in rows.written if row["cust_txn_count_1h"] == 2) == list(range(5))


def test_another_writer_holding_the_log_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "customer_events.db"
    SqliteEventLog(path).record(_event("a", 0), account_created_ts=None, write=Rows())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(EventLogError, match="customer event log unavailable"):
            SqliteEventLog(path, busy_timeout_s=0.05).record(_event("b", 1), account_created_ts=None, write=Rows())
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_rebuild_replaces_events_up_to_the_batch_end_and_keeps_later_ones(log: SqliteEventLog) -> None:
    rows = Rows()
    log.record(_event("old-version", 0, 999.0), account_created_ts=None, write=rows)
    log.record(_event("scored-online", 60 * 24, 5.0), account_created_ts=None, write=rows)  # after the batch end

    batch = [_event("b1", 10, 1.0), _event("b2", 20, 2.0)]
    counted = log.load(batch, {1: 7.0}, write=rows, replace_until_us=T0 + 30 * MINUTE)

    assert counted == 2
    row = rows.last
    # 1.0 + 2.0 from the batch and the 5.0 scored later; the replaced 999.0 is gone.
    assert row["cust_txn_count_7d"] == 3
    assert row["cust_amount_sum_7d"] == 8.0
    assert row["cust_last_txn_ts"] == (T0 + 60 * 24 * MINUTE) / 1e6
    assert row["cust_account_created_ts"] == 7.0


def test_history_survives_a_new_connection(tmp_path: Path) -> None:
    path = tmp_path / "customer_events.db"
    SqliteEventLog(path).record(_event("a", 0), account_created_ts=None, write=Rows())

    rows = Rows()
    SqliteEventLog(path).record(_event("b", 1), account_created_ts=None, write=rows)  # a restart, another worker

    assert rows.last["cust_txn_count_1h"] == 2


def test_string_ids_are_kept_as_they_are(log: SqliteEventLog) -> None:
    rows = Rows()
    # A contract with string ids: "007" and "7" are two customers (an INTEGER key column would merge them).
    for tx, customer in (("a", "007"), ("b", "7"), ("c", "007")):
        event = CustomerEvent(customer_id=customer, transaction_id=tx, time_us=T0, amount=10.0)
        log.record(event, account_created_ts=None, write=rows)

    assert [(key, row["cust_txn_count_1h"]) for key, _, row in rows.written] == [("007", 1), ("7", 1), ("007", 2)]
    assert set(log.history("007")[0]) == {"a", "c"}
    assert set(log.history("7")[0]) == {"b"}


def test_no_account_date_leaves_the_account_age_unknown(log: SqliteEventLog) -> None:
    rows = Rows()
    log.load([_event("a", 0), _event("b", 1)], {}, write=rows)  # the contract has no account date

    assert rows.last["cust_txn_count_1h"] == 2
    assert math.isnan(rows.last["cust_account_created_ts"])  # the writer leaves it out of a view without it


# Logs as earlier versions wrote them: (tables, the event's insert, the state's insert).
_INTEGER_KEYS = (  # before string ids
    """
    CREATE TABLE customer_events (customer_id INTEGER NOT NULL, transaction_id TEXT NOT NULL,
        time_us INTEGER NOT NULL, amount REAL NOT NULL, PRIMARY KEY (customer_id, transaction_id));
    CREATE TABLE customer_state (customer_id INTEGER PRIMARY KEY, account_created_ts REAL, stamp_us INTEGER);
    """,
    "INSERT INTO customer_events VALUES (1, 'a', ?, 10.0)",
    "INSERT INTO customer_state VALUES (1, 7.0, ?)",
)
_ROWID_EVENTS = (  # before the events table was WITHOUT ROWID
    """
    CREATE TABLE customer_log_events (customer_key TEXT NOT NULL, transaction_id TEXT NOT NULL,
        time_us INTEGER NOT NULL, amount REAL NOT NULL, PRIMARY KEY (customer_key, transaction_id));
    CREATE TABLE customer_log_state (customer_key TEXT PRIMARY KEY, account_created_ts REAL, stamp_us INTEGER);
    """,
    "INSERT INTO customer_log_events VALUES ('1', 'a', ?, 10.0)",
    "INSERT INTO customer_log_state VALUES ('1', 7.0, ?)",
)


_EVENT_ROWS = (  # before one row per customer
    """
    CREATE TABLE customer_log (customer_key TEXT NOT NULL, transaction_id TEXT NOT NULL, time_us INTEGER NOT NULL,
        amount REAL NOT NULL, PRIMARY KEY (customer_key, transaction_id)) WITHOUT ROWID;
    CREATE TABLE customer_log_state (customer_key TEXT PRIMARY KEY, account_created_ts REAL, stamp_us INTEGER);
    """,
    "INSERT INTO customer_log VALUES ('1', 'a', ?, 10.0)",
    "INSERT INTO customer_log_state VALUES ('1', 7.0, ?)",
)


@pytest.mark.parametrize(
    "legacy_log", [_INTEGER_KEYS, _ROWID_EVENTS, _EVENT_ROWS], ids=["integer-keys", "rowid-events", "event-rows"]
)
def test_a_log_of_an_earlier_layout_is_moved_into_one_row_per_customer(
    tmp_path: Path, legacy_log: tuple[str, str, str]
) -> None:
    import sqlite3

    tables_sql, event_sql, state_sql = legacy_log
    path = tmp_path / "customer_events.db"
    with sqlite3.connect(path) as legacy:
        legacy.executescript(tables_sql)
        legacy.execute(event_sql, (T0,))
        legacy.execute(state_sql, (T0,))
    legacy.close()

    rows = Rows()
    SqliteEventLog(path).record(_event("b", 1), account_created_ts=None, write=rows)

    assert rows.last["cust_txn_count_1h"] == 2  # the moved event counts
    assert rows.last["cust_account_created_ts"] == 7.0
    assert rows.written[-1][1] > dt.datetime.fromtimestamp(T0 / 1e6, dt.UTC)  # stamped after the moved stamp
    with sqlite3.connect(path) as moved:
        tables = {name for (name,) in moved.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        customers = moved.execute("SELECT customer_key, transaction_ids FROM customer_history").fetchall()
    moved.close()
    assert tables == {"customer_history"}
    assert customers == [("1", '["a", "b"]')]


def test_events_are_kept_in_time_order_a_late_one_in_its_place(log: SqliteEventLog) -> None:
    rows = Rows()
    for tx, minutes in (("b", 20), ("d", 40), ("c", 30), ("a", 10), ("e", 40)):
        log.record(_event(tx, minutes), account_created_ts=None, write=rows)

    events, _ = log.history(1)

    assert list(events) == ["a", "b", "c", "d", "e"]  # same-instant events in arrival order
    assert [t for t, _ in events.values()] == sorted(t for t, _ in events.values())
    assert rows.last["cust_txn_count_1h"] == 5


def test_rows_of_a_log_written_out_of_time_order_are_sorted_once(tmp_path: Path) -> None:
    import array
    import sqlite3

    path = tmp_path / "customer_events.db"
    SqliteEventLog(path).record(_event("first", 0), account_created_ts=None, write=Rows())
    times = array.array("q", [T0 + 30 * MINUTE, T0, T0 + 10 * MINUTE])  # as the log stored them before
    amounts = array.array("d", [3.0, 1.0, 2.0])
    with sqlite3.connect(path) as earlier:
        earlier.execute(
            "UPDATE customer_history SET transaction_ids = ?, times_us = ?, amounts = ?",
            ('["c", "a", "b"]', times.tobytes(), amounts.tobytes()),
        )
        earlier.execute("PRAGMA user_version = 0")
    earlier.close()

    log, rows = SqliteEventLog(path), Rows()
    log.record(_event("d", 40, 4.0), account_created_ts=None, write=rows)

    assert log.history(1)[0] == {
        "a": (T0, 1.0),
        "b": (T0 + 10 * MINUTE, 2.0),
        "c": (T0 + 30 * MINUTE, 3.0),
        "d": (T0 + 40 * MINUTE, 4.0),
    }
    assert list(log.history(1)[0]) == ["a", "b", "c", "d"]
    assert (rows.last["cust_txn_count_1h"], rows.last["cust_amount_sum_1h"]) == (4, 10.0)
    assert log._connect().execute("PRAGMA user_version").fetchone()[0] == 1


def test_events_past_the_longest_window_stop_counting_and_leave_the_log_in_bulk(log: SqliteEventLog) -> None:
    rows = Rows()
    for n in range(8):
        log.record(_event(f"old{n}", n), account_created_ts=None, write=rows)
    for n in range(8):
        log.record(_event(f"new{n}", 20 * 24 * 60 + n), account_created_ts=None, write=rows)

    # 30 days and a half minute after the first event: "old0" is past the 30-day window, one of 17 events, so it
    # stays in the row (the windows skip it).
    log.record(_event("later", 30 * 24 * 60 + 0.5), account_created_ts=None, write=rows)
    assert "old0" in log.history(1)[0]
    assert rows.last["cust_amount_mean_30d"] == 10.0
    assert (rows.last["cust_txn_count_7d"], rows.last["cust_amount_sum_7d"]) == (1, 10.0)
    # 30 days after the last old event: all eight are out of every window, nearly half the row, and go at once.
    log.record(_event("latest", 30 * 24 * 60 + 7, 40.0), account_created_ts=None, write=rows)
    assert not any(tx.startswith("old") for tx in log.history(1)[0])
    assert len(log.history(1)[0]) == 10
    assert rows.last["cust_amount_mean_30d"] == pytest.approx((9 * 10.0 + 40.0) / 10)


def test_commits_leave_wal_checkpoints_to_the_background_thread(log: SqliteEventLog) -> None:
    import time

    from mlops_recipes.io import customer_events

    rows = Rows()
    log.record(_event("first", 0), account_created_ts=None, write=rows)
    before = log.path.stat().st_size  # the database file proper: commits only append to the WAL beside it
    (pages,) = log._connect().execute("PRAGMA wal_autocheckpoint").fetchone()
    assert pages == customer_events.REQUEST_PATH_CHECKPOINT_PAGES  # no commit pays a checkpoint at SQLite's 1,000

    for n in range(300):
        log.record(_event(f"e{n}", n / 60, customer=n % 50), account_created_ts=None, write=rows)
    # Only a checkpoint copies pages from the WAL into the file: here the checkpointer thread's, within its interval.
    deadline = time.monotonic() + 10 * customer_events.CHECKPOINT_INTERVAL_S
    while log.path.stat().st_size <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.path.stat().st_size > before


@pytest.mark.parametrize("restart", [True, False], ids=["restart-checkpoint", "passive-only"])
def test_a_checkpoint_past_the_bound_lets_the_next_write_start_the_log_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    """Under sustained load a reader is always on an older snapshot: PASSIVE alone never lets the log start again."""
    import sqlite3
    import threading

    from mlops_recipes.io import customer_events

    monkeypatch.setattr(customer_events, "RESTART_AFTER_FRAMES", 8 if restart else 10**9)
    path = tmp_path / "wal.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpoints under test
    writer.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")

    def write(n: int) -> None:
        for k in range(n):
            writer.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (k, bytes(3000)))

    def frames() -> int:
        with contextlib.closing(sqlite3.connect(path)) as probe:  # PASSIVE reports the log's length in frames
            return int(probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])

    write(50)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a lookup's snapshot, older than the frames below
    write(50)
    if restart:  # the lookup ends while the RESTART checkpoint waits for it (else it stays: one always is, under load)
        threading.Timer(0.05, lambda: reader.execute("COMMIT")).start()
    checkpointer = sqlite3.connect(path, timeout=5.0, check_same_thread=False)  # waits for the lookup, however slow

    customer_events._checkpoint(checkpointer)
    before = frames()
    write(1)

    assert before >= 100
    if restart:
        assert frames() <= 2  # the log started again from its beginning
    else:
        assert frames() == before + 1  # it only grows
    for connection in (writer, reader, checkpointer):
        connection.close()


def test_the_checkpointer_forgets_a_removed_file_and_never_recreates_it(tmp_path: Path) -> None:
    import time

    from mlops_recipes.io import customer_events

    project = tmp_path / "removed-project"
    log = SqliteEventLog(project / "customer_events.db")
    log.record(_event("a", 0), account_created_ts=None, write=Rows())
    assert log.path in customer_events._CHECKPOINTS.watched()
    log._connect().close()
    for leftover in project.iterdir():  # the project folder goes, as a test's or a rebuilt store's does
        leftover.unlink()
    project.rmdir()

    deadline = time.monotonic() + 10 * customer_events.CHECKPOINT_INTERVAL_S
    while log.path in customer_events._CHECKPOINTS.watched() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.path not in customer_events._CHECKPOINTS.watched()
    assert not project.exists()  # nothing was created where the file was
    # The thread lives on for the files still there.
    SqliteEventLog(tmp_path / "other.db").record(_event("b", 0), account_created_ts=None, write=Rows())
    assert any(t.name == "sqlite-wal-checkpoint" and t.is_alive() for t in customer_events.threading.enumerate())
