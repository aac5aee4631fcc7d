"""Prometheus configuration and alert rules: promtool checks and unit tests, and no rule on a metric the
service does not export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
# Names in PromQL that are functions, keywords or label values, not metrics.
_NOT_METRICS = {
    "sum", "rate", "increase", "count", "by", "histogram_quantile", "clamp_min", "le", "up", "humanizePercentage",
    "humanizeDuration", "value", "labels", "instance", "route", "status", "entity", "result", "job", "model_version",
    "or", "vector",
}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (.ci/run does)", pytrace=False)
    return path


@pytest.mark.parametrize(
    ("args", "cwd"),
    [
        (["check", "config", "prometheus.yml"], PROMETHEUS_DIR),
        (["check", "rules", "rules/serving.yml"], PROMETHEUS_DIR),
        (["test", "rules", "serving_test.yml"], PROMETHEUS_DIR / "tests"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: list[str], cwd: Path) -> None:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_use_only_metrics_the_service_exports() -> None:
    from serving.metrics import ServiceMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {
        family.name + suffix
        for family in ServiceMetrics.create().registry.collect()
        for suffix in suffixes[family.type]
    }
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules" / "serving.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            expression = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", rule["expr"])
            used |= set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression))
    unknown = used - exported - recorded - _NOT_METRICS - {"e", "9"}
    assert not unknown, f"rules reference metrics the service does not export: {sorted(unknown)}"
