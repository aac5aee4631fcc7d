"""monitor: the feedback loop. Retraining alerts firing in Prometheus start the retrain deployment.

Alerts that should lead to a retrain carry the label ``action: retrain`` in ``monitoring/prometheus/rules/``
(input drift, score drift, live recall too low). This flow reads the firing ones from Prometheus' HTTP API (the
same figures the dashboard shows) and, if there are any, creates a run of the retrain deployment; the gate in the
pipeline still decides whether the new model replaces the champion. At most one triggered retrain per
``cooldown_hours``: the run is created with an idempotency key for the current cooldown period, so a monitor that
fires again while an alert persists gets the same run back instead of a second retrain.

Off switch: ``MLOPS_AUTO_RETRAIN=false`` (the flow still reports what it would do), or pause the
``monitor/monitor-every-15m`` deployment (Prefect UI; ``make flows`` pauses it when no Prometheus answers).
"""

from __future__ import annotations

import time
from typing import Any, cast

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from flows._common import markdown_table, project_settings

RETRAIN_LABEL = ("action", "retrain")


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer: nothing is decided on missing figures (the run fails and says so)."""


@task(retries=2, retry_delay_seconds=10)
def firing_retrain_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """The alerts firing now whose labels ask for a retrain."""
    url = prometheus_url.rstrip("/") + "/api/v1/alerts"
    try:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise PrometheusUnavailable(f"cannot read alerts from {url}: {error}") from error
    key, value = RETRAIN_LABEL
    return [
        alert
        for alert in response.json()["data"]["alerts"]
        if alert.get("state") == "firing" and alert.get("labels", {}).get(key) == value
    ]


def cooldown_key(deployment: str, cooldown_hours: float, *, now: float | None = None) -> str:
    """The idempotency key of a triggered retrain: one per deployment and cooldown period."""
    period = int((time.time() if now is None else now) // (cooldown_hours * 3600))
    return f"monitor:{deployment}:{period}"


@flow(name="monitor")
def monitor(
    project_root: str | None = None,
    retrain_deployment: str = "retrain/retrain-weekly",
    cooldown_hours: float = 24.0,
) -> dict[str, Any]:
    """Start a retrain when a retraining alert fires (unless auto-retraining is off)."""
    if cooldown_hours <= 0:
        raise ValueError("cooldown_hours must be positive")
    settings = project_settings(project_root)
    alerts = firing_retrain_alerts(settings.prometheus_url)
    names = sorted({alert["labels"].get("alertname", "?") for alert in alerts})
    log = get_run_logger()
    summary: dict[str, Any] = {"firing": names, "auto_retrain": settings.auto_retrain, "flow_run_id": None}
    if alerts and settings.auto_retrain:
        run = cast(  # the sync call returns the run (the async variant a coroutine)
            FlowRun,
            run_deployment(
                name=retrain_deployment,
                parameters={"refresh_data": True},
                timeout=0,  # start it and return: the retrain is its own flow run with its own report
                tags=["triggered-by-monitor", *names],
                idempotency_key=cooldown_key(retrain_deployment, cooldown_hours),
                as_subflow=False,
            ),
        )
        summary["flow_run_id"] = str(run.id)
        log.info("retraining alerts firing (%s): started %s as run %s", ", ".join(names), retrain_deployment, run.id)
    elif alerts:
        log.warning("retraining alerts firing (%s), but MLOPS_AUTO_RETRAIN is off: no retrain", ", ".join(names))
    else:
        log.info("no retraining alert is firing")
    create_markdown_artifact(
        key="monitor-decision",
        markdown="# Monitor\n\n"
        + markdown_table(
            {
                "firing retraining alerts": ", ".join(names) or "none",
                "auto retrain": settings.auto_retrain,
                "retrain run": summary["flow_run_id"] or "-",
            },
            header=("", ""),
        ),
    )
    return summary


if __name__ == "__main__":
    monitor()
