"""`mlops run`: every stage in one process, without DVC, ends in the same place as `dvc repro`."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_run_executes_every_stage_in_order_and_registers_a_champion(project_factory: Any) -> None:
    project = project_factory("inprocess", {})

    result = project.run("mlops", "run")

    stages = [json.loads(doc)["stage"] for doc in _json_documents(result.stdout)]
    assert stages == ["ingest", "validate", "features", "dataset", "train", "evaluate", "register"]
    status = json.loads(project.run("mlops", "status", "--json").stdout)
    assert status["champion"]["version"] == "1"
    assert set(status["champion"]) >= {"version", "run_id", "metrics"}
    assert 0.0 < status["champion"]["metrics"]["pr_auc"] <= 1.0


def _json_documents(text: str) -> list[str]:
    """Split the concatenated pretty-printed JSON summaries the command prints."""
    documents: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():  # libraries print progress lines between the documents
        if line == "{":
            current = []
        if current is not None:
            current.append(line)
            if line == "}":
                documents.append("\n".join(current))
                current = None
    return documents
