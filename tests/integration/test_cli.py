"""The ``mlops`` command in-process: exit codes, what it prints, and what it leaves behind when it refuses.

``main`` returns the exit code (0 ok, 1 a reported error) and lets argparse exit with 2 on usage errors.
Every test runs in its own project root (``MLOPS_PROJECT_ROOT``) with no MLflow/Feast settings inherited.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_recipes.cli import main

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_PARAMS = REPO_ROOT / "params.yaml"


def use_project(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    for name in [n for n in os.environ if n.startswith(("MLFLOW_", "MLOPS_", "FEAST_"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # main() calls logging.basicConfig: keep any handler it adds out of the tests that follow.
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLOPS_PROJECT_ROOT", str(root))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project root (nothing but what a test writes into it)."""
    use_project(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root with the repo's params, shared by the registry commands (one MLflow store to create)."""
    root = tmp_path_factory.mktemp("cli-registry")
    shutil.copy2(REPO_PARAMS, root / "params.yaml")
    return root


@pytest.fixture
def registry_project(registry_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_project(monkeypatch, registry_root)
    return registry_root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def contains(document: Any, expected: Any) -> bool:
    """``expected`` (a loaded YAML mapping) is a sub-document of ``document``."""
    if isinstance(expected, dict):
        return isinstance(document, dict) and all(
            k in document and contains(document[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):  # element by element: a list entry may leave optional keys to their defaults
        return (
            isinstance(document, list)
            and len(document) == len(expected)
            and all(contains(d, e) for d, e in zip(document, expected, strict=True))
        )
    return bool(document == expected)


def test_params_prints_the_validated_parameters_by_alias(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--params", str(REPO_PARAMS), "params")

    assert code == 0, err
    document = json.loads(out)
    assert {"data", "validate", "features", "split", "train", "evaluate", "register"} == set(document)
    assert "validate_" not in document
    assert "register_" not in document
    # Every value written in params.yaml comes back unchanged.
    assert contains(document, yaml.safe_load(REPO_PARAMS.read_text()))
    assert list(project.iterdir()) == []


def test_params_schema_is_a_json_schema_that_accepts_params_yaml(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "params", "--schema")

    assert code == 0, err
    schema = json.loads(out)
    assert schema["type"] == "object"
    assert {"validate", "register", "data", "train"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False

    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(yaml.safe_load(REPO_PARAMS.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"validate": {"min_rowz": 3}}, schema)


BAD_PARAMS = {
    "unknown-key": (
        {"train": {"hist_gradient_boosting": {"learning_rat": 0.2}}},
        ["train.hist_gradient_boosting.learning_rat"],
    ),
    "bad-value": ({"split": {"holdout_days": 0}}, ["split.holdout_days"]),
    "bad-type": ({"data": {"n_customers": "many"}}, ["data.n_customers", "'many'"]),
    "cross-field": ({"data": {"source": "file"}}, ["data.path"]),
    "invalid-yaml": ("data: [unclosed\n", ["params.yaml", "YAML"]),
    "not-a-mapping": ("- a\n- b\n", ["params.yaml", "mapping"]),
}


@pytest.mark.parametrize(("content", "named"), list(BAD_PARAMS.values()), ids=list(BAD_PARAMS))
@pytest.mark.parametrize("command", ["params", "ingest", "status"])
def test_invalid_params_fail_before_any_work(
    project: Path, capsys: pytest.CaptureFixture[str], content: Any, named: list[str], command: str
) -> None:
    params = project / "params.yaml"
    params.write_text(content if isinstance(content, str) else yaml.safe_dump(content))

    code, out, err = run(capsys, command)

    assert code == 1
    assert err.startswith("error:")
    for text in named:
        assert text in err
    assert "Traceback" not in err
    assert out == ""
    # Nothing was started: no MLflow store, no data, no reports.
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


def test_missing_params_file_is_named(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = project / "elsewhere" / "params.yaml"

    for argv in (["--params", str(missing), "ingest"], ["status"]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert err.startswith("error:")
        assert "not found" in err
        assert out == ""
    assert str(missing) in run(capsys, "--params", str(missing), "params")[2]
    assert str(project / "params.yaml") in run(capsys, "status")[2]
    assert list(project.iterdir()) == []


def test_status_of_an_empty_registry(registry_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "status", "--json")

    assert code == 0, err
    status = json.loads(out)
    assert status["champion"] is None
    assert status["challenger"] is None
    assert status["model_name"] == "fraud-detector"
    # The embedded MLflow store lives in the project root, not in the working directory of the caller.
    assert (registry_project / "mlflow.db").is_file()


def test_rollback_without_a_champion(registry_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rollback")

    assert code == 1
    assert err.startswith("error:")
    assert "no champion" in err
    assert "Traceback" not in err
    assert out == ""


def test_promote_of_a_version_that_does_not_exist(registry_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "promote", "--version", "7")

    assert code == 1
    assert err.startswith("error:")
    assert "version 7" in err
    assert "Traceback" not in err
    assert out == ""


# Each stage run on a project where the stage before it never ran: (stage, the input it needs).
MISSING_INPUTS = {
    "validate": "data/raw/transactions.parquet",
    "features": "data/validated/transactions.parquet",
    "dataset": "data/validated/transactions.parquet",
    "train": "data/dataset/train.parquet",
    "evaluate": "artifacts/train_run.json",
    "register": "artifacts/train_run.json",
}


@pytest.mark.parametrize(("stage", "missing"), list(MISSING_INPUTS.items()), ids=list(MISSING_INPUTS))
def test_stage_before_its_input_exists_names_the_missing_file(
    project: Path, capsys: pytest.CaptureFixture[str], stage: str, missing: str
) -> None:
    shutil.copy2(REPO_PARAMS, project / "params.yaml")

    code, out, err = run(capsys, stage)

    assert code == 1
    assert err.startswith("error:")
    assert str(project / missing) in err
    assert "Traceback" not in err
    assert out == ""
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


def test_file_source_that_does_not_exist_is_named(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["data"] |= {"source": "file", "path": "incoming/transactions.csv"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    code, _, err = run(capsys, "ingest")

    assert code == 1
    assert err.startswith("error:")
    assert str(project / "incoming/transactions.csv") in err
    assert not (project / "data").exists()


@pytest.mark.parametrize("argv", [["bogus"], [], ["promote"], ["status", "--bogus"]], ids=str)
def test_usage_errors_exit_2(project: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    assert "usage: mlops" in capsys.readouterr().err
    assert list(project.iterdir()) == []
