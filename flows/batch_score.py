"""batch_score: score a file or a time window with the current champion (the offline deployment path)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows._common import markdown_table, project_settings, retry_unless
from mlops_recipes.io.models import ModelLoadError
from mlops_recipes.settings import Settings
from mlops_recipes.stages import batch_score as batch_score_stage
from mlops_recipes.stages.batch_score import BatchInputError


@task(
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_unless(BatchInputError, FileNotFoundError, ModelLoadError),
)
def score(
    settings: Settings,
    *,
    output: Path,
    source: Path | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> dict[str, Any]:
    """Score with the champion (at its recorded threshold) and write predictions with the model version."""
    return batch_score_stage.run(settings, output=output, source=source, start=start, end=end)


@flow(name="batch-score", log_prints=True)
def batch_score(
    project_root: str | None = None,
    source: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    output: str | None = None,
    lookback_hours: float | None = 24.0,
) -> dict[str, Any]:
    """Score ``source`` (Parquet/CSV) or the validated data; by default the last ``lookback_hours``."""
    settings = project_settings(project_root)
    now = dt.datetime.now(dt.UTC)
    if start is None and end is None and source is None and lookback_hours is not None:
        start = now - dt.timedelta(hours=lookback_hours)
    target = (
        Path(output)
        if output
        else settings.path(settings.data_dir) / "predictions" / f"batch-{now:%Y%m%dT%H%M%SZ}.parquet"
    )
    summary = score(settings, output=target, source=Path(source) if source else None, start=start, end=end)
    create_markdown_artifact(key="batch-score", markdown="# Batch scoring\n\n" + markdown_table(summary))
    return summary


if __name__ == "__main__":
    batch_score()
