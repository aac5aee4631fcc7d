"""Training/serving parity: the service scores real customers exactly as the champion does in-process.

The reference path is the one the pipeline's scorers use: the champion loaded with ``mlflow.sklearn.load_model``
and called on rows built by ``request_features`` from the online features of the model's feature service, in the
column order the model was fitted with (its signature's). Every request carries an explicit ``event_timestamp`` so
time-dependent features (hour, account age, time since the last transaction) match.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_recipes.core.request_features import STORED_FEATURES, request_features

pytestmark = pytest.mark.integration

MODEL = "fraud-detector"


@pytest.fixture(scope="module")
def transactions(trained_project: Any) -> list[dict[str, Any]]:
    """Six transactions of real customers at real merchants, at hours that span night and day."""
    events = pd.read_parquet(trained_project.root / "data" / "validated" / "transactions.parquet")
    sample = events.sample(6, random_state=3)
    # Within the service's window of event times (SERVING_MAX_EVENT_AGE_S before now at most).
    now = pd.Timestamp.now(tz="UTC").floor("s")
    requests = []
    for i, row in enumerate(sample.itertuples()):
        when = now - pd.Timedelta(hours=1 + 5 * i, minutes=7 * i)
        # One timestamp with an offset other than UTC: the hour-of-day features are the UTC hour, like the pipeline.
        stamp = when.tz_convert("Asia/Kolkata").isoformat() if i == 0 else when.isoformat()
        requests.append(
            {
                "customer_id": int(row.customer_id),
                "merchant_id": int(row.merchant_id),
                "amount": float(row.amount),
                "channel": str(row.channel),
                "event_timestamp": stamp,
            }
        )
    return requests


@pytest.fixture(scope="module")
def reference(trained_project: Any, transactions: list[dict[str, Any]]) -> dict[str, Any]:
    """The champion called in-process on the same features: probabilities, model rows, what the store lacked."""
    import mlflow
    from mlflow import MlflowClient

    from mlops_recipes.io.feature_store import online_features, open_store
    from mlops_recipes.settings import Settings

    settings = Settings(project_root=trained_project.root)
    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri, registry_uri=settings.resolved_registry_uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    location = client.get_model_version_download_uri(MODEL, champion.version)  # no global tracking URI needed
    model = mlflow.sklearn.load_model(location)
    signature = mlflow.models.Model.load(location).signature
    assert signature is not None
    # Names the estimator was fitted with if it kept them, else the signature (logged from the training frame).
    features = [str(name) for name in getattr(model, "feature_names_in_", signature.inputs.input_names())]

    online = online_features(
        open_store(settings),
        [{"customer_id": t["customer_id"], "merchant_id": t["merchant_id"]} for t in transactions],
        champion.tags["feature_service"],
    )
    columns: dict[str, Any] = {
        name: np.array([np.nan if v is None else v for v in online[name]], dtype=np.float64) for name in STORED_FEATURES
    }
    columns["amount"] = np.array([t["amount"] for t in transactions])
    columns["channel"] = np.array([t["channel"] for t in transactions])
    columns["event_timestamp"] = np.array([_epoch(t["event_timestamp"]) for t in transactions])
    inputs = request_features(columns, settings.contract())
    rows = np.column_stack([inputs[name] for name in features])
    return {
        "version": str(champion.version),
        "features": features,
        "rows": rows,
        "probabilities": model.predict_proba(rows)[:, 1].tolist(),
        "missing": [[n for n in STORED_FEATURES if online[n][row] is None] for row in range(len(transactions))],
    }


def _epoch(stamp: str) -> float:
    value = dt.datetime.fromisoformat(stamp)
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.ravel().tolist()]


def test_predict_equals_the_champion_on_the_same_features(
    scoring_service: Any, transactions: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    with httpx.Client(base_url=scoring_service.url, timeout=10) as client:
        bodies = [client.post("/predict", json=t) for t in transactions]

    assert [r.status_code for r in bodies] == [200] * len(transactions), [r.text for r in bodies]
    predictions = [r.json() for r in bodies]
    assert [p["fraud_probability"] for p in predictions] == pytest.approx(reference["probabilities"], rel=1e-9)
    assert {p["model_version"] for p in predictions} == {reference["version"]}
    assert [p["missing_features"] for p in predictions] == reference["missing"]
    assert [p["is_fraud"] for p in predictions] == [p["fraud_probability"] >= p["threshold"] for p in predictions]


def test_batch_equals_single_predictions(scoring_service: Any, transactions: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=scoring_service.url, timeout=10) as client:
        singles = [client.post("/predict", json=t).json() for t in transactions]
        batch = client.post("/predict/batch", json={"transactions": transactions})

    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["model_version"] == singles[0]["model_version"]
    assert [p["fraud_probability"] for p in body["predictions"]] == pytest.approx(
        [p["fraud_probability"] for p in singles], rel=1e-9
    )
    strip = [{k: v for k, v in p.items() if k != "fraud_probability"} for p in singles]
    assert [{k: v for k, v in p.items() if k != "fraud_probability"} for p in body["predictions"]] == strip


def test_infer_on_the_raw_rows_equals_the_champion(scoring_service: Any, reference: dict[str, Any]) -> None:
    rows: np.ndarray = reference["rows"]
    metadata = httpx.get(f"{scoring_service.url}/v2/models/{MODEL}", timeout=10).json()
    assert metadata["inputs"][0]["shape"] == [-1, len(reference["features"])]
    as_matrix = {
        "id": "parity",
        "inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": _json_floats(rows)}],
    }
    per_feature = {
        "inputs": [
            {"name": name, "shape": [rows.shape[0]], "datatype": "FP64", "data": _json_floats(rows[:, j])}
            for j, name in enumerate(reference["features"])
        ]
    }

    with httpx.Client(base_url=scoring_service.url, timeout=10) as client:
        responses = [client.post(f"/v2/models/{MODEL}/infer", json=body) for body in (as_matrix, per_feature)]

    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == reference["version"]
        assert body["outputs"][0]["shape"] == [rows.shape[0]]
        assert body["outputs"][0]["data"] == pytest.approx(reference["probabilities"], rel=1e-9)
    assert responses[0].json()["id"] == "parity"
