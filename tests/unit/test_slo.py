"""monitoring/slo.py: the SLO config's validation, the rules generated from it, and drift between the two."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.utils import floatToGoString

from mlops_recipes.monitoring.slo import (
    SLOConfigError,
    load_config,
    main,
    parse_config,
    render_rules,
)
from mlops_recipes.observability import LATENCY_BUCKETS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "monitoring" / "slo.yaml"
RULES = ROOT / "monitoring" / "prometheus" / "rules" / "slo.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "fraud-serving.json"

VALID: dict[str, Any] = {
    "slos": [
        {
            "name": "availability",
            "sli": "availability",
            "description": "no 5xx",
            "objective": 0.995,
            "window": "30d",
            "routes": ["/predict", "/v2/models/{model_name}/infer"],
        },
        {
            "name": "latency",
            "sli": "latency",
            "description": "fast",
            "objective": 0.99,
            "threshold_seconds": 0.1,
            "window": "30d",
            "routes": ["/predict"],
        },
    ]
}


def _parse(raw: object) -> Any:
    return parse_config(raw, latency_buckets=LATENCY_BUCKETS)


def _with(index: int, **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    raw["slos"][index].update(changes)
    return raw


def _rules(raw: dict[str, Any]) -> list[dict[str, Any]]:
    document = yaml.safe_load(render_rules(_parse(raw)))
    return [rule for group in document["groups"] for rule in group["rules"]]


# --- drift between config, rules and dashboard ----------------------------------------------------------------


def test_committed_rules_are_what_the_config_generates() -> None:
    fresh = render_rules(load_config(CONFIG, latency_buckets=LATENCY_BUCKETS))
    assert RULES.read_text(encoding="utf-8") == fresh, "slo.yml is out of date with slo.yaml: run `make slo-rules`"


def test_cli_check_passes_on_the_repo_and_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert main(["--config", str(CONFIG), "--output", str(RULES), "--check"]) == 0

    output = tmp_path / "slo.yml"
    assert main(["--config", str(CONFIG), "--output", str(output), "--check"]) == 1  # missing
    assert main(["--config", str(CONFIG), "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == RULES.read_text(encoding="utf-8")
    assert main(["--config", str(CONFIG), "--output", str(output), "--check"]) == 0

    edited = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    edited["slos"][0]["objective"] = 0.999
    changed = tmp_path / "slo.yaml"
    changed.write_text(yaml.safe_dump(edited), encoding="utf-8")
    assert main(["--config", str(changed), "--output", str(output), "--check"]) == 1


def test_cli_reports_an_invalid_config_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "slo.yaml"
    config.write_text(yaml.safe_dump(_with(1, threshold_seconds=0.2)), encoding="utf-8")
    output = tmp_path / "slo.yml"

    assert main(["--config", str(config), "--output", str(output)]) == 2
    assert not output.exists()
    assert "not a bucket boundary" in capsys.readouterr().err


def test_generated_file_says_it_is_generated() -> None:
    assert RULES.read_text(encoding="utf-8").startswith(
        "# generated from monitoring/slo.yaml by `make slo-rules`; do not edit\n"
    )


def test_dashboard_slo_panels_use_generated_records_and_configured_slos() -> None:
    config = load_config(CONFIG, latency_buckets=LATENCY_BUCKETS)
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    recorded = {rule["record"] for group in document["groups"] for rule in group["rules"] if "record" in rule}
    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
        for target in panel.get("targets", [])
        if "slo:" in target["expr"]
    ]
    used = {name for expr in exprs for name in re.findall(r"slo:[a-z0-9_:]+", expr)}
    named = {name for expr in exprs for name in re.findall(r'slo="([^"]+)"', expr)}
    configured = {slo.name for slo in config.slos}

    assert exprs, "the dashboard has no SLO panel"
    assert used <= recorded, f"dashboard queries records slo.yml does not define: {sorted(used - recorded)}"
    assert named <= configured, f"dashboard names SLOs slo.yaml does not define: {sorted(named - configured)}"
    assert configured <= named, f"SLOs without an SLI panel on the dashboard: {sorted(configured - named)}"


# --- generated rules ----------------------------------------------------------------------------------------


def test_burn_rate_alerts_follow_the_sre_workbook_table() -> None:
    alerts = [rule for rule in _rules(VALID) if "alert" in rule and rule["labels"]["slo"] == "availability"]
    table = {
        (rule["labels"]["long_window"], rule["labels"]["short_window"]): (
            rule["alert"],
            rule["labels"]["severity"],
            re.findall(r"> \(([0-9.]+) \* ([0-9.]+)\)", rule["expr"]),
        )
        for rule in alerts
    }
    assert table == {
        ("1h", "5m"): ("FraudErrorBudgetFastBurn", "critical", [("14.4", "0.005")] * 2),
        ("6h", "30m"): ("FraudErrorBudgetFastBurn", "critical", [("6", "0.005")] * 2),
        ("1d", "2h"): ("FraudErrorBudgetSlowBurn", "warning", [("3", "0.005")] * 2),
        ("3d", "6h"): ("FraudErrorBudgetSlowBurn", "warning", [("1", "0.005")] * 2),
    }
    for rule in alerts:
        long_window, short_window = rule["labels"]["long_window"], rule["labels"]["short_window"]
        assert f"slo:sli_error:ratio_rate{long_window}{{" in rule["expr"]
        assert f"slo:sli_error:ratio_rate{short_window}{{" in rule["expr"]
        assert "\nand\n" in rule["expr"]


def test_burn_rates_keep_their_budget_share_on_another_window() -> None:
    rules = _rules(_with(0, window="60d"))
    fast = next(
        r
        for r in rules
        if r.get("alert") and r["labels"]["slo"] == "availability" and r["labels"]["long_window"] == "1h"
    )
    assert "> (28.8 * 0.005)" in fast["expr"]  # 2 % of a 60-day budget in an hour


def test_error_ratios_are_recorded_for_every_window_with_the_slo_label() -> None:
    rules = _rules(VALID)
    for name in ("availability", "latency"):
        records = {r["record"] for r in rules if "record" in r and r["labels"] == {"slo": name}}
        assert records == {
            *(f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")),
            "slo:objective:ratio",
            "slo:error_budget:ratio",
            "slo:error_budget_remaining:ratio",
        }


def test_availability_counts_only_5xx_on_its_routes_and_never_divides_by_zero() -> None:
    rule = next(r for r in _rules(VALID) if r.get("record") == "slo:sli_error:ratio_rate1h")
    expr = rule["expr"]
    assert 'job="fraud-serving"' in expr
    assert 'status="5xx"' in expr
    assert "or vector(0)" in expr
    assert "clamp_min(" in expr
    # Anchored alternation; braces of the route template escaped for RE2, backslash escaped for PromQL.
    assert 'route=~"/predict|/v2/models/\\\\{model_name\\\\}/infer"' in expr


def test_latency_reads_the_threshold_bucket_and_is_zero_without_traffic() -> None:
    rule = next(
        r for r in _rules(VALID) if r.get("record") == "slo:sli_error:ratio_rate5m" and r["labels"]["slo"] == "latency"
    )
    expr = rule["expr"]
    assert 'http_request_duration_seconds_bucket{job="fraud-serving",route="/predict",le="0.1"}[5m]' in expr
    # (all - fast) / clamp_min(all): 0 with no traffic, where 1 - fast / clamp_min(all) would be 1.
    assert expr.startswith("(sum(rate(http_request_duration_seconds_count")
    assert "clamp_min(" in expr


def test_budget_remaining_uses_the_whole_window() -> None:
    rule = next(
        r
        for r in _rules(VALID)
        if r.get("record") == "slo:error_budget_remaining:ratio" and r["labels"]["slo"] == "availability"
    )
    assert rule["expr"] == '1 - slo:sli_error:ratio_rate30d{slo="availability"} / 0.005'


@pytest.mark.parametrize("boundary", LATENCY_BUCKETS)
def test_every_bucket_is_accepted_and_written_as_the_client_writes_le(boundary: float) -> None:
    rules = _rules(_with(1, threshold_seconds=boundary))
    assert any(f'le="{floatToGoString(boundary)}"' in rule["expr"] for rule in rules)


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_with(0, objective=1.0), "objective: must be a ratio below 1"),
        (_with(0, objective=99.5), "99.5 % is 0.995"),
        (_with(0, objective=0.0), "must be a ratio above 0"),
        (_with(0, objective=-0.5), "must be a ratio above 0"),
        (_with(0, objective="99.5%"), "valid number"),
        (_with(0, objective=0.9), "could never fire"),
        (_with(1, threshold_seconds=0.2), "0.2 s is not a bucket boundary"),
        (_with(1, threshold_seconds="100ms"), "valid number"),
        (_with(0, objectve=0.99), "slos.0.availability.objectve: Extra inputs are not permitted"),
        (_with(0, threshold_seconds=0.1), "slos.0.availability.threshold_seconds: Extra inputs are not permitted"),
        ({**VALID, "window": "30d"}, "window: Extra inputs are not permitted"),
        (_with(0, sli="throughput"), "does not match any of the expected tags"),
        (_with(0, window="30"), "should match pattern"),
        (_with(0, window="7d"), "outside 28d..90d"),
        (_with(0, routes=[]), "at least 1 item"),
        (_with(0, routes=["predict"]), "should match pattern"),
        (_with(0, routes=["/predict", "/predict"]), "routes listed twice: /predict"),
        (_with(1, name="availability"), "SLO names must be unique"),
        (_with(0, name="Availability SLO"), "should match pattern"),
        ({"slos": []}, "at least 1 item"),
    ],
)
def test_invalid_configs_fail_with_a_message_naming_the_problem(raw: object, message: str) -> None:
    with pytest.raises(SLOConfigError) as error:
        _parse(raw)
    assert message in str(error.value)


def test_missing_fields_are_named() -> None:
    raw = copy.deepcopy(VALID)
    del raw["slos"][1]["threshold_seconds"]
    with pytest.raises(SLOConfigError, match=r"slos\.1\.latency\.threshold_seconds: Field required"):
        _parse(raw)


def test_the_repo_config_is_valid() -> None:
    config = load_config(CONFIG, latency_buckets=LATENCY_BUCKETS)
    assert {slo.sli for slo in config.slos} == {"availability", "latency"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "expected a mapping"), ("slos: [\n", "not valid YAML"), ("", "expected a mapping")],
)
def test_unreadable_files_fail_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SLOConfigError, match=message):
        load_config(path, latency_buckets=LATENCY_BUCKETS)


def test_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SLOConfigError, match="SLO file not found"):
        load_config(tmp_path / "absent.yaml", latency_buckets=LATENCY_BUCKETS)
