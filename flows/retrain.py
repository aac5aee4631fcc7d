"""retrain: bring in new data, rerun the DVC pipeline (unchanged stages stay cached), report what happened.

The gate in the register stage decides whether the new model replaces the champion; this flow reports the
stages that ran, the holdout metrics, the decision and the champion before and after as a markdown artifact.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from flows._common import markdown_table, project_settings, retry_unless
from mlops_recipes.io import models, pipeline
from mlops_recipes.io.registry import CHAMPION
from mlops_recipes.settings import Settings


@task
def champion_version(settings: Settings) -> str | None:
    """The registry's current champion version."""
    return models.resolve_alias(settings, CHAMPION)


@task(
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless(pipeline.PipelineBusy),
)
def reproduce(settings: Settings, *, refresh_data: bool) -> list[str]:
    """``dvc repro``; with ``refresh_data`` the ingest stage reruns to pick up new data first."""
    return pipeline.reproduce(settings, force=["ingest"] if refresh_data else [])


def _read(settings: Settings, relative: str) -> dict[str, Any]:
    path = settings.path(relative)
    return json.loads(path.read_text()) if path.is_file() else {}


@flow(name="retrain", log_prints=True)
def retrain(project_root: str | None = None, refresh_data: bool = True, retries: int = 2) -> dict[str, Any]:
    """Rerun the pipeline on fresh data; the gate decides about the champion."""
    settings = project_settings(project_root)
    before = champion_version(settings)
    stages = reproduce.with_options(retries=retries)(settings, refresh_data=refresh_data)
    after = champion_version(settings)
    promotion = _read(settings, "reports/promotion.json")
    metrics = _read(settings, "metrics/holdout.json")
    decision = promotion.get("decision", {})
    summary = {
        "stages_run": stages,
        "champion_before": before,
        "champion_after": after,
        "candidate_version": promotion.get("candidate_version"),
        "promoted": decision.get("promote"),
        "reasons": decision.get("reasons", []),
        "metrics": metrics,
    }
    create_markdown_artifact(
        key="retrain-summary",
        markdown="\n\n".join(
            [
                "# Retrain",
                markdown_table(
                    {
                        "stages run": ", ".join(stages) or "none (everything up to date)",
                        "candidate version": summary["candidate_version"],
                        "gate": "promoted" if decision.get("promote") else "rejected",
                        "reasons": "; ".join(summary["reasons"]),
                        "champion before → after": f"{before} → {after}",
                    },
                    header=("", ""),
                ),
                "## Holdout metrics",
                markdown_table({k: f"{v:.4f}" for k, v in metrics.items()}, header=("metric", "value")),
            ]
        ),
        description="What the retrain run did",
    )
    print(f"retrain: stages {stages or 'none'}; champion {before} -> {after}")  # noqa: T201 - log_prints
    return summary


if __name__ == "__main__":
    retrain()
