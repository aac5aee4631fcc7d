"""Controlled rollouts in the running service: shadow, sticky canary, promote and abort under load, and the plan
flow deciding against a real Prometheus (issue 15).

Each test works on a copy of the trained project (rollouts move the ``champion`` alias). The candidate is the
champion's artifact registered again as a new version: it scores like the champion, so any difference the tests
see comes from the routing. A bad candidate is the same one with its model call failing (``fault_apps``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.predict_load import PredictLoad

pytestmark = pytest.mark.integration

MODEL = "fraud-detector"
MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
ROLLOUT_RULES = MONITORING / "prometheus" / "rules" / "rollout.yml"
# Read-only scoring (the same transaction scores the same each time), a fast watcher.
ENV = {"SERVING_POLL_INTERVAL_S": "0.3", "SERVING_UPDATE_CUSTOMER_FEATURES": "false", "SERVING_MAX_BATCH": "64"}
ERRORS = 'sum(rate(rollout_scored_rows_total{variant="candidate",outcome="error"}[15s]))'
EVENT_TIME = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()


@pytest.fixture
def project(trained_project: Any, tmp_path: Path) -> Any:
    """A copy of the trained project; its registry points at the original's model artifacts (only read)."""
    root = tmp_path / "project"
    shutil.copytree(trained_project.root, root, ignore=shutil.ignore_patterns("service-*.log"))
    return type(trained_project)(root)


def candidate_version(project: Any) -> str:
    """The champion's model registered again: a new version that scores exactly like the champion."""
    client = project.mlflow_client()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    source = client.get_model_version_download_uri(MODEL, champion.version)
    return str(client.create_model_version(MODEL, source=source, run_id=champion.run_id, tags=champion.tags).version)


def transaction(customer: int, n: int) -> dict[str, Any]:
    return {
        "transaction_id": f"t-{customer}-{n}",
        "customer_id": customer,
        "merchant_id": 1 + n % 40,
        "amount": 12.5 + n,
        "channel": "pos",
        "event_timestamp": EVENT_TIME,
    }


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, details: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{details()}")
        time.sleep(0.2)


@pytest.fixture
def operator(project: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``operator("start", …)``: ``mlops rollout …`` in the project, in-process; its JSON output (or stderr)."""
    from mlops_recipes.cli import main

    monkeypatch.setenv("MLOPS_PROJECT_ROOT", str(project.root))

    def run(*args: str, expect: int = 0) -> Any:
        capsys.readouterr()
        code = main(["rollout", *args])
        out, err = capsys.readouterr()
        assert code == expect, err
        return json.loads(out) if code == 0 else err

    return run


def following(scrape: Any, service: Any, percent: float, *, workers: int = 1) -> Callable[[], bool]:
    """Whether each of the service's workers routes to the candidate at ``percent`` (0: no rollout)."""

    def check() -> bool:
        shares = [v for name, _, v in scrape(service).samples if name == "rollout_candidate_percent"]
        return len(shares) == workers and all(share == percent for share in shares)

    return check


def test_shadow_never_changes_a_response_and_a_failing_candidate_only_shows_in_metrics(
    project: Any, start_isolated_service: Any, scrape: Any, operator: Any, tmp_path: Path
) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    service = start_isolated_service(project, module="fault_apps", env={**ENV, "FAULT_DIR": str(faults)})
    service.wait_ready()
    version = candidate_version(project)
    requests = [("/predict", transaction(c, 0)) for c in range(1, 41)] + [
        ("/predict/batch", {"transactions": [transaction(c, n) for c in range(1, 300, 7)]}) for n in range(1, 4)
    ]

    def responses(http: httpx.Client) -> list[bytes]:
        out = []
        for path, body in requests:
            response = http.post(path, json=body)
            assert response.status_code == 200, response.text
            out.append(response.content)
        return out

    rows = 40 + 3 * len(range(1, 300, 7))
    with httpx.Client(base_url=service.url, timeout=10) as http:
        before = responses(http)
        started = operator("start", "--version", version, "--mode", "shadow")
        assert started["mode"] == "shadow"
        wait_for(following(scrape, service, 100), timeout=30, what="the shadow rollout", details=service.logs)
        assert responses(http) == before  # byte for byte

        wait_for(
            lambda: scrape(service).value("rollout_shadow_compared_total") >= rows,
            timeout=30,
            what="the candidate to score every shadowed row",
        )
        metrics = scrape(service)
        assert metrics.value("rollout_shadow_disagreements_total") == 0  # the same model: it agrees
        assert metrics.value("rollout_scored_rows_total", variant="candidate", outcome="ok") == rows
        assert metrics.value("rollout_scored_rows_total", variant="champion", outcome="ok") == rows
        assert metrics.value("rollout_shadow_score_difference_sum") == 0

        # A candidate whose model call fails: the responses stay the same; only its figures say so.
        (faults / "predict_fails").write_text(version)
        assert responses(http) == before
        wait_for(
            lambda: scrape(service).value("rollout_scored_rows_total", variant="candidate", outcome="error") >= rows,
            timeout=30,
            what="the candidate's failures to be counted",
        )
        assert scrape(service).value("http_requests_total", status="5xx") == 0


def test_canary_is_sticky_per_customer_labelled_and_followed_by_both_workers(
    project: Any, start_isolated_service: Any, scrape: Any, operator: Any
) -> None:
    from mlops_recipes.core.rollout import assign_variant

    service = start_isolated_service(project, workers=2, env=ENV)
    service.wait_ready()
    champion = str(project.mlflow_client().get_model_version_by_alias(MODEL, "champion").version)
    version = candidate_version(project)
    record = operator("start", "--version", version, "--mode", "canary", "--percent", "30")
    expected = {c: assign_variant(c, salt=record["salt"], percent=30) for c in range(1, 81)}
    customers = list(expected)

    seen: dict[int, set[tuple[str, str]]] = {c: set() for c in customers}
    with httpx.Client(base_url=service.url, timeout=10) as http:
        # Each worker reports its own share (pid label): both have read the record and loaded the candidate.
        wait_for(following(scrape, service, 30, workers=2), timeout=60, what="both workers", details=service.logs)
        # Fresh connections spread over both workers.
        fresh = httpx.Client(base_url=service.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
        for n in range(2):
            for c in customers:
                response = fresh.post("/predict", json=transaction(c, n))
                assert response.status_code == 200, response.text
                body = response.json()
                seen[c].add((body["variant"], body["model_version"]))
        # A batch mixing both variants keeps its order, each prediction saying who scored it.
        batch = http.post("/predict/batch", json={"transactions": [transaction(c, 9) for c in customers[:64]]})
        assert batch.status_code == 200, batch.text
        assert [p["variant"] for p in batch.json()["predictions"]] == [expected[c] for c in customers[:64]]
        assert [p["transaction_id"] for p in batch.json()["predictions"]] == [f"t-{c}-9" for c in customers[:64]]
        # Labels of the candidate's customers count under its version (live precision/recall per variant). Each
        # worker remembers the scores it returned, so a label matches only in the worker that scored it: the ones
        # a worker did not score are sent again on fresh connections until the other worker has had them.
        pending, matched = [f"t-{c}-0" for c in customers], []
        for _ in range(30):
            sent, pending = pending[:40], pending[40:]  # SERVING_MAX_BATCH is 64
            labels = [{"transaction_id": t, "is_fraud": False} for t in sent]
            response = fresh.post("/feedback", json={"labels": labels})
            assert response.status_code == 200, response.text
            matched.append(response.json())
            pending += matched[-1]["unmatched_ids"]
            if not pending:
                break
        fresh.close()

    for c, answers in seen.items():
        variant = expected[c]
        assert answers == {(variant, version if variant == "candidate" else champion)}, (c, answers)
    on_candidate = sum(v == "candidate" for v in expected.values())
    assert 0 < on_candidate < len(customers)
    metrics = scrape(service)
    # Every label matched once, in the worker that scored its transaction.
    assert sum(m["matched"] for m in matched) == len(customers)
    assert metrics.value("rollout_scored_rows_total", variant="candidate", outcome="ok") >= 2 * on_candidate
    assert metrics.value("feedback_labels_total", model_version=version) > 0
    assert metrics.value("feedback_labels_total", model_version=champion) > 0
    assert metrics.value("feedback_labels_total") == sum(m["matched"] for m in matched)
    # The request log says who scored each request too: one line per /predict, the batch's line counting both.
    lines = [json.loads(line) for line in service.logs().splitlines() if line.startswith("{")]
    scored = [line["scored_by"] for line in lines if line.get("message") == "request" and "scored_by" in line]
    singles = [by for by in scored if sum(by.values()) == 1]
    assert {key for by in singles for key in by} == {f"v{version} candidate", f"v{champion} champion"}
    assert {f"v{version} candidate": 1} in singles
    batch_line = next(by for by in scored if sum(by.values()) == 64)
    assert batch_line[f"v{version} candidate"] == sum(expected[c] == "candidate" for c in customers[:64])


CLIENTS = 8


@pytest.fixture
def load() -> Iterator[Callable[[str, list[int]], PredictLoad]]:
    """One client per customer, each posting that customer's transactions, stopped at teardown."""
    started: list[PredictLoad] = []

    def start(url: str, customers: list[int]) -> PredictLoad:
        def body(client: int, n: int) -> dict[str, Any]:
            return transaction(customers[client], n % 50)

        started.append(PredictLoad(url, body, clients=len(customers)))
        return started[-1]

    yield start
    for running in started:
        running.finish()


def changes(seen: list[tuple[int, str]]) -> list[tuple[str, str]]:
    versions = [version for _, version in seen]
    return [(a, b) for a, b in itertools.pairwise(versions) if a != b]


def test_abort_and_promote_under_eight_clients_fail_nothing_and_change_versions_once(
    project: Any, start_isolated_service: Any, scrape: Any, load: Any, operator: Any
) -> None:
    from mlops_recipes.core.rollout import assign_variant

    service = start_isolated_service(project, env=ENV)
    service.wait_ready()
    client = project.mlflow_client()
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    first = candidate_version(project)

    # Abort a 50 % canary: the candidate's customers go back to the champion, once; the others never move.
    salt = operator("start", "--version", first, "--mode", "canary", "--percent", "50")["salt"]
    on_candidate = [c for c in range(1, 301) if assign_variant(c, salt=salt, percent=50) == "candidate"][:4]
    on_champion = [c for c in range(1, 301) if assign_variant(c, salt=salt, percent=50) == "champion"][:4]
    wait_for(following(scrape, service, 50), timeout=30, what="the canary", details=service.logs)
    traffic = load(service.url, on_candidate + on_champion)
    wait_for(lambda: traffic.saw(first, 5, range(4)), timeout=30, what="canary traffic on the candidate")
    aborted = operator("abort", "--reason", "operator test")
    assert aborted["status"] == "aborted"
    wait_for(lambda: traffic.saw(champion, 5, range(4)), timeout=30, what="the candidate's customers back")
    per_client = traffic.finish()
    assert not [o for seen in per_client for o in seen if o[0] != 200]
    assert [changes(seen) for seen in per_client] == [[(first, champion)]] * 4 + [[]] * 4
    assert client.get_model_version(MODEL, first).tags["rollout_aborted_reason"] == "operator test"
    assert scrape(service).value("rollout_info", candidate_version=first, status="aborted") == 1

    # Promote from shadow: every client's responses change from the old champion to the candidate, once.
    second = candidate_version(project)
    operator("start", "--version", second, "--mode", "shadow", "--percent", "50")
    wait_for(following(scrape, service, 50), timeout=30, what="the shadow rollout")
    traffic = load(service.url, on_candidate + on_champion)
    wait_for(lambda: traffic.saw(champion, 5), timeout=30, what="shadow traffic")
    promoted = operator("promote", "--reason", "operator test")
    assert (promoted["champion_before"], promoted["champion_after"]) == (champion, second)
    wait_for(lambda: traffic.saw(second, 5), timeout=30, what="traffic on the new champion")
    per_client = traffic.finish()
    assert not [o for seen in per_client for o in seen if o[0] != 200]
    assert [changes(seen) for seen in per_client] == [[(champion, second)]] * CLIENTS
    assert client.get_model_version_by_alias(MODEL, "champion").tags["previous_champion"] == champion
    wait_for(following(scrape, service, 0), timeout=30, what="the rollout to end")

    status = operator("status", "--json")
    assert (status["version"], status["status"]) == (second, "promoted")
    # A second rollout of a version the offline gate rejected needs --force, and says it was forced.
    client.set_model_version_tag(MODEL, first, "gate_decision", "rejected")
    refused = operator("start", "--version", first, "--mode", "shadow", expect=1)
    assert "rejected by the offline gate" in refused
    forced = operator("start", "--version", first, "--mode", "shadow", "--force")
    assert forced["forced"] is True
    assert "rollout_forced_at" in client.get_model_version(MODEL, first).tags


def rollout_row_queries() -> list[str]:
    """The queries of the dashboard's rollout row (the rest of the dashboard is checked in test_monitoring_live)."""
    from support.dashboards import dashboard_queries, is_rollout_query

    return [expr for _, expr in dashboard_queries() if is_rollout_query(expr)]


def _plan(path: Path) -> Path:
    """The project's plan with seconds for hours: short windows, short steps, the same checks."""
    plan = yaml.safe_load((MONITORING / "rollout-plan.yaml").read_text(encoding="utf-8"))
    plan["poll_s"] = 1
    for check in plan["checks"]:
        check["query"] = check["query"].replace("[5m]", "[15s]").replace("[1h]", "[1m]")
        # Two copies of one model on a contended machine, a few hundred rows: only a real difference fails.
        if check["name"] == "candidate_p99_latency_ratio":
            check["max"] = 20
        if check["name"] == "score_psi":
            check["max"] = 0.5
    plan["steps"] = [
        {**plan["steps"][0], "duration_s": 8},
        {**plan["steps"][1], "percent": 50, "duration_s": 5},
    ]
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


def test_the_plan_aborts_a_failing_candidate_and_promotes_a_good_one_against_prometheus(
    project: Any,
    start_module_service: Any,
    start_prometheus: Any,
    prefect_server: None,
    scrape: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.rollout import rollout_plan

    faults = tmp_path / "faults"
    faults.mkdir()
    # Not start_isolated_service: its metrics directories would take start_prometheus' folder names.
    service = start_module_service(project, module="fault_apps", env={**ENV, "FAULT_DIR": str(faults)})
    service.wait_ready()
    prometheus = start_prometheus([ROLLOUT_RULES], service.url.removeprefix("http://"))
    monkeypatch.setenv("MLOPS_PROMETHEUS_URL", prometheus.url)
    plan = _plan(tmp_path / "plan.yaml")
    client = project.mlflow_client()
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)

    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=service.url, timeout=10) as http:
            for n in itertools.count():
                if stop.is_set():
                    return
                http.post("/predict", json=transaction(1 + n % 300, n % 50))
                time.sleep(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        # A bad candidate: its model call starts failing once it is in shadow. The analysis aborts it.
        bad = candidate_version(project)

        def break_candidate_once_in_shadow() -> None:
            wait_for(following(scrape, service, 100), timeout=60, what="the plan's shadow step", details=service.logs)
            (faults / "predict_fails").write_text(bad)

        injector = threading.Thread(target=break_candidate_once_in_shadow, daemon=True)
        injector.start()
        result = rollout_plan(version=bad, plan_file=str(plan), project_root=str(project.root))
        injector.join(timeout=10)
        assert (faults / "predict_fails").exists()
        assert result["status"] == "aborted", result
        assert "candidate_error_ratio" in result["reason"]
        assert "candidate_error_ratio" in client.get_model_version(MODEL, bad).tags["rollout_aborted_reason"]
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == champion
        wait_for(lambda: "FraudRolloutAborted" in prometheus.firing(), timeout=30, what="the abort alert")
        # The checks look at the candidate variant over their window: let the bad one's errors leave it.
        wait_for(
            lambda: (
                (prometheus.query(ERRORS) or {}).get("data", {}).get("result", [{}])[0].get("value", [0, "1"])[1] == "0"
            ),
            timeout=60,
            what="the bad candidate's errors to leave the checks' window",
        )

        # A good candidate passes both steps and becomes the champion; the old one is its rollback target.
        good = candidate_version(project)
        row: list[str] = []

        def watch_dashboard_row() -> None:  # the rollout row's queries, while the plan runs
            for expr in rollout_row_queries():
                wait_for(
                    lambda e=expr: bool((prometheus.query(e) or {}).get("data", {}).get("result")),
                    timeout=30,
                    what=expr,
                )
                row.append(expr)

        watcher = threading.Thread(target=watch_dashboard_row, daemon=True)
        watcher.start()
        outcome = rollout_plan(version=good, plan_file=str(plan), project_root=str(project.root))
        watcher.join(timeout=30)
        assert row == rollout_row_queries()  # every panel of the row had data during the rollout
        assert outcome["status"] == "promoted", outcome
        assert list(outcome["steps"]) == ["1: shadow 100%", "2: canary 50%"]
        promoted = client.get_model_version_by_alias(MODEL, "champion")
        assert (str(promoted.version), promoted.tags["previous_champion"]) == (good, champion)
    finally:
        stop.set()
        sender.join(timeout=30)
    wait_for(
        lambda: (
            httpx.post(service.url + "/predict", json=transaction(1, 0), timeout=10).json()["model_version"] == good
        ),
        timeout=30,
        what="the service to serve the promoted version",
    )
