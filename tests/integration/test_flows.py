"""Prefect flows run for real under one session-scoped Prefect test server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(trained_copy: Any) -> Any:
    project = trained_copy("flows")
    project.commit("trained")
    return project


def flow_state(flow: Any, **kwargs: Any) -> Any:
    return flow(**kwargs, return_state=True)


def test_retrain_reruns_the_pipeline_and_reports_an_artifact(prefect_server: None, project: Any) -> None:
    from prefect.client.orchestration import get_client

    from flows.retrain import retrain

    # New data: a different seed stands for tomorrow's events.
    params = project.root / "params.yaml"
    params.write_text(params.read_text().replace("seed: 7", "seed: 8", 1))
    state = flow_state(retrain, project_root=str(project.root), refresh_data=True)

    assert state.is_completed()
    summary = state.result()
    assert summary["stages_run"][:2] == ["ingest", "validate"]
    assert "register" in summary["stages_run"]
    assert summary["candidate_version"] == "2"
    assert summary["champion_before"] == "1"
    assert summary["champion_after"] in {"1", "2"}
    assert summary["champion_after"] == ("2" if summary["promoted"] else "1")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    retrain_artifacts = [
        a for a in artifacts if a.key == "retrain-summary" and a.flow_run_id == state.state_details.flow_run_id
    ]
    assert len(retrain_artifacts) == 1
    assert "pr_auc" in retrain_artifacts[0].data


def test_broken_stage_fails_the_flow(prefect_server: None, project_factory: Any) -> None:
    from flows.retrain import retrain

    broken = project_factory("broken-flow", {"validate": {"min_rows": 10_000_000, "max_rows": 20_000_000}})
    state = flow_state(retrain, project_root=str(broken.root), refresh_data=False, retries=0)

    assert state.is_failed()
    assert not (broken.root / "data/validated/transactions.parquet").exists()


def test_transient_error_is_retried(prefect_server: None, project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import retrain as retrain_module
    from mlops_recipes.io import pipeline

    real = pipeline.reproduce
    calls: list[int] = []

    def flaky(settings: Any, *, force: Any = ()) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("registry briefly unreachable")  # the injected fault
        return real(settings, force=force)

    monkeypatch.setattr(retrain_module.pipeline, "reproduce", flaky)
    fast = retrain_module.reproduce.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(retrain_module, "reproduce", fast)
    state = flow_state(retrain_module.retrain, project_root=str(project.root), refresh_data=False, retries=1)

    assert state.is_completed()
    assert len(calls) == 2


def test_materialize_makes_new_batch_rows_visible_online(prefect_server: None, project: Any) -> None:
    from flows.materialize import materialize
    from mlops_recipes.io import feature_store
    from mlops_recipes.settings import Settings

    path = project.root / "data/features/merchant_stats.parquet"
    table = pd.read_parquet(path)
    newest = table.sort_values("event_timestamp").iloc[[-1]].copy()
    merchant = int(newest["merchant_id"].iloc[0])
    newest["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=1)
    newest["merch_txn_count_7d"] = 999
    pd.concat([table, newest]).to_parquet(path, index=False)

    summary = materialize(project_root=str(project.root))

    store = feature_store.open_store(Settings(project_root=project.root))
    online = feature_store.online_features(store, [{"customer_id": 1, "merchant_id": merchant}], "fraud_model_v1")
    assert online["merch_txn_count_7d"] == [999]
    assert summary["freshness"]["merchant_stats"]["lag_seconds"] < 3600
    # Customer rows are updated per transaction by the service: batch materialization leaves them alone.
    assert "customer_stats" not in summary["freshness"]


def test_batch_scores_equal_the_online_service(
    prefect_server: None, project: Any, start_service: Any, tmp_path: Any
) -> None:
    import httpx

    from flows.batch_score import batch_score

    validated = pd.read_parquet(project.root / "data/validated/transactions.parquet")
    sample = validated.drop_duplicates("customer_id").head(20).copy()
    # Transactions arriving now: the point-in-time features are the latest rows, as in the online store.
    now = pd.Timestamp.now(tz="UTC").floor("s")
    sample["event_timestamp"] = now
    sample["transaction_id"] = np.arange(10_000_000, 10_000_000 + len(sample))
    source = tmp_path / "incoming.parquet"
    sample.to_parquet(source, index=False)
    output = tmp_path / "scores.parquet"

    summary = batch_score(project_root=str(project.root), source=str(source), output=str(output))
    scores = pd.read_parquet(output).set_index("transaction_id")

    service = start_service(project)
    service.wait_ready()
    assert summary["rows"] == len(sample)
    for row in sample.itertuples():
        body = {
            "customer_id": int(row.customer_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "channel": row.channel,
            "event_timestamp": now.isoformat(),
        }
        online = httpx.post(service.url + "/predict", json=body, timeout=10).json()
        batch = scores.loc[row.transaction_id]
        assert batch["model_version"] == online["model_version"]
        assert batch["fraud_probability"] == pytest.approx(online["fraud_probability"], rel=1e-9, abs=1e-12)


def test_batch_score_rejects_input_without_required_columns(prefect_server: None, project: Any, tmp_path: Any) -> None:
    from flows.batch_score import batch_score
    from mlops_recipes.stages.batch_score import BatchInputError

    source = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": [1], "amount": [3.0]}).to_csv(source, index=False)

    state = batch_score(project_root=str(project.root), source=str(source), return_state=True)

    assert state.is_failed()
    with pytest.raises(BatchInputError, match="merchant_id"):
        state.result()


def test_materialize_never_overlaps_a_pipeline_run(prefect_server: None, project: Any) -> None:
    from flows.materialize import materialize
    from mlops_recipes.io import pipeline
    from mlops_recipes.settings import Settings

    settings = Settings(project_root=project.root)
    with pipeline.exclusive(settings, holder="dvc repro"):
        skipped = materialize(project_root=str(project.root), lock_wait_s=0.5)
        # And the other way round: a pipeline run does not start while the lock is held.
        with pytest.raises(pipeline.PipelineBusy, match=r"dvc repro, pid \d+"):
            pipeline.reproduce(settings, wait_s=0.5)

    assert "dvc repro, pid" in skipped["skipped"]
    assert skipped["freshness"] == {}
    done = materialize(project_root=str(project.root), lock_wait_s=0.5)
    assert "skipped" not in done
    # Batch-only views: customer rows are updated per transaction by the service (docs/serving.md).
    assert set(done["freshness"]) == {"merchant_stats"}
