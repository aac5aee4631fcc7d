"""Service level objectives as code: ``monitoring/slo.yaml`` becomes Prometheus recording rules and alerts.

Each SLO is a ratio of good requests to all requests on some routes of the scoring service (availability:
not a 5xx; latency: faster than a histogram bucket boundary) and an objective over a compliance window. The
generated rules follow "Alerting on SLOs" in Google's SRE workbook: the SLI's error ratio is recorded over
each alert window and over the whole window, the error budget remaining is ``1 - error_ratio / (1 -
objective)``, and multi-window, multi-burn-rate alerts page when the budget burns fast (2 % of it in an hour,
5 % in six hours) and open a ticket when it burns slowly (10 % in a day or in three days). Each alert also
needs its short window (1/12 of the long one) to burn, so it resets soon after the errors stop.

    python -m mlops_recipes.monitoring.slo            # `make slo-rules`: writes monitoring/prometheus/rules/slo.yml
    python -m mlops_recipes.monitoring.slo --check    # exit 1 if slo.yml is not what slo.yaml generates
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from mlops_recipes.errors import ReportedError
from mlops_recipes.io.files import read_yaml
from mlops_recipes.observability import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    JOB,
    LATENCY_BUCKETS,
    ROUTE,
    SERVER_ERROR,
    STATUS,
)

CONFIG_PATH = Path("monitoring/slo.yaml")
RULES_PATH = Path("monitoring/prometheus/rules/slo.yml")
HEADER = (
    "# generated from monitoring/slo.yaml by `make slo-rules`; do not edit\n"
    "# Recording rules and multi-window, multi-burn-rate alerts of the service level objectives: see\n"
    '# docs/monitoring.md ("SLOs and error budget") and the SRE workbook, chapter 5 "Alerting on SLOs".\n'
)
RUNBOOK = "docs/monitoring.md#slos-and-error-budget"
MIN_WINDOW_DAYS, MAX_WINDOW_DAYS = 28, 90
_HOURS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


@dataclass(frozen=True)
class BurnRateAlert:
    """One row of the SRE workbook's table: alert when ``budget_spent`` of the budget goes in ``long_window``."""

    alert: str
    severity: Literal["critical", "warning"]
    long_window: str
    short_window: str
    budget_spent: float

    def burn_rate(self, window: str) -> float:
        """How many times faster than sustainable the budget burns at the threshold (14.4 for 1 h of 30 d)."""
        return round(self.budget_spent * _hours(window) / _hours(self.long_window), 3)


# SRE workbook, table 5-8 (a 30-day window): page at 14.4x over 1h and 6x over 6h, ticket at 3x over 1d and 1x
# over 3d. Burn rates derive from the share of budget spent, so a window other than 30d keeps their meaning.
BURN_RATE_ALERTS = (
    BurnRateAlert("FraudErrorBudgetFastBurn", "critical", "1h", "5m", 0.02),
    BurnRateAlert("FraudErrorBudgetFastBurn", "critical", "6h", "30m", 0.05),
    BurnRateAlert("FraudErrorBudgetSlowBurn", "warning", "1d", "2h", 0.10),
    BurnRateAlert("FraudErrorBudgetSlowBurn", "warning", "3d", "6h", 0.10),
)
ALERT_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


class SLOConfigError(ReportedError, ValueError):
    """``monitoring/slo.yaml`` is missing, unreadable or invalid."""


def _hours(duration: str) -> float:
    return float(duration[:-1]) * _HOURS[duration[-1]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
# FastAPI route templates, as the middleware labels requests: letters, digits, /, _, -, . and {parameters}.
Route = Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./{}-]*$")]


class _SLO(_Strict):
    name: Name
    description: Annotated[str, Field(min_length=1)]
    objective: float
    window: Annotated[str, Field(pattern=r"^[0-9]+d$")]
    routes: Annotated[list[Route], Field(min_length=1)]

    @field_validator("objective")
    @classmethod
    def _ratio_below_one(cls, value: float) -> float:
        if value >= 1:
            raise ValueError(
                "must be a ratio below 1 (99.5 % is 0.995): an objective of 1 (100 %) leaves no error budget "
                "to alert on"
            )
        if value <= 0:
            raise ValueError("must be a ratio above 0 (99.5 % is 0.995)")
        return value

    @field_validator("window")
    @classmethod
    def _window_in_days(cls, value: str) -> str:
        days = int(value[:-1])
        if not MIN_WINDOW_DAYS <= days <= MAX_WINDOW_DAYS:
            raise ValueError(
                f"{value} is outside {MIN_WINDOW_DAYS}d..{MAX_WINDOW_DAYS}d: the burn-rate alerts (1h to 3d) are "
                "tuned for a window of about a month, and Prometheus must keep the whole window"
            )
        return value

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, value: list[str]) -> list[str]:
        repeated = sorted({route for route in value if value.count(route) > 1})
        if repeated:
            raise ValueError(f"routes listed twice: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _alerts_can_fire(self) -> _SLO:
        budget = 1 - self.objective
        fastest = max(rule.burn_rate(self.window) for rule in BURN_RATE_ALERTS)
        if fastest * budget >= 1:
            raise ValueError(
                f"objective {self.objective:g} is too low: its {fastest:g}x burn-rate page would need more than "
                f"100 % bad requests and could never fire; use an objective above {1 - 1 / fastest:.4f}"
            )
        return self

    @property
    def error_budget(self) -> float:
        """The share of requests allowed to be bad: ``1 - objective``."""
        return 1 - self.objective


class AvailabilitySLO(_SLO):
    """Requests on ``routes`` answered without a server error (status class 5xx). 4xx are the client's."""

    sli: Literal["availability"]


class LatencySLO(_SLO):
    """Requests on ``routes`` answered within ``threshold_seconds``, a bucket boundary of the latency histogram."""

    sli: Literal["latency"]
    threshold_seconds: float

    @field_validator("threshold_seconds")
    @classmethod
    def _bucket_boundary(cls, value: float, info: ValidationInfo) -> float:
        buckets: Sequence[float] | None = (info.context or {}).get("latency_buckets")
        if buckets is None:
            raise ValueError("cannot check the threshold: validate with context={'latency_buckets': ...}")
        for boundary in buckets:
            if math.isclose(value, boundary, rel_tol=1e-9, abs_tol=0.0):
                return boundary
        raise ValueError(
            f"{value:g} s is not a bucket boundary of {HTTP_REQUEST_DURATION} "
            f"(LATENCY_BUCKETS in mlops_recipes/observability.py: {', '.join(f'{b:g}' for b in buckets)}); the SLI "
            "counts the requests of one bucket, so the threshold must be one of them"
        )


SLO = Annotated[AvailabilitySLO | LatencySLO, Field(discriminator="sli")]


class SLOConfig(_Strict):
    """Everything in ``monitoring/slo.yaml``."""

    slos: Annotated[list[SLO], Field(min_length=1)]

    @field_validator("slos")
    @classmethod
    def _unique_names(cls, value: list[SLO]) -> list[SLO]:
        names = [slo.name for slo in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"SLO names must be unique (they become the slo label): {', '.join(repeated)}")
        return value


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


def parse_config(raw: object, *, latency_buckets: Sequence[float], source: str = "slo config") -> SLOConfig:
    """Validate an already-loaded mapping against the histogram's buckets; raise :class:`SLOConfigError`."""
    if not isinstance(raw, dict):
        raise SLOConfigError(f"{source}: expected a mapping with 'slos' at the top level, got {type(raw).__name__}")
    try:
        return SLOConfig.model_validate(raw, context={"latency_buckets": tuple(latency_buckets)})
    except ValidationError as error:
        raise SLOConfigError(f"{source} is invalid:\n{_format_errors(error)}") from None


def load_config(path: Path, *, latency_buckets: Sequence[float]) -> SLOConfig:
    """Read and validate ``monitoring/slo.yaml``."""
    raw = read_yaml(path, error=SLOConfigError, what="SLO file")
    return parse_config(raw, latency_buckets=latency_buckets, source=str(path))


# --- rules -------------------------------------------------------------------------------------------------


def le_label(boundary: float) -> str:
    """A bucket boundary as prometheus_client writes the ``le`` label (0.1 -> "0.1", 1.0 -> "1.0")."""
    return repr(float(boundary))


def _route_matcher(routes: Sequence[str]) -> str:
    if len(routes) == 1:
        return f'{ROUTE}="{routes[0]}"'
    # Regex matchers are anchored; escape what the route pattern allows that is special in RE2, then the
    # backslash itself for the PromQL string.
    escaped = [route.replace(".", r"\.").replace("{", r"\{").replace("}", r"\}") for route in routes]
    return f'{ROUTE}=~"{{}}"'.format("|".join(escaped).replace("\\", "\\\\"))


def _error_ratio(slo: AvailabilitySLO | LatencySLO, window: str) -> str:
    matcher = f'job="{JOB}",{_route_matcher(slo.routes)}'
    if isinstance(slo, AvailabilitySLO):
        # `or vector(0)`: no 5xx series yet means a ratio of 0, not "no data".
        return (
            f'(sum(rate({HTTP_REQUESTS}{{{matcher},{STATUS}="{SERVER_ERROR}"}}[{window}])) or vector(0))\n'
            f"/ clamp_min(sum(rate({HTTP_REQUESTS}{{{matcher}}}[{window}])), 1e-9)\n"
        )
    # Slow = all - fast: the same as 1 - fast / all, but 0 rather than 1 when there is no traffic.
    total = f"sum(rate({HTTP_REQUEST_DURATION}_count{{{matcher}}}[{window}]))"
    le = le_label(slo.threshold_seconds)
    fast = f'sum(rate({HTTP_REQUEST_DURATION}_bucket{{{matcher},le="{le}"}}[{window}]))'
    return f"({total}\n - {fast})\n/ clamp_min({total}, 1e-9)\n"


def _number(value: float) -> str:
    return f"{value:.10g}"


def _duration_text(hours: float) -> str:
    days, rest = divmod(round(hours), 24)
    parts = [f"{days}d" if days else "", f"{rest}h" if rest else ""]
    return " ".join(part for part in parts if part) or "under an hour"


def _bad_requests(slo: AvailabilitySLO | LatencySLO) -> str:
    if isinstance(slo, AvailabilitySLO):
        return "requests failed (5xx)"
    return f"requests took longer than {slo.threshold_seconds * 1000:g} ms"


def _alert(slo: AvailabilitySLO | LatencySLO, rule: BurnRateAlert) -> dict[str, Any]:
    burn_rate = rule.burn_rate(slo.window)
    threshold = f"({_number(burn_rate)} * {_number(slo.error_budget)})"
    selector = f'{{slo="{slo.name}"}}'
    gone_in = _duration_text(_hours(slo.window) / burn_rate)
    return {
        "alert": rule.alert,
        "expr": (
            f"slo:sli_error:ratio_rate{rule.long_window}{selector} > {threshold}\n"
            f"and\nslo:sli_error:ratio_rate{rule.short_window}{selector} > {threshold}\n"
        ),
        "labels": {"severity": rule.severity, "long_window": rule.long_window, "short_window": rule.short_window},
        "annotations": {
            "summary": (
                f"{slo.name} SLO: error budget burning at {_number(burn_rate)}x the sustainable rate over "
                f"{rule.long_window} and {rule.short_window}"
            ),
            "description": (
                f"{{{{ $value | humanizePercentage }}}} of {_bad_requests(slo)} over the last {rule.long_window}, "
                f"against a budget of {_number(slo.error_budget * 100)} % (objective {_number(slo.objective * 100)} % "
                f"over {slo.window}): at this rate the whole budget is spent in {gone_in}."
            ),
            "runbook": RUNBOOK,
        },
    }


def _group(slo: AvailabilitySLO | LatencySLO) -> dict[str, Any]:
    labels = {"slo": slo.name}
    windows = [*ALERT_WINDOWS, slo.window] if slo.window not in ALERT_WINDOWS else list(ALERT_WINDOWS)
    rules: list[dict[str, Any]] = [
        {"record": f"slo:sli_error:ratio_rate{window}", "expr": _error_ratio(slo, window), "labels": labels}
        for window in windows
    ]
    rules += [
        {"record": "slo:objective:ratio", "expr": f"vector({_number(slo.objective)})", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector({_number(slo.error_budget)})", "labels": labels},
        {
            "record": "slo:error_budget_remaining:ratio",
            "expr": f'1 - slo:sli_error:ratio_rate{slo.window}{{slo="{slo.name}"}} / {_number(slo.error_budget)}',
            "labels": labels,
        },
    ]
    alerts = [_alert(slo, rule) for rule in BURN_RATE_ALERTS]
    for alert in alerts:
        alert["labels"] = {**alert["labels"], **labels}
    return {"name": f"slo-{slo.name}", "rules": [*rules, *alerts]}


class _Dumper(yaml.SafeDumper):
    """Indented lists, no anchors, multi-line strings (PromQL) as literal blocks: the layout of serving.yml."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render_rules(config: SLOConfig) -> str:
    """The text of ``monitoring/prometheus/rules/slo.yml``: one rule group per SLO."""
    document = {"groups": [_group(slo) for slo in config.slos]}
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=False)
    return HEADER + body


def rule_names(config: SLOConfig) -> Iterable[str]:
    """Every recording-rule and alert name the config generates."""
    for group in yaml.safe_load(render_rules(config))["groups"]:
        for rule in group["rules"]:
            yield rule.get("record") or rule["alert"]


# --- command line ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Validate ``monitoring/slo.yaml`` and write (or, with ``--check``, compare) the generated rules."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops_recipes.monitoring.slo",
        description="Generate Prometheus SLO recording rules and burn-rate alerts from monitoring/slo.yaml.",
    )
    parser.add_argument("--config", type=Path, default=CONFIG_PATH, help=f"SLO file (default: {CONFIG_PATH})")
    parser.add_argument("--output", type=Path, default=RULES_PATH, help=f"rules file (default: {RULES_PATH})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the output is out of date")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config, latency_buckets=LATENCY_BUCKETS)
    except SLOConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    text = render_rules(config)
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"{args.output} is out of date with {args.config}: run `make slo-rules`\n")
            return 1
        return 0
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(f"{args.output}: {len(config.slos)} SLOs, {sum(1 for _ in rule_names(config))} rules\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
