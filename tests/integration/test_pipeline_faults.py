"""Stages killed mid-run (``kill -9``, as the OOM killer or a lost container would), then run again.

A train stage killed mid-run left its MLflow run ``RUNNING`` forever; the next train marks it ``FAILED``. A features
or dataset stage killed mid-run leaves nothing that the rerun does not repair: the rerun's stores and tables equal
those of a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

BIN_DIR = Path(sys.executable).parent


def _start(project: Any, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN_DIR / "mlops"), *args],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(process: subprocess.Popen[bytes], condition: Callable[[], bool], *, timeout: float = 180) -> None:
    """SIGKILL ``process`` (and its group) as soon as ``condition()`` holds; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the stage ended (exit {process.returncode}) before it could be killed"
        try:
            if condition():
                break
        except Exception:  # noqa: S110 - the stores are being created while we poll
            pass
        time.sleep(0.1)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"condition not reached within {timeout} s")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


@pytest.fixture(scope="module")
def clean(trained_copy: Callable[[str], Any]) -> Any:
    """A project whose stages ran without interruption: the reference, then the train test's."""
    return trained_copy("uninterrupted")


def _online_rows(project: Any, customers: list[int]) -> dict[str, list[Any]]:
    from mlops_recipes.io import feature_store
    from mlops_recipes.settings import Settings

    settings = Settings(project_root=project.root)
    store = feature_store.open_store(settings)
    rows = [{"customer_id": c, "merchant_id": 1} for c in customers]
    values: dict[str, list[Any]] = feature_store.online_features(store, rows, "fraud_model_v1")
    return values


def test_features_and_dataset_killed_mid_run_then_rerun_give_the_stores_of_an_uninterrupted_run(
    project_factory: Callable[[str, dict[str, Any]], Any], clean: Any
) -> None:
    killed = project_factory("killed-stages", {})
    killed.run("dvc", "repro", "validate")

    # features: killed once its tables are written, while it applies the definitions and materializes.
    _kill_when(_start(killed, "features"), lambda: (killed.root / "data/features/merchant_stats.parquet").exists())
    killed.run("dvc", "repro", "features")
    # dataset: killed between its two outputs, the training split written and the holdout not (yet).
    _kill_when(_start(killed, "dataset"), lambda: (killed.root / "data/dataset/train.parquet").exists())
    killed.run("dvc", "repro", "dataset")

    for table in ("features/customer_stats", "features/merchant_stats", "dataset/train", "dataset/holdout"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(killed.root / "data" / f"{table}.parquet"),
            pd.read_parquet(clean.root / "data" / f"{table}.parquet"),
        )
    customers = sorted(pd.read_parquet(clean.root / "data/features/customer_stats.parquet")["customer_id"].unique())
    assert _online_rows(killed, customers) == _online_rows(clean, customers)
    assert json.loads((killed.root / "reports/features.json").read_text())["online_check"]


def test_train_killed_mid_run_is_marked_failed_by_the_next_train(clean: Any) -> None:
    project = clean
    client = project.mlflow_client()

    def running_runs() -> list[Any]:
        experiment = client.get_experiment_by_name("fraud-detection")
        if experiment is None:
            return []
        runs: list[Any] = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
        return runs

    train = _start(project, "train")
    _kill_when(train, lambda: bool(running_runs()))
    (abandoned,) = running_runs()
    assert abandoned.data.tags["mlops.pid"] == str(train.pid)

    result = json.loads(project.run("mlops", "train").stdout)

    assert result["abandoned_runs_failed"] == [abandoned.info.run_id]
    left = client.get_run(abandoned.info.run_id)
    assert left.info.status == "FAILED"
    assert f"process {train.pid}" in left.data.tags["mlops.abandoned"]
    assert client.get_run(result["run_id"]).info.status == "FINISHED"
    assert running_runs() == []
