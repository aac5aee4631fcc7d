"""Against the real thing: Prometheus scrapes a running service; every dashboard query and recording rule
parses and returns data, and the Grafana files reference the provisioned datasource only."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "fraud-serving.json"
# Every rule file, as prometheus.yml loads them (rule_files: rules/*.yml).
RULE_FILES = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
# Rule files whose records need more than scoring traffic (delayed labels, a full drift window): loaded here
# all the same, but not required to return data; test_monitoring_drift.py drives the traffic they need.
RECORDS_CHECKED_ELSEWHERE = {"model.yml"}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that query, rows left out (a collapsed row holds its panels)."""
    panels = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels += panel.get("panels", [])
        else:
            panels.append(panel)
    return panels


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in _panels(dashboard) for target in panel["targets"]]


def test_grafana_files_use_the_provisioned_datasource_by_uid() -> None:
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    text = DASHBOARD.read_text()
    assert "${DS_" not in text  # exported-for-sharing inputs are not resolved by file provisioning
    dashboard = json.loads(text)
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert all(target["datasource"]["uid"] in uids for target in panel["targets"]), panel["title"]


def test_every_dashboard_query_and_recording_rule_returns_data(
    trained_project: Any, start_service: Any, unused_port: Callable[[], int], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's 'prometheus' package (.ci/run does)", pytrace=False)
    service = start_service(trained_project)
    service.wait_ready()
    target = service.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(path) for path in RULE_FILES],
                "scrape_configs": [{"job_name": "fraud-serving", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    port = unused_port()
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        known = {"customer_id": 1, "merchant_id": 1, "amount": 30.0, "channel": "pos"}
        unknown = {**known, "customer_id": 9_999_999}
        deadline = time.monotonic() + 60
        pending = dashboard_queries() + [(rule["record"], rule["record"]) for rule in _recording_rules()]
        while pending and time.monotonic() < deadline:
            for body in (known, unknown, known):
                assert httpx.post(service.url + "/predict", json=body, timeout=10).status_code == 200
            time.sleep(1)
            still = []
            for title, expr in pending:
                response = _query(api, expr)
                if response is None:
                    still.append((title, expr))
                    continue
                assert response["status"] == "success", (title, expr, response)
                if not response["data"]["result"]:
                    still.append((title, expr))
            pending = still
        assert not pending, f"queries without data after 60 s: {pending}"
    finally:
        prometheus.terminate()
        prometheus.wait(30)


def _recording_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        if path.name not in RECORDS_CHECKED_ELSEWHERE
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]


def _query(api: str, expr: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(api, params={"query": expr}, timeout=5)
    except httpx.TransportError:
        return None  # Prometheus still starting
    if response.status_code == 400:
        pytest.fail(f"query does not parse: {expr}: {response.text}")
    result: dict[str, Any] = response.json()
    return result
