"""Helpers shared by the flows: settings for a project root and markdown rendering for artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_recipes.settings import Settings


def retry_unless(*permanent: type[BaseException]) -> Any:
    """A Prefect ``retry_condition_fn``: retry any failure except the ``permanent`` kinds (bad input, busy)."""

    def should_retry(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except permanent:
            return False
        except Exception:  # anything else may be transient (a registry or store briefly unreachable)
            return True
        return True

    return should_retry


def project_settings(project_root: str | None) -> Settings:
    """Settings for ``project_root`` (default: ``MLOPS_PROJECT_ROOT`` or the working directory)."""
    return Settings(project_root=Path(project_root)) if project_root else Settings()


def markdown_table(rows: Mapping[str, Any], *, header: tuple[str, str] = ("", "")) -> str:
    """A two-column markdown table."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines)
