"""The Grafana dashboards' queries, for the tests that check them against a running Prometheus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that query, rows left out (a collapsed row holds its panels)."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard: panel title, expression) of every query of every dashboard."""
    return [
        (f"{path.stem}: {panel['title']}", target["expr"])
        for path in DASHBOARDS
        for panel in panels(json.loads(path.read_text()))
        for target in panel["targets"]
    ]


def is_stream_query(expr: str) -> bool:
    """Queries of the stream scorer's figures: test_streaming.py checks them against a running scorer."""
    return "stream" in expr


def is_rollout_query(expr: str) -> bool:
    """Queries of the rollout row: they have data only while a rollout runs (test_rollouts.py checks them then)."""
    return "rollout_" in expr
