"""Fresh online features: every scored transaction updates its customer's row, as the training rows assume.

On a project of its own (the tests write to its online store): the store is rewound to a time T, the later
transactions are replayed in time order through the real service (two workers) and compared with the champion
scoring the same transactions offline on the dataset stage's point-in-time rows. Then, on the same service:
concurrent transactions of one customer, client retries, late events, an update that cannot be written, and a
rebuild of the store that must not take rows back in time.

The same replay runs on the scaled profile (Redis) in test_scaled_profile.py.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest

# A trained project copy of its own (its stores get rewound and updated) and a replay through the service.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPLAY_HOURS = 48
NEW_CUSTOMER = 4_000_000  # ids far above the generated ones: customers the store has never seen


def _settings(project: Any) -> Any:
    from mlops_recipes.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        # Only the project's own stores: earlier tests leave MLFLOW_TRACKING_URI & co. in this process's environment.
        for name in [n for n in os.environ if n.startswith(("MLFLOW_", "MLOPS_", "FEAST_"))]:
            env.delenv(name)
        for name, value in project.env.items():
            if name.startswith(("MLFLOW_", "MLOPS_", "FEAST_")):
                env.setenv(name, value)
        return Settings(project_root=project.root)


@pytest.fixture(scope="module")
def fresh_project(trained_copy: Callable[[str], Any]) -> Any:
    return trained_copy("fresh")


@pytest.fixture(scope="module")
def events(fresh_project: Any) -> pd.DataFrame:
    return pd.read_parquet(fresh_project.root / "data" / "validated" / "transactions.parquet")


@pytest.fixture(scope="module")
def cut(events: pd.DataFrame) -> pd.Timestamp:
    return events["event_timestamp"].max() - pd.Timedelta(hours=REPLAY_HOURS)


@pytest.fixture(scope="module")
def rewound(fresh_project: Any, events: pd.DataFrame, cut: pd.Timestamp) -> dict[str, Any]:
    """The online store as it was at the cut (before any service of this module starts)."""
    from mlops_recipes.monitoring.replay import rewind_online_store

    summary: dict[str, Any] = rewind_online_store(_settings(fresh_project), events, cut)
    return summary


@pytest.fixture(scope="module")
def service(fresh_project: Any, rewound: dict[str, Any], start_module_service: Any) -> Any:
    """Two workers sharing the online store and the customer event log."""
    started = start_module_service(fresh_project, workers=2)
    started.wait_ready(timeout=180)
    return started


@pytest.fixture(scope="module")
def champion(fresh_project: Any) -> Any:
    from mlops_recipes.io.models import load_alias

    return load_alias(_settings(fresh_project), "champion")


@pytest.fixture(scope="module")
def store(fresh_project: Any, service: Any) -> Any:
    from mlops_recipes.io.feature_store import open_store

    return open_store(_settings(fresh_project))


def _online_row(store: Any, customer: int) -> dict[str, Any]:
    from mlops_recipes.io.feature_store import online_features
    from mlops_recipes.views.customer_stats import VIEW

    values = online_features(store, [{"customer_id": customer, "merchant_id": 1}], "fraud_model_v1")
    return {name: values[name][0] for name in VIEW.names}


def _transaction(tx: str, customer: int, when: dt.datetime, amount: float = 20.0) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "customer_id": customer,
        "merchant_id": 1,
        "amount": amount,
        "channel": "online",
        "event_timestamp": when.isoformat(),
    }


def _at_once(service: Any, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """POST every body to ``/predict`` at once: all connections open, every request sent but its body's last byte,
    then those last bytes back to back, then the answers read.

    The service reads a body before it scores it, so no request can be scored before all are in (sent whole one
    after another, a loaded machine's service scored each as it came, before the next had arrived).
    """
    url = httpx.URL(service.url)
    connections = [http.client.HTTPConnection(url.host, url.port, timeout=30) for _ in bodies]
    payloads = [json.dumps(body).encode() for body in bodies]
    try:
        for connection in connections:
            connection.connect()
        for connection, payload in zip(connections, payloads, strict=True):
            connection.putrequest("POST", "/predict")
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(payload)))
            connection.endheaders(payload[:-1])
        for connection, payload in zip(connections, payloads, strict=True):
            connection.send(payload[-1:])
        answers = []
        for connection in connections:
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
        return answers
    finally:
        for connection in connections:
            connection.close()


@pytest.fixture
def client(service: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10) as http:
        yield http


def test_replayed_scores_equal_the_offline_point_in_time_scores(
    fresh_project: Any, service: Any, events: pd.DataFrame, cut: pd.Timestamp, champion: Any
) -> None:
    from mlops_recipes.monitoring.replay import compare, daily_batch, offline_reference, replay

    settings = _settings(fresh_project)
    later = events[events["event_timestamp"] > cut]

    contract = settings.contract()
    fields = [*contract.categorical, *contract.numeric]
    served = replay(service.url, later, since=cut, fields=fields, on_new_day=daily_batch(settings))
    offline = offline_reference(settings, later, champion)
    report = compare(served, offline, threshold=0.5)  # SERVING_THRESHOLD's default

    assert report.rows == len(later) > 300
    assert report.equal_share >= 0.999, report
    # Live quality follows: the decisions the service returned catch what the offline scores catch.
    assert int(later["is_fraud"].sum()) >= 5, "too few frauds in the replay to compare recall"
    assert abs(report.recall_served - report.recall_offline) <= 0.03, report
    # The replay is what training assumed: the same transactions, the same features, not a stale snapshot.
    assert report.recall_offline > 0.3, report


def test_concurrent_transactions_of_one_customer_are_all_counted(
    client: httpx.Client, service: Any, store: Any, scrape: Any
) -> None:
    customer, start = NEW_CUSTOMER + 1, dt.datetime.now(dt.UTC).replace(microsecond=0)
    bodies = [_transaction(f"burst-{i}", customer, start + dt.timedelta(milliseconds=i), 1.0 + i) for i in range(40)]
    before = scrape(service).value("customer_feature_updates_total", outcome="counted")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: httpx.post(service.url + "/predict", json=body, timeout=10), bodies))

    assert [a.status_code for a in answers] == [200] * 40, [a.text for a in answers if a.status_code != 200]
    row = _online_row(store, customer)
    # Both workers wrote this customer's row; every transaction is in it, none lost to a concurrent update.
    assert row["cust_txn_count_1h"] == 40
    assert row["cust_amount_sum_1h"] == pytest.approx(sum(1.0 + i for i in range(40)))
    assert row["cust_last_txn_ts"] == pytest.approx((start + dt.timedelta(milliseconds=39)).timestamp())
    assert scrape(service).value("customer_feature_updates_total", outcome="counted") - before == 40


def test_concurrent_requests_are_scored_together_each_on_its_own_features(
    client: httpx.Client, service: Any, events: pd.DataFrame, scrape: Any
) -> None:
    customers = [int(c) for c in sorted(events["customer_id"].unique())[:48]]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    bodies = [_transaction(f"together-{c}", c, now, 10.0 + i) for i, c in enumerate(customers)]
    before = scrape(service)

    answers = _at_once(service, bodies)

    after = scrape(service)
    assert [status for status, _ in answers] == [200] * len(bodies), answers
    calls = after.value("scoring_batch_requests_count") - before.value("scoring_batch_requests_count")
    scored = after.value("scoring_batch_requests_sum") - before.value("scoring_batch_requests_sum")
    assert scored == len(bodies)
    # Requests that arrive while a call runs wait for the next one, which takes them all: 48 requests at once on
    # two workers are a handful of calls.
    assert calls < scored / 2
    # Each answer is its own transaction's: sent again one at a time (a retry, scored on the features as of just
    # before it, from the log), every transaction gets the score it got inside a combined call.
    for body, (_, answer) in zip(bodies, answers, strict=True):
        assert answer["transaction_id"] == body["transaction_id"]
        again = client.post("/predict", json=body)
        assert again.json()["fraud_probability"] == pytest.approx(answer["fraud_probability"], rel=1e-9)


def test_a_retried_transaction_is_counted_once(client: httpx.Client, service: Any, store: Any, scrape: Any) -> None:
    customer, now = NEW_CUSTOMER + 2, dt.datetime.now(dt.UTC)
    before = scrape(service).value("customer_feature_updates_total", outcome="duplicate")

    first = client.post("/predict", json=_transaction("retry-1", customer, now))
    again = client.post("/predict", json=_transaction("retry-1", customer, now))

    assert (first.status_code, again.status_code) == (200, 200)
    assert _online_row(store, customer)["cust_txn_count_24h"] == 1
    # Scored again on the features as of just before it (the log knows), not on a row that already counts it.
    assert again.json()["fraud_probability"] == pytest.approx(first.json()["fraud_probability"], rel=1e-9)
    assert scrape(service).value("customer_feature_updates_total", outcome="duplicate") - before == 1


def test_the_next_transaction_sees_the_previous_one(client: httpx.Client, store: Any) -> None:
    customer, now = NEW_CUSTOMER + 3, dt.datetime.now(dt.UTC)

    first = client.post("/predict", json=_transaction("seq-1", customer, now - dt.timedelta(minutes=5), 50.0))
    second = client.post("/predict", json=_transaction("seq-2", customer, now, 50.0))

    # A brand-new customer: the first transaction finds nothing, the second finds the first.
    assert "cust_txn_count_1h" in first.json()["missing_features"]
    assert [name for name in second.json()["missing_features"] if name.startswith("cust_")] == []
    assert _online_row(store, customer)["cust_txn_count_1h"] == 2


def test_same_instant_transactions_are_scored_on_the_state_before_that_instant(
    client: httpx.Client, store: Any
) -> None:
    customer, now = NEW_CUSTOMER + 6, dt.datetime.now(dt.UTC).replace(microsecond=0)
    client.post("/predict", json=_transaction("instant-0", customer, now - dt.timedelta(minutes=10), 80.0))

    first = client.post("/predict", json=_transaction("instant-1", customer, now, 15.0)).json()
    second = client.post("/predict", json=_transaction("instant-2", customer, now, 15.0)).json()

    # As in training (features as of one microsecond before the event), neither sees the other ...
    assert second["fraud_probability"] == pytest.approx(first["fraud_probability"], rel=1e-9)
    # ... and afterwards both are counted.
    assert _online_row(store, customer)["cust_txn_count_1h"] == 3


def test_late_events_count_in_their_windows_without_moving_time_back(client: httpx.Client, store: Any) -> None:
    customer, now = NEW_CUSTOMER + 4, dt.datetime.now(dt.UTC).replace(microsecond=0)
    client.post("/predict", json=_transaction("late-newest", customer, now, 10.0))

    late = client.post("/predict", json=_transaction("late-1", customer, now - dt.timedelta(minutes=30), 5.0))
    ancient = client.post("/predict", json=_transaction("late-2", customer, now - dt.timedelta(days=31), 7.0))

    # Late within the accepted event-time window (SERVING_MAX_EVENT_AGE_S, 30 d): counted where it belongs.
    # Older than that: refused (422), so it can no longer count anywhere.
    assert (late.status_code, ancient.status_code) == (200, 422), ancient.text
    assert "event_timestamp" in ancient.text
    row = _online_row(store, customer)
    assert row["cust_last_txn_ts"] == pytest.approx(now.timestamp())
    assert (row["cust_txn_count_1h"], row["cust_amount_sum_1h"]) == (2, pytest.approx(15.0))
    assert row["cust_txn_count_7d"] == 2
    assert row["cust_amount_mean_30d"] == pytest.approx(7.5)


def test_an_update_that_cannot_be_written_still_answers_and_is_counted(
    fresh_project: Any, client: httpx.Client, service: Any, store: Any, scrape: Any
) -> None:
    customer, now = NEW_CUSTOMER + 5, dt.datetime.now(dt.UTC)
    client.post("/predict", json=_transaction("down-0", customer, now - dt.timedelta(minutes=1)))
    before = scrape(service).value("customer_feature_updates_total", outcome="failed")

    # Another writer holds the event log (a stuck process, a store that is down): the update cannot happen.
    holder = sqlite3.connect(fresh_project.root / "data" / "feast" / "customer_events.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answer = client.post("/predict", json=_transaction("down-1", customer, now))
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert answer.status_code == 200, answer.text
    assert 0.0 <= answer.json()["fraud_probability"] <= 1.0
    assert scrape(service).value("customer_feature_updates_total", outcome="failed") - before == 1
    assert "customer features not updated after scoring" in service.logs()
    # Nothing half-written: the row is still the one after down-0 ...
    assert _online_row(store, customer)["cust_txn_count_1h"] == 1
    # ... and the client's retry, once the store is back, counts the transaction.
    assert client.post("/predict", json=_transaction("down-1", customer, now)).status_code == 200
    assert _online_row(store, customer)["cust_txn_count_1h"] == 2


def test_rebuilding_the_store_from_batch_data_never_takes_a_row_back(
    fresh_project: Any, client: httpx.Client, store: Any, events: pd.DataFrame
) -> None:
    from mlops_recipes.stages import materialize

    known = int(events.sort_values("event_timestamp")["customer_id"].iloc[-1])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert client.post("/predict", json=_transaction("after-batch", known, now, 33.0)).status_code == 200
    pushed = _online_row(store, known)
    assert pushed["cust_last_txn_ts"] == pytest.approx(now.timestamp())

    # The batch paths: incremental materialization (the hourly flow), then the whole features stage.
    summary = materialize.run(_settings(fresh_project))
    assert "customer_stats" not in summary["freshness"]
    assert _online_row(store, known) == pushed
    fresh_project.run("mlops", "features")
    rebuilt = _online_row(store, known)

    # The batch data ends before `now`: the rebuilt row still counts the transaction scored online.
    assert rebuilt["cust_last_txn_ts"] == pytest.approx(now.timestamp())
    # (Longer windows may gain batch events the store had not seen, if the replay before did not run.)
    assert rebuilt["cust_txn_count_1h"] == pushed["cust_txn_count_1h"]
    assert rebuilt["cust_amount_sum_7d"] >= pushed["cust_amount_sum_7d"] - 1e-9


def test_the_one_statement_sqlite_write_stores_exactly_what_feasts_writer_stores(store: Any) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.sqlite import _table_id
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from mlops_recipes.io.feature_store import OnlineRowWriter
    from mlops_recipes.views.customer_stats import VIEW

    ours, feasts = (
        OnlineRowWriter(store, "customer_stats"),
        OnlineRowWriter(store, "customer_stats", one_statement=False),
    )
    assert ours._sqlite is not None  # the embedded profile takes the one-statement path
    assert feasts._sqlite is None
    config = store.config
    table = _table_id(config.project, store.get_feature_view("customer_stats"))
    database = config.repo_path / config.online_store.path

    def stored(customer: int) -> list[tuple[Any, ...]]:
        key = serialize_entity_key(
            EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=customer)]),
            entity_key_serialization_version=config.entity_key_serialization_version,
        )
        with sqlite3.connect(database) as connection:
            return connection.execute(
                f'SELECT * FROM "{table}" WHERE entity_key = ? ORDER BY feature_name',  # noqa: S608 - Feast's table
                (key,),
            ).fetchall()

    def row(n: int) -> dict[str, float]:
        return {name: float(n + i) / 3 if "count" not in name else n + i for i, name in enumerate(VIEW.names)}

    # A row replaced: Feast's writer first, then ours, then Feast's again with the same values.
    customer = NEW_CUSTOMER + 77
    first = dt.datetime(2026, 11, 30, 12, 0, 5, 123456, tzinfo=dt.UTC)
    feasts([(customer, first, row(1))])
    before = stored(customer)
    ours([(customer, first + dt.timedelta(minutes=1), row(2))])
    written_by_us = stored(customer)
    feasts([(customer, first + dt.timedelta(minutes=1), row(2))])

    assert database.is_file()
    assert len(written_by_us) == len(before) == len(VIEW.names)
    assert written_by_us != before  # the upsert replaced the row
    assert written_by_us == stored(customer)  # byte for byte: keys, protos, value text, event and created times
    assert _online_row(store, customer)["cust_txn_count_1h"] == 2 + VIEW.names.index("cust_txn_count_1h")

    # New entities, more than one statement holds (a rebuild's thousands, here three to a statement of two):
    # ours inserts what Feast's writer inserts for the same rows.
    assert ours._sqlite.entities_per_statement > 1_000  # within SQLite's smallest limit of bound values
    ours._sqlite.entities_per_statement = 2
    ours_new, feasts_new = [NEW_CUSTOMER + 100 + n for n in range(3)], [NEW_CUSTOMER + 200 + n for n in range(3)]
    ours([(c, first, row(n)) for n, c in enumerate(ours_new)])
    feasts([(c, first, row(n)) for n, c in enumerate(feasts_new)])

    for mine, theirs in zip(ours_new, feasts_new, strict=True):
        assert [r[1:] for r in stored(mine)] == [r[1:] for r in stored(theirs)]  # all but the key
        assert len(stored(mine)) == len(VIEW.names)
    # Inserted entity by entity, as Feast's writer does: one entity's rows are neighbours in the table, so a
    # lookup or an update of one customer touches a page or two, not one page per feature.
    with sqlite3.connect(database) as connection:
        order = [key for (key,) in connection.execute(f'SELECT entity_key FROM "{table}" ORDER BY rowid')]  # noqa: S608
    connection.close()
    runs = [key for n, key in enumerate(order) if n == 0 or key != order[n - 1]]
    assert len(runs) == len(set(order))  # each entity's rows in one run
