"""Stream scoring (issue 16): ``python -m serving.stream`` processes on a real Redis, with the trained champion.

Two copies of the trained project in the same state: the stream scorer works on one, a ``/predict`` service (with
its per-transaction customer updates) on the other. The same transactions, in the same order, give the same
decisions. Then, on the stream copy: poison messages to the dead letters, a scorer killed with ``kill -9``
mid-batch while another shares the stream (its messages claimed, nothing lost, nothing decided or counted twice),
a hot swap mid-stream, the dashboard's stream queries, Redis killed and restarted empty, and SIGTERM → exit 0.

Cost: one project copy each (a few seconds), one service and two scorer processes (each ~5-10 s to start on an idle
machine, as the service: imports, model load, store warm-up); the streams are a few hundred messages.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL = "fraud-detector"
CLAIM_IDLE_MS = 1500


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, details: Callable[[], object] = str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{details()}")
        time.sleep(0.05)


class Scorer:
    """``python -m serving.stream`` in a project folder, as a user starts it, with its own /metrics port.

    ``cli_from``: start it as ``mlops stream`` from that folder instead (the project named by MLOPS_PROJECT_ROOT).
    """

    def __init__(self, project: Any, env: dict[str, str], consumer: str, *, cli_from: Path | None = None) -> None:
        self.consumer = consumer
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = project.root / f"scorer-{consumer}.log"
        self._log = self.log_path.open("wb")
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "serving.stream", "--consumer", consumer, "--metrics-port", port]
        if cli_from is not None:  # `mlops stream` takes no arguments: the same settings from the environment
            command = [str(Path(sys.executable).parent / "mlops"), "stream"]
            env = {**env, "STREAM_CONSUMER": consumer, "STREAM_METRICS_PORT": port}
        clean = {k: v for k, v in project.env.items() if not k.upper().startswith("PROMETHEUS_")}
        self.process = subprocess.Popen(
            command, cwd=cli_from or project.root, env={**clean, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until its /metrics says a model is loaded (then it reads the stream)."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"scorer exited with {self.process.returncode}:\n{self.logs()}")
            try:
                text = httpx.get(self.url + "/metrics", timeout=1).text
            except httpx.TransportError:
                return False
            return any(line.startswith("model_info{") and line.endswith(" 1.0") for line in text.splitlines())

        _wait_for(ready, timeout, f"scorer {self.consumer} with a model", self.logs)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


class Streams:
    """The stream names of one test module (unique: the session's Redis is shared) and reads of them."""

    def __init__(self, client: Any) -> None:
        prefix = f"it-{uuid.uuid4().hex[:8]}"
        self.client = client
        self.input, self.output, self.dead = f"{prefix}:tx", f"{prefix}:decisions", f"{prefix}:dead"
        self.group = "scorers"
        self.env = {
            "STREAM_INPUT": self.input,
            "STREAM_OUTPUT": self.output,
            "STREAM_DEAD_LETTERS": self.dead,
            "STREAM_GROUP": self.group,
            "STREAM_DECIDED_PREFIX": f"{prefix}:decided",
            "STREAM_BATCH_SIZE": "16",
            "STREAM_BLOCK_MS": "200",
            "STREAM_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
            "STREAM_LAG_INTERVAL_S": "0.5",
            "SERVING_POLL_INTERVAL_S": "0.5",
        }

    def publish(self, bodies: list[dict[str, Any]]) -> list[str]:
        from mlops_recipes.monitoring.traffic import publish

        return publish(self.client, self.input, bodies)

    def publish_raw(self, fields: dict[str, str]) -> str:
        return str(self.client.xadd(self.input, fields).decode())

    def decisions(self) -> list[dict[str, Any]]:
        from mlops_recipes.core.stream import read_decision

        return [read_decision(fields) for _, fields in self.client.xrange(self.output)]

    def dead_letters(self) -> list[dict[str, str]]:
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in self.client.xrange(self.dead)]

    def pending(self, consumer: str | None = None) -> int:
        summary = self.client.xpending(self.input, self.group)
        if consumer is None:
            return int(summary["pending"])
        return sum(int(c["pending"]) for c in summary["consumers"] if c["name"].decode() == consumer)


def _copy(trained_project: Any, root: Path) -> Any:
    shutil.copytree(trained_project.root, root, ignore=shutil.ignore_patterns("service-*.log", "scorer-*.log"))
    return type(trained_project)(root)


@pytest.fixture(scope="module")
def copies(trained_project: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(stream copy, /predict copy) of the trained project, in the same state."""
    base = tmp_path_factory.mktemp("streaming")
    return _copy(trained_project, base / "stream"), _copy(trained_project, base / "predict")


@pytest.fixture(scope="module")
def streams(redis_server: Any) -> Streams:
    return Streams(redis_server.client())


@pytest.fixture(scope="module")
def scorers(copies: tuple[Any, Any], streams: Streams, redis_server: Any) -> Iterator[Callable[[str], Scorer]]:
    started: list[Scorer] = []

    def start(consumer: str) -> Scorer:
        env = {**streams.env, "STREAM_REDIS_URL": redis_server.url}
        started.append(Scorer(copies[0], env, consumer))
        return started[-1]

    yield start
    for scorer in started:
        scorer.stop()


@pytest.fixture(scope="module")
def scorer(scorers: Callable[[str], Scorer]) -> Scorer:
    started = scorers("a")
    started.wait_ready()
    return started


@pytest.fixture(scope="module")
def bodies(copies: tuple[Any, Any]) -> list[dict[str, Any]]:
    """Recent transactions of the project re-timed to today: known customers, several transactions each."""
    from mlops_recipes.monitoring.traffic import live_transactions, recent_transactions
    from mlops_recipes.params import DriftParams
    from mlops_recipes.settings import Settings

    settings = Settings(project_root=copies[0].root)
    contract = settings.contract()
    recent = recent_transactions(settings, contract, days=1)
    recent = recent[recent["customer_id"].isin(recent["customer_id"].drop_duplicates().head(12))]
    rows = live_transactions(recent, DriftParams(), contract, rows=60, seed=16, id_prefix="stream")
    return [{k: v for k, v in row.items() if k != "is_fraud"} for row in rows]


def test_stream_decisions_equal_predict_for_the_same_transactions(
    copies: tuple[Any, Any], streams: Streams, scorer: Scorer, bodies: list[dict[str, Any]], start_module_service: Any
) -> None:
    service = start_module_service(copies[1])
    streams.publish(bodies)
    service.wait_ready()
    with httpx.Client(base_url=service.url, timeout=10) as http:
        expected = []
        for body in bodies:  # one at a time, in stream order: each sees the updates of all earlier ones
            response = http.post("/predict", json=body)
            assert response.status_code == 200, response.text
            expected.append(response.json())
    _wait_for(lambda: len(streams.decisions()) >= len(bodies), 60, "every decision", scorer.logs)

    decisions = streams.decisions()
    assert [d["transaction_id"] for d in decisions] == [b["transaction_id"] for b in bodies]
    fields = ["fraud_probability", "is_fraud", "threshold", "model_name", "model_version", "missing_features"]
    for decision, answer in zip(decisions, expected, strict=True):
        assert {f: decision[f] for f in fields} == {f: answer[f] for f in fields}, decision["transaction_id"]
        assert decision["latency_s"] == pytest.approx(decision["decided_at"] - decision["event_time"])
    assert len({d["source_id"] for d in decisions}) == len(bodies)
    assert streams.pending() == 0
    # The customers' histories moved on in both copies alike: several transactions of the same customers, and the
    # later ones' missing features and scores already matched (a batch scored on the state before the batch would not).
    assert len({b["customer_id"] for b in bodies}) < len(bodies)


def test_poison_messages_go_to_the_dead_letters_with_the_error(
    streams: Streams, scorer: Scorer, bodies: list[dict[str, Any]], scrape: Any
) -> None:
    valid = {**bodies[0], "transaction_id": "poison-neighbour"}
    sources = [
        streams.publish_raw({"transaction": "{not json"}),
        streams.publish_raw({"payload": "{}"}),
        streams.publish_raw({"transaction": '{"customer_id": 1, "merchant_id": 1, "amount": -5}'}),
        streams.publish_raw({"transaction": '{"customer_id": 1, "merchant_id": 1, "amount": 5, "channel": "pos"}'}),
        *streams.publish([valid]),
    ]
    _wait_for(lambda: len(streams.dead_letters()) >= 4, 30, "four dead letters", scorer.logs)

    letters = {letter["source_id"]: letter for letter in streams.dead_letters()}
    assert set(letters) == set(sources[:4])
    assert "not JSON" in letters[sources[0]]["error"]
    assert "no 'transaction' field" in letters[sources[1]]["error"]
    assert "amount" in letters[sources[2]]["error"]
    assert "channel" in letters[sources[2]]["error"]
    assert "transaction_id" in letters[sources[3]]["error"]
    assert letters[sources[0]]["transaction"] == "{not json"  # the message itself is kept
    assert {letter["reason"] for letter in letters.values()} == {"schema"}
    assert {letter["deliveries"] for letter in letters.values()} == {"1"}
    _wait_for(lambda: "poison-neighbour" in {d["transaction_id"] for d in streams.decisions()}, 30, "the valid one")
    _wait_for(lambda: streams.pending() == 0, 10, "everything acknowledged")  # not retried
    assert scrape(scorer).value("stream_dead_letters_total", reason="schema") == 4


def test_kill_9_mid_batch_loses_nothing_and_counts_nothing_twice(
    copies: tuple[Any, Any], streams: Streams, scorer: Scorer, scorers: Callable[[str], Scorer], scrape: Any
) -> None:
    from mlops_recipes.io.customer_events import open_event_log
    from mlops_recipes.io.feature_store import open_store
    from mlops_recipes.settings import Settings

    victim = scorers("victim")
    victim.wait_ready()
    customers = [1 + i % 25 for i in range(600)]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    bodies = [
        {"transaction_id": f"kill-{i}", "customer_id": c, "merchant_id": 1 + i % 9, "amount": 3.0 + i % 50,
         "channel": "pos", "event_timestamp": now}
        for i, c in enumerate(customers)
    ]  # fmt: skip
    streams.publish(bodies)

    def victim_mid_batch() -> bool:  # it has decided some (the two share the stream) and holds a batch now
        decided = any(d["consumer"] == victim.consumer for d in streams.decisions()[-200:])
        return decided and streams.pending(victim.consumer) > 0

    _wait_for(victim_mid_batch, 60, "the victim holding a batch", victim.logs)
    victim.process.kill()  # SIGKILL: no handler, no acknowledgement
    victim.process.wait(10)
    held = streams.pending(victim.consumer)

    _wait_for(lambda: streams.pending() == 0 and len(_ids(streams, "kill-")) >= len(bodies), 90, "all decided")
    ids = _ids(streams, "kill-")
    assert sorted(ids) == sorted(b["transaction_id"] for b in bodies)  # nothing lost, one decision each
    by_consumer = {d["consumer"] for d in streams.decisions() if d["transaction_id"].startswith("kill-")}
    assert by_consumer == {"a", "victim"}  # both shared the stream before the kill
    if held:  # almost always: the victim is killed while it scores a batch
        assert scrape(scorer).value("stream_redeliveries_total") >= held

    # Each customer's history holds each transaction once, whatever was scored or recorded before the kill.
    log = open_event_log(open_store(Settings(project_root=copies[0].root)))
    for customer in set(customers):
        history, _ = log.history(customer)
        assert {tx for tx in history if tx.startswith("kill-")} == {
            b["transaction_id"] for b in bodies if b["customer_id"] == customer
        }


def _ids(streams: Streams, prefix: str) -> list[str]:
    return [d["transaction_id"] for d in streams.decisions() if d["transaction_id"].startswith(prefix)]


def test_hot_swap_mid_stream_loses_no_message(
    copies: tuple[Any, Any], streams: Streams, scorer: Scorer, bodies: list[dict[str, Any]]
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{copies[0].root / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    old = registry.get_model_version_by_alias(MODEL, "champion")
    old_version = str(old.version)
    first = [{**b, "transaction_id": f"swap-{i}"} for i, b in enumerate(bodies[:30])]
    streams.publish(first)
    source = str(registry.get_model_version_download_uri(MODEL, old.version))
    new = registry.create_model_version(MODEL, source=source, run_id=old.run_id, tags=old.tags)
    registry.set_registered_model_alias(MODEL, "champion", new.version)
    new_version = str(new.version)  # the decisions carry versions as strings, as /predict
    sent = list(first)
    deadline = time.monotonic() + 90
    while new_version not in {d["model_version"] for d in streams.decisions()}:  # keep the stream flowing meanwhile
        assert time.monotonic() < deadline, scorer.logs()[-3000:]
        more = [{**b, "transaction_id": f"swap-{len(sent) + i}"} for i, b in enumerate(bodies[:5])]
        streams.publish(more)
        sent += more
        time.sleep(0.2)
    _wait_for(lambda: len(_ids(streams, "swap-")) >= len(sent), 60, "every decision after the swap", scorer.logs)

    swapped = [d for d in streams.decisions() if d["transaction_id"].startswith("swap-")]
    assert sorted(d["transaction_id"] for d in swapped) == sorted(b["transaction_id"] for b in sent)
    versions = [d["model_version"] for d in swapped]  # in stream order: the old version, then only the new one
    assert versions[0] == old_version
    assert versions[-1] == new_version
    assert versions == sorted(versions, key=lambda v: v == new_version)


def test_stream_dashboard_queries_and_rules_return_data(
    streams: Streams, scorer: Scorer, bodies: list[dict[str, Any]], start_prometheus: Any
) -> None:
    import yaml
    from support.dashboards import MONITORING, dashboard_queries, is_stream_query

    rules = MONITORING / "prometheus" / "rules" / "stream.yml"
    recorded = [r["record"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if "record" in r]
    prometheus = start_prometheus([rules], scorer.url.removeprefix("http://"), job="fraud-stream")
    pending = [(t, e) for t, e in dashboard_queries() if is_stream_query(e)] + [(r, r) for r in recorded]
    assert len(pending) >= 8
    deadline, round_ = time.monotonic() + 60, 0
    while pending and time.monotonic() < deadline:
        round_ += 1
        streams.publish([{**b, "transaction_id": f"dash-{round_}-{i}"} for i, b in enumerate(bodies[:5])])
        # A poison message a round: the dead-letter panel needs its own data when this test runs alone (-m tools).
        streams.publish_raw({"transaction": "{not json"})
        time.sleep(1)
        still = []
        for title, expr in pending:
            response = prometheus.query(expr)
            if response is None or not response["data"]["result"]:
                still.append((title, expr))
            else:
                assert response["status"] == "success", (title, expr, response)
        pending = still
    assert not pending, f"queries without data after 60 s: {pending}"


def test_redis_down_the_scorer_waits_and_resumes_by_itself(
    streams: Streams, scorer: Scorer, bodies: list[dict[str, Any]], redis_server: Any, scrape: Any
) -> None:
    errors_before = scrape(scorer).value("stream_redis_errors_total")
    redis_server.kill()  # a crash: the restarted server is empty (no persistence), the group is gone too
    try:
        _wait_for(lambda: scrape(scorer).value("stream_redis_errors_total") > errors_before, 30, "errors counted")
        assert scorer.process.poll() is None, scorer.logs()[-3000:]
    finally:
        redis_server.start()
    after = [{**b, "transaction_id": f"after-restart-{i}"} for i, b in enumerate(bodies[:5])]
    streams.publish(after)
    decided = lambda: len(_ids(streams, "after-restart-")) == len(after)  # noqa: E731
    _wait_for(decided, 90, "decisions after the restart", scorer.logs)
    assert "creating it" in scorer.logs()  # the group re-created on the empty server


def test_sigterm_finishes_and_exits_0(streams: Streams, scorer: Scorer) -> None:
    assert scorer.stop() == 0, scorer.logs()[-3000:]
    assert streams.pending() == 0
    assert "stream scorer stopped" in scorer.logs()


def test_mlops_stream_runs_the_projects_scorer_from_any_directory(
    copies: tuple[Any, Any], redis_server: Any, tmp_path: Path
) -> None:
    # The shells are not installed (the wheel is the library only): `mlops stream` finds the project's
    # serving.stream through MLOPS_PROJECT_ROOT, not through the directory it is started from.
    own = Streams(redis_server.client())  # streams of its own: the module's group is left as the tests left it
    scorer = Scorer(copies[0], {**own.env, "STREAM_REDIS_URL": redis_server.url}, "cli", cli_from=tmp_path)
    try:
        scorer.wait_ready()
        body = {"transaction_id": "via-cli", "customer_id": 1, "merchant_id": 1, "amount": 5.0, "channel": "pos"}
        own.publish([body])
        decided = lambda: [d["transaction_id"] for d in own.decisions()] == ["via-cli"]  # noqa: E731
        _wait_for(decided, 30, "its decision", scorer.logs)
    finally:
        code = scorer.stop()
    assert code == 0, scorer.logs()[-3000:]
