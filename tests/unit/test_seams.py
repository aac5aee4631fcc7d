"""The seams between the library and its shells: reported errors, MLflow's process-wide state, the model URI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_recipes.cli import main
from mlops_recipes.errors import MissingInputError, ReportedError
from mlops_recipes.io.models import model_uri
from mlops_recipes.settings import Settings


def test_a_reported_error_exits_1_and_a_programming_error_surfaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlops_recipes.cli as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_PROJECT_ROOT", str(tmp_path))
    assert main(["summary"]) == 1  # no reports/promotion.json yet: a missing input, reported
    assert "run the stage that writes it first" in capsys.readouterr().err

    def broken(*_: object) -> int:
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(cli, "_dispatch", broken)
    with pytest.raises(KeyError):
        main(["summary"])


def test_missing_inputs_are_still_file_not_found_errors() -> None:
    error = MissingInputError("x")
    assert isinstance(error, ReportedError)
    assert isinstance(error, FileNotFoundError)


def test_the_fluent_block_leaves_mlflow_as_it_found_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from mlops_recipes.io import tracking

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(project_root=tmp_path)
    before = mlflow.get_tracking_uri()
    with tracking.fluent(settings):
        assert mlflow.get_tracking_uri() == settings.resolved_tracking_uri
        assert os.environ["MLFLOW_TRACKING_URI"] == settings.resolved_tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    with pytest.raises(RuntimeError), tracking.fluent(settings):
        raise RuntimeError("a failing stage")
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////elsewhere/mlflow.db"


def test_one_uri_builder_for_versions_and_aliases() -> None:
    assert model_uri("fraud-detector", 3) == "models:/fraud-detector/3"
    assert model_uri("fraud-detector", alias="champion") == "models:/fraud-detector@champion"
    with pytest.raises(ValueError, match="exactly one"):
        model_uri("fraud-detector", 3, alias="champion")
