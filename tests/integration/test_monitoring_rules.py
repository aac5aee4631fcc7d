"""Prometheus configuration and alert rules: promtool checks and unit tests, and no rule on a metric the
service does not export."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
# Every rule file Prometheus loads (rule_files: rules/*.yml) and every promtool test file next to them.
RULE_FILES = sorted(PROMETHEUS_DIR.glob("rules/*.yml"))
TEST_FILES = sorted(PROMETHEUS_DIR.glob("tests/*_test.yml"))
# Names in PromQL that are functions, keywords or label values, not metrics.
_NOT_METRICS = {
    "sum", "rate", "increase", "count", "by", "histogram_quantile", "clamp_min", "le", "up", "humanizePercentage",
    "humanizeDuration", "value", "labels", "instance", "route", "status", "entity", "result", "job", "model_version",
    "or", "vector", "and", "on", "group_left", "max", "min", "time", "deriv",
}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "cwd"),
    [
        (["check", "config", "prometheus.yml"], PROMETHEUS_DIR),
        *[(["check", "rules", f"rules/{path.name}"], PROMETHEUS_DIR) for path in RULE_FILES],
        *[(["test", "rules", path.name], PROMETHEUS_DIR / "tests") for path in TEST_FILES],
    ],
    ids=["check-config", *[f"check-{p.name}" for p in RULE_FILES], *[f"test-{p.name}" for p in TEST_FILES]],
)
def test_promtool(args: list[str], cwd: Path, tool_promtool: str) -> None:
    result = subprocess.run([tool_promtool, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_and_test_files_are_found() -> None:
    # The parametrized promtool checks would pass vacuously on an empty glob.
    assert {"serving.yml", "slo.yml", "model.yml", "stream.yml"} <= {path.name for path in RULE_FILES}
    assert {"serving_test.yml", "slo_test.yml", "model_test.yml", "stream_test.yml"} <= {p.name for p in TEST_FILES}


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=[path.name for path in RULE_FILES])
def test_rules_use_only_metrics_the_service_exports(rule_file: Path) -> None:
    from serving.metrics import ServiceMetrics
    from serving.stream.metrics import StreamMetrics

    service_metrics = ServiceMetrics.create()
    StreamMetrics.create(service_metrics.registry)  # the stream scorer exports both
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {
        family.name + suffix for family in service_metrics.registry.collect() for suffix in suffixes[family.type]
    }
    rules = yaml.safe_load(rule_file.read_text())
    recorded = {
        r["record"]
        for path in RULE_FILES
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            # Strings first (they may hold escaped braces), then selectors, ranges and label lists of
            # grouping and matching clauses.
            expression = re.sub(r'"(?:[^"\\]|\\.)*"', " ", rule["expr"])
            expression = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expression)
            expression = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expression)
            used |= set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression))
    unknown = used - exported - recorded - _NOT_METRICS - {"e", "9"}
    assert not unknown, f"rules reference metrics the service does not export: {sorted(unknown)}"
