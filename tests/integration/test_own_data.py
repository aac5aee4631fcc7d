"""A user's own data, shaped differently from the demo, through every stage and the service by contract only.

The file (built by the ``other_shaped`` fixture, never committed) has string card ids with leading zeros,
other column names, ISO-8601 times with offsets, channel values ``pos|ecom|atm``, no transaction id, no
account-creation date, a country and a merchant-category column and two columns to ignore. The user changes
``contract.yaml`` and ``params.yaml`` and drops the file into ``incoming/``: no code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from mlops_recipes.core.generator import generate_transactions
from mlops_recipes.io.customer_events import SqliteEventLog
from mlops_recipes.params import DataParams

pytestmark = pytest.mark.integration

FILE = "incoming/export.csv"


@pytest.fixture(scope="module")
def own_data_project(
    project_factory: Callable[[str, dict[str, Any]], Any],
    other_shaped: Callable[[pd.DataFrame], pd.DataFrame],
    other_contract_text: str,
) -> Any:
    project = project_factory("own-data", {})
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    export = other_shaped(generate_transactions(DataParams.model_validate(params["data"])))
    export.to_csv(project.root / FILE, index=False)
    # What the user edits: the contract, and two lines of params.
    (project.root / "contract.yaml").write_text(other_contract_text)
    params["data"] |= {"source": "file", "path": FILE}
    (project.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    project.run("dvc", "repro")
    return project


def test_only_the_contract_and_params_changed(own_data_project: Any) -> None:
    edited = set(own_data_project.run("git", "diff", "--name-only").stdout.split())
    assert edited <= {"contract.yaml", "params.yaml", ".gitignore"}, edited  # DVC may add its outputs to .gitignore
    assert {"contract.yaml", "params.yaml"} <= edited
    diff = own_data_project.run("git", "diff", "--numstat", "params.yaml").stdout.split()
    assert diff[:2] == ["2", "2"], diff  # data.source and data.path


def test_every_stage_ran_on_the_contract(own_data_project: Any) -> None:
    root = own_data_project.root
    validated = pd.read_parquet(root / "data/validated/transactions.parquet")
    assert validated["customer_id"].str.len().eq(8).all()  # string ids, leading zeros kept
    assert validated["transaction_id"].is_unique  # derived from a hash of each row
    assert set(validated["channel"]) == {"pos", "ecom", "atm"}
    assert "account_created_at" not in validated.columns
    assert {"note", "batch_no"}.isdisjoint(validated.columns)

    trained = yaml.safe_load((root / "artifacts/train_run.json").read_text())
    assert {"channel_ecom", "channel_atm", "country", "merchant_category"} <= set(trained["features"])
    assert "account_age_days" not in trained["features"]
    promotion = yaml.safe_load((root / "reports/promotion.json").read_text())
    assert promotion["decision"]["promote"], promotion["decision"]
    assert "register.min_skill" in " ".join(promotion["decision"]["reasons"])


def test_the_service_takes_the_contract_shape(own_data_project: Any, start_service: Any) -> None:
    validated = pd.read_parquet(own_data_project.root / "data/validated/transactions.parquet")
    known = validated.iloc[-1]
    service = start_service(own_data_project)
    service.wait_ready()

    schema = httpx.get(service.url + "/openapi.json", timeout=10).json()["components"]["schemas"]["Transaction"]
    assert schema["properties"]["customer_id"]["type"] == "string"
    assert schema["properties"]["channel"]["enum"] == ["pos", "ecom", "atm"]
    assert schema["properties"]["country"]["enum"] == ["FR", "DE", "ES", "IT", "NL"]
    body = {
        "customer_id": known["customer_id"],
        "merchant_id": known["merchant_id"],
        "amount": 42.0,
        "channel": "ecom",
        "country": "FR",
        "merchant_category": "5411",
    }
    scored = httpx.post(service.url + "/predict", json=body | {"transaction_id": "own-1"}, timeout=10)
    assert scored.status_code == 200, scored.text
    assert "cust_txn_count_7d" not in scored.json()["missing_features"]  # the string key found its features

    # String ids and no account date: the customer event log holds them too, so each scored transaction is
    # counted in its customer's online row (leading zeros kept; a retry counted once).
    features_report = json.loads((own_data_project.root / "reports" / "features.json").read_text())
    assert features_report["customer_event_log"]["events"] > 0, features_report["customer_event_log"]
    again = httpx.post(service.url + "/predict", json=body | {"transaction_id": "own-1"}, timeout=10)
    assert again.status_code == 200, again.text
    metrics = httpx.get(service.url + "/metrics", timeout=10).text
    assert 'customer_feature_updates_total{outcome="counted"} 1.0' in metrics
    assert 'customer_feature_updates_total{outcome="duplicate"} 1.0' in metrics
    log = SqliteEventLog(own_data_project.root / "data" / "feast" / "customer_events.db")
    assert "own-1" in log.history(known["customer_id"])[0]  # under the key as sent, leading zeros and all

    refused = httpx.post(service.url + "/predict", json=body | {"channel": "online", "customer_id": 7}, timeout=10)
    assert refused.status_code == 422
    assert {tuple(error["loc"]) for error in refused.json()["detail"]} == {("body", "channel"), ("body", "customer_id")}


def test_batch_scoring_reads_the_users_file(own_data_project: Any) -> None:
    from mlops_recipes.settings import Settings
    from mlops_recipes.stages import batch_score

    output = own_data_project.root / "predictions.parquet"
    summary = batch_score.run(
        Settings(project_root=own_data_project.root), output=output, source=own_data_project.root / FILE
    )
    predictions = pd.read_parquet(output)
    assert summary["rows"] == len(predictions) == len(pd.read_csv(own_data_project.root / FILE))
    assert predictions["customer_id"].str.startswith("0").all()
