"""materialize: incremental materialization of the feature views into the online store, with freshness."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows._common import markdown_table, project_settings
from mlops_recipes.settings import Settings
from mlops_recipes.stages import materialize as materialize_stage


@task(retries=2, retry_delay_seconds=30)
def materialize_incremental(settings: Settings, lock_wait_s: float) -> dict[str, Any]:
    """Push new feature rows online; report per-view freshness (or that a pipeline run made it skip)."""
    return materialize_stage.run(settings, lock_wait_s=lock_wait_s)


@flow(name="materialize", log_prints=True)
def materialize(project_root: str | None = None, lock_wait_s: float = 60.0) -> dict[str, Any]:
    """Materialize everything new since the last run, unless the pipeline is running (it materializes itself)."""
    summary = materialize_incremental(project_settings(project_root), lock_wait_s)
    if "skipped" in summary:
        print(f"materialize: skipped, {summary['skipped']}")  # noqa: T201 - log_prints
        create_markdown_artifact(
            key="feature-freshness", markdown=f"# Feature freshness\n\nSkipped: {summary['skipped']}"
        )
        return summary
    rows = {
        view: f"latest {info['latest_feature_timestamp']}, lag {info['lag_seconds']:.0f} s"
        if info["lag_seconds"] is not None
        else "no data"
        for view, info in summary["freshness"].items()
    }
    create_markdown_artifact(
        key="feature-freshness",
        markdown="# Feature freshness\n\n" + markdown_table(rows, header=("feature view", "freshness")),
    )
    return summary


if __name__ == "__main__":
    materialize()
