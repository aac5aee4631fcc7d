"""The pipeline as a user drives it: `dvc repro`, `dvc exp run -S`, `mlops status/promote/rollback`.

One project copy runs a scenario in order (each step builds on the registry state the previous left), with
real DVC, the real Feast local store and a real MLflow SQLite store. Slow parts run once per module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def project(trained_copy: Any) -> Any:
    return trained_copy("pipeline")  # with what the first `dvc repro` printed (``first_repro``)


def status(project: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(project.run("mlops", "status", "--json").stdout)
    return result


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_first_repro_runs_every_stage_and_promotes_a_champion(project: Any) -> None:
    assert stages_run(project.first_repro) == {
        "ingest",
        "validate",
        "features",
        "dataset",
        "train",
        "evaluate",
        "register",
    }
    promotion = read_json(project.root / "reports/promotion.json")
    assert promotion["decision"]["promote"] is True
    assert promotion["champion_before"] is None
    assert promotion["champion_after"] == promotion["candidate_version"]

    current = status(project)
    champion = current["champion"]
    assert champion["version"] == str(promotion["candidate_version"])
    assert champion["run_id"] == read_json(project.root / "artifacts/train_run.json")["run_id"]
    assert champion["metrics"]["pr_auc"] == pytest.approx(read_json(project.root / "metrics/holdout.json")["pr_auc"])
    assert champion["feature_service"] == "fraud_model_v1"
    assert current["challenger"]["version"] == champion["version"]
    # What `make run` prints, from the report alone (no registry call).
    summary = project.run("mlops", "summary").stdout
    assert f"champion: v{champion['version']}" in summary
    assert f"pr_auc={champion['metrics']['pr_auc']:.4f}" in summary


def test_training_set_has_one_row_per_labelled_event(project: Any) -> None:
    events = pd.read_parquet(project.root / "data/validated/transactions.parquet")
    train = pd.read_parquet(project.root / "data/dataset/train.parquet")
    holdout = pd.read_parquet(project.root / "data/dataset/holdout.parquet")
    joined_ids = pd.concat([train["transaction_id"], holdout["transaction_id"]])
    assert joined_ids.is_unique
    assert set(joined_ids) <= set(events["transaction_id"])
    # Only the gap before the holdout may be missing; every other event is in exactly one split.
    holdout_start = events["event_timestamp"].max().floor("D") - pd.Timedelta(days=5 - 1)
    in_gap = events["event_timestamp"].between(holdout_start - pd.Timedelta(hours=12), holdout_start, inclusive="left")
    outside_gap = events[~in_gap]
    assert set(outside_gap["transaction_id"]) == set(joined_ids)
    assert train["event_timestamp"].max() < holdout["event_timestamp"].min()


def test_mlflow_run_carries_lineage(project: Any) -> None:

    run_id = read_json(project.root / "artifacts/train_run.json")["run_id"]
    client = project.mlflow_client()
    run = client.get_run(run_id)
    assert run.data.tags["feature_service"] == "fraud_model_v1"
    assert len(run.data.tags["data.train_md5"]) == 32
    assert run.data.tags["git_commit"] != "unknown"
    assert "holdout_pr_auc" in run.data.metrics
    assert run.data.params["train.model"] == "hist_gradient_boosting"
    version = client.get_model_version_by_alias("fraud-detector", "champion")
    assert version.tags["feature_service"] == "fraud_model_v1"
    assert version.tags["gate_decision"] == "promoted"


def test_online_store_serves_the_latest_feature_rows(project: Any) -> None:
    from mlops_recipes.io import feature_store
    from mlops_recipes.settings import Settings

    stats = pd.read_parquet(project.root / "data/features/customer_stats.parquet")
    latest = stats.sort_values("event_timestamp").groupby("customer_id").tail(1).head(5)
    store = feature_store.open_store(Settings(project_root=project.root))
    rows = [{"customer_id": int(c), "merchant_id": 1} for c in latest["customer_id"]]
    online = feature_store.online_features(store, rows, "fraud_model_v1")
    assert online["cust_txn_count_7d"] == list(latest["cust_txn_count_7d"])
    assert online["cust_last_txn_ts"] == pytest.approx(list(latest["cust_last_txn_ts"]))


def test_second_repro_is_a_no_op(project: Any) -> None:
    result = project.run("dvc", "repro")
    assert stages_run(result.stdout) == set()
    assert "Data and pipelines are up to date" in result.stdout
    assert "changed" not in project.run("dvc", "status").stdout


def test_data_round_trips_through_the_local_dvc_remote(project: Any) -> None:
    raw = project.root / "data/raw/transactions.parquet"
    content = raw.read_bytes()
    project.run("dvc", "push")
    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["ingest"]["outs"] if o["path"] == "data/raw/transactions.parquet")
    cached = project.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    assert (project.root / "dvc-remote/files/md5" / md5[:2] / md5[2:]).is_file()
    raw.unlink()
    cached.unlink()  # only the remote has it now
    project.run("dvc", "pull", "data/raw/transactions.parquet")
    assert raw.read_bytes() == content


def test_experiment_reruns_only_what_depends_on_the_changed_param(project: Any) -> None:
    project.commit("after first run")
    before = status(project)["champion"]["version"]
    result = project.run("dvc", "exp", "run", "-S", "train.hist_gradient_boosting.learning_rate=0.2")
    assert stages_run(result.stdout) == {"train", "evaluate", "register"}
    promotion = read_json(project.root / "reports/promotion.json")
    assert promotion["candidate_version"] != before
    assert status(project)["challenger"]["version"] == str(promotion["candidate_version"])


def test_gate_refuses_a_model_trained_on_shuffled_labels(project: Any) -> None:
    champion_before = status(project)["champion"]["version"]
    project.run("dvc", "exp", "run", "-S", "train.shuffle_labels=true")
    promotion = read_json(project.root / "reports/promotion.json")
    assert promotion["decision"]["promote"] is False
    assert "below the floor" in " ".join(promotion["decision"]["reasons"])
    after = status(project)
    assert after["champion"]["version"] == champion_before
    assert after["challenger"]["version"] == str(promotion["candidate_version"])

    # Refusing can also fail the pipeline, when asked to; only the register stage reruns for that.
    failed = project.run("dvc", "exp", "run", "-S", "register.fail_on_reject=true", check=False)
    assert failed.returncode != 0
    assert "gate rejected" in failed.stderr + failed.stdout
    assert status(project)["champion"]["version"] == champion_before

    # A manual promotion is gated too, unless forced.
    refused = project.run("mlops", "promote", "--version", str(promotion["candidate_version"]), check=False)
    assert refused.returncode == 1
    assert "below the floor" in refused.stderr


def test_register_is_idempotent(project: Any) -> None:
    client = project.mlflow_client()
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["register"]["fail_on_reject"] = False
    lenient = project.root / "lenient-params.yaml"
    lenient.write_text(yaml.safe_dump(params))
    versions_before = len(client.search_model_versions("name='fraud-detector'"))
    runs = [json.loads(project.run("mlops", "--params", str(lenient), "register").stdout) for _ in range(2)]
    assert runs[0]["candidate_version"] == runs[1]["candidate_version"]
    assert len(client.search_model_versions("name='fraud-detector'")) == versions_before


def test_forced_promotion_then_rollback_restores_the_previous_champion(project: Any) -> None:
    client = project.mlflow_client()
    champion = status(project)["champion"]["version"]
    newest = max(int(v.version) for v in client.search_model_versions("name='fraud-detector'"))
    project.run("mlops", "promote", "--version", str(newest), "--force")
    assert status(project)["champion"]["version"] == str(newest)

    rolled = json.loads(project.run("mlops", "rollback").stdout)
    assert rolled == {"champion_before": str(newest), "champion_after": champion}
    assert status(project)["champion"]["version"] == champion


def test_rollback_to_a_version_that_fails_the_model_contract_is_refused(project: Any) -> None:
    client = project.mlflow_client()
    target = status(project)["champion"]["version"]  # the rollback target once newest is champion again
    newest = str(max(int(v.version) for v in client.search_model_versions("name='fraud-detector'")))
    project.run("mlops", "promote", "--version", newest, "--force")
    threshold = client.get_model_version("fraud-detector", target).tags["decision_threshold"]
    artifacts = Path(client.get_model_version_download_uri("fraud-detector", target).removeprefix("file://"))
    assert (artifacts / "MLmodel").is_file()

    # No recorded threshold: the version cannot tell at which threshold it decides.
    client.delete_model_version_tag("fraud-detector", target, "decision_threshold")
    refused = project.run("mlops", "rollback", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"refusing to roll 'fraud-detector' back from v{newest} to v{target}" in refused.stderr
    assert "decision_threshold" in refused.stderr
    assert f"The champion stays v{newest}" in refused.stderr
    assert status(project)["champion"]["version"] == newest
    client.set_model_version_tag("fraud-detector", target, "decision_threshold", threshold)

    # Its model files gone: it cannot be loaded at all.
    moved = artifacts.with_name(artifacts.name + ".moved")
    artifacts.rename(moved)
    try:
        refused = project.run("mlops", "rollback", check=False)
    finally:
        moved.rename(artifacts)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"cannot load models:/fraud-detector/{target}" in refused.stderr
    assert status(project)["champion"]["version"] == newest

    # Whole again, it passes the contract and the rollback goes through.
    rolled = json.loads(project.run("mlops", "rollback").stdout)
    assert rolled == {"champion_before": newest, "champion_after": target}
    assert status(project)["champion"]["version"] == target

    # A champion that moved while the target was being checked is not rolled back blindly.
    from mlops_recipes.io.registry import RegistryError, rollback

    with pytest.raises(RegistryError, match="changed during the rollback"):
        rollback(client, "fraud-detector", champion=newest, target=target)
    assert status(project)["champion"]["version"] == target
