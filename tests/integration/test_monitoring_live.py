"""Against the real thing: Prometheus scrapes a running service; every query of every dashboard and every
recording rule parses and returns data, and the Grafana files reference the provisioned datasource only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.dashboards import DASHBOARDS, MONITORING, dashboard_queries, is_rollout_query, is_stream_query
from support.dashboards import panels as _panels

pytestmark = pytest.mark.integration

# Every rule file, as prometheus.yml loads them (rule_files: rules/*.yml).
RULE_FILES = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
# Small drift window: drift figures appear after a few hundred scored rows.
SERVICE_ENV = {"SERVING_MONITOR_INTERVAL_S": "0.5", "SERVING_DRIFT_WINDOW_ROWS": "200", "SERVING_DRIFT_MIN_ROWS": "100"}


def test_both_dashboards_are_found() -> None:
    # The live check below would pass vacuously on an empty glob.
    assert {"fraud-serving.json", "fraud-model.json"} <= {path.name for path in DASHBOARDS}
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids)), "dashboard uids must be unique"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.name for path in DASHBOARDS])
def test_grafana_files_use_the_provisioned_datasource_by_uid(path: Path) -> None:
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    text = path.read_text()
    assert "${DS_" not in text  # exported-for-sharing inputs are not resolved by file provisioning
    dashboard = json.loads(text)
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert all(target["datasource"]["uid"] in uids for target in panel["targets"]), panel["title"]


def test_every_dashboard_query_and_recording_rule_returns_data(
    trained_project: Any, start_service: Any, start_prometheus: Any
) -> None:
    from mlops_recipes.monitoring.traffic import live_transactions, recent_transactions, send
    from mlops_recipes.params import DriftParams
    from mlops_recipes.settings import Settings

    service = start_service(trained_project, env=SERVICE_ENV)
    service.wait_ready()
    prometheus = start_prometheus(RULE_FILES, service.url.removeprefix("http://"))
    settings = Settings(project_root=trained_project.root)
    contract = settings.contract()
    recent = recent_transactions(settings, contract)
    # Replayed traffic with labels (5x the fraud: some scores and labels are positive) through /predict/batch, and
    # an unknown customer (missing features) through /predict.
    unknown = {"customer_id": 9_999_999, "merchant_id": 1, "amount": 30.0, "channel": "pos"}

    deadline = time.monotonic() + 90
    pending = [
        (title, expr)
        for title, expr in dashboard_queries() + [(rule["record"], rule["record"]) for rule in _recording_rules()]
        if not is_stream_query(expr) and not is_rollout_query(expr)
    ]
    round_ = 0
    while pending and time.monotonic() < deadline:
        round_ += 1
        traffic = live_transactions(
            recent, DriftParams(fraud_multiplier=5), contract, rows=60, seed=round_, id_prefix=f"r{round_}"
        )
        assert send(service.url, traffic, labels=True).failed_requests == 0
        # /predict alone carries the latency SLO.
        assert httpx.post(service.url + "/predict", json=unknown, timeout=10).status_code == 200
        time.sleep(1)
        still = []
        for title, expr in pending:
            response = prometheus.query(expr)
            if response is None:
                still.append((title, expr))
                continue
            assert response["status"] == "success", (title, expr, response)
            if not response["data"]["result"]:
                still.append((title, expr))
        pending = still
    assert not pending, f"queries without data after 90 s: {pending}"


def _recording_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
