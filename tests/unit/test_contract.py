"""contract.py, core/conform.py, core/infer.py: the data contract, ingest by contract, and drafting one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_recipes.cli import main
from mlops_recipes.contract import (
    ACCOUNT_CREATED,
    CUSTOMER,
    EVENT_TIME,
    LABEL,
    MERCHANT,
    TRANSACTION_ID,
    Contract,
    ContractError,
    demo_contract,
    json_schema,
    load_contract,
    parse_contract,
)
from mlops_recipes.core.conform import ContractMismatchError, conform
from mlops_recipes.core.infer import draft_contract
from mlops_recipes.core.request_features import model_features, request_features, stored_features
from mlops_recipes.core.schema import DataValidationError, validate_transactions
from mlops_recipes.io.files import read_table
from mlops_recipes.params import ValidateParams

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOSE = ValidateParams(min_rows=10, min_fraud_rate=0.0, max_fraud_rate=1.0)


@pytest.fixture
def other(other_contract_text: str) -> Contract:
    return parse_contract(yaml.safe_load(other_contract_text))


@pytest.fixture
def other_csv(
    tmp_path: Path, small_generated: pd.DataFrame, other_shaped: Callable[[pd.DataFrame], pd.DataFrame]
) -> Path:
    path = tmp_path / "export.csv"
    other_shaped(small_generated).to_csv(path, index=False)
    return path


# --- the contract file ----------------------------------------------------------------------------------------


def test_the_repository_contract_is_the_demo() -> None:
    assert load_contract(REPO_ROOT / "contract.yaml") == demo_contract()


def test_every_bad_key_is_named_at_once() -> None:
    raw = yaml.safe_load((REPO_ROOT / "contract.yaml").read_text())
    raw["columns"]["customer"]["type"] = "str"
    raw["columns"]["event_time"]["timezone"] = "Mars/Olympus"
    raw["categorical"]["channel"]["values"] = ["pos", "pos", "atm"]
    raw["colums"] = {}
    with pytest.raises(ContractError) as info:
        parse_contract(raw)
    message = str(info.value)
    for key in ("columns.customer.type", "columns.event_time.timezone", "categorical.channel.values", "colums"):
        assert key in message, message


def test_a_missing_role_says_how_to_declare_it_absent() -> None:
    raw = yaml.safe_load((REPO_ROOT / "contract.yaml").read_text())
    del raw["columns"]["account_created"]
    with pytest.raises(ContractError, match=r"columns.account_created: required \(write `null`"):
        parse_contract(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw["columns"]["merchant"].update(source="customer_id"), "mapped twice"),
        (lambda raw: raw.update(ignore=["amount"]), "also mapped"),
        (lambda raw: raw.update(numeric={"customer_id": {}}), "taken by a role column"),
    ],
    ids=["source-mapped-twice", "ignored-and-mapped", "field-named-like-a-role"],
)
def test_inconsistent_contracts_are_refused(change: Callable[[dict[str, Any]], None], message: str) -> None:
    raw = yaml.safe_load((REPO_ROOT / "contract.yaml").read_text())
    change(raw)
    with pytest.raises(ContractError, match=message):
        parse_contract(raw)


def test_json_schema_describes_the_roles() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert "columns" in schema["required"]


def test_cli_check_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "check", str(REPO_ROOT / "contract.yaml")]) == 0
    assert "valid contract" in capsys.readouterr().out
    bad = tmp_path / "contract.yaml"
    bad.write_text((REPO_ROOT / "contract.yaml").read_text().replace("type: int", "type: integer", 1))
    assert main(["contract", "check", str(bad)]) == 1
    assert "columns.transaction_id.type" in capsys.readouterr().err


# --- ingest by contract ---------------------------------------------------------------------------------------


def test_demo_data_conforms_unchanged(small_generated: pd.DataFrame) -> None:
    frame, report = conform(small_generated, demo_contract())
    pd.testing.assert_frame_equal(frame, small_generated[frame.columns.tolist()])
    assert not report.unparsed


def test_a_differently_shaped_csv_conforms(other_csv: Path, other: Contract, small_generated: pd.DataFrame) -> None:
    frame, report = conform(read_table(other_csv), other)

    assert not report.unparsed
    assert ACCOUNT_CREATED not in frame.columns
    assert {"note", "batch_no", "ts"}.isdisjoint(frame.columns)
    assert frame[CUSTOMER].iloc[0] == f"{small_generated[CUSTOMER].iloc[0]:08d}"  # the leading zeros survive
    assert frame[CUSTOMER].str.startswith("0").all()
    pd.testing.assert_series_equal(frame[EVENT_TIME], small_generated[EVENT_TIME], check_names=False)
    assert str(frame[EVENT_TIME].dtype) == "datetime64[ns, UTC]"
    assert set(frame["channel"]) == {"pos", "ecom", "atm"}
    valid, _ = validate_transactions(frame, LOOSE, other)
    assert len(valid) == len(small_generated)


def test_derived_transaction_ids_are_deterministic_and_unique(other_csv: Path, other: Contract) -> None:
    source = read_table(other_csv)
    first, _ = conform(source, other)
    again, _ = conform(source.iloc[::-1].reset_index(drop=True), other)
    assert first[TRANSACTION_ID].is_unique
    assert set(first[TRANSACTION_ID]) == set(again[TRANSACTION_ID])


def test_every_missing_and_undeclared_column_is_reported_at_once(other_csv: Path, other: Contract) -> None:
    source = read_table(other_csv).drop(columns=["ts", "shop", "chargeback", "country_code", "mcc", "chan"])
    with pytest.raises(ContractMismatchError) as info:
        conform(source.assign(extra=1), other)
    message = str(info.value)
    for key in (
        "columns.event_time",
        "columns.merchant",
        "columns.label",
        "categorical.country",
        "categorical.merchant_category",
        "categorical.channel",
    ):
        assert f"{key}: source column" in message, message
    assert "ignore: columns ['extra']" in message


def test_unparseable_values_are_counted_then_named_by_row(other_csv: Path, other: Contract) -> None:
    source = read_table(other_csv)
    source.loc[3, "ts"] = "03/01/2024 10:00"
    source.loc[5, "value_eur"] = "12,50"
    frame, report = conform(source, other)
    assert report.unparsed["columns.event_time"]["examples"] == ["03/01/2024 10:00"]
    assert report.unparsed["columns.amount"]["examples"] == ["12,50"]
    with pytest.raises(DataValidationError) as info:
        validate_transactions(frame, LOOSE, other)
    by_column = {f["column"]: f for f in info.value.failures}
    assert by_column[EVENT_TIME]["rows"] == [3]
    assert "columns.event_time.format" in by_column[EVENT_TIME]["key"]
    assert by_column["amount"]["rows"] == [5]


def test_schema_reports_every_missing_column_in_one_failure(small_generated: pd.DataFrame) -> None:
    frame = small_generated.drop(columns=[CUSTOMER, MERCHANT, "channel", LABEL])
    with pytest.raises(DataValidationError) as info:
        validate_transactions(frame, LOOSE, demo_contract())
    (failure,) = info.value.failures
    assert failure["examples"] == [CUSTOMER, MERCHANT, "channel", LABEL]
    assert "columns.customer" in str(info.value)
    assert "categorical.channel" in str(info.value)
    assert "rows [None]" not in str(info.value)


def test_values_outside_a_domain_name_the_contract_key(other_csv: Path, other: Contract) -> None:
    source = read_table(other_csv)
    source.loc[2, "country_code"] = "XX"
    frame, _ = conform(source, other)
    with pytest.raises(DataValidationError, match=r"categorical.country.values \(or categorical.country.open"):
        validate_transactions(frame, LOOSE, other)


# --- what derives from it -------------------------------------------------------------------------------------


def test_without_an_account_creation_date_account_features_are_left_out(other: Contract) -> None:
    assert "cust_account_created_ts" not in stored_features(other)
    assert "account_age_days" not in model_features(other)
    assert "account_age_days" in model_features(demo_contract())


def test_declared_categoricals_become_model_inputs(other: Contract) -> None:
    features = model_features(other)
    assert {"channel_ecom", "channel_atm", "country", "merchant_category"} <= set(features)
    columns: dict[str, Any] = {name: np.array([1.0, 1.0]) for name in stored_features(other)}
    columns |= {
        "amount": np.array([10.0, 20.0]),
        EVENT_TIME: np.array([0.0, 3600.0]),
        "channel": np.array(["ecom", "pos"]),
        "country": np.array(["IT", "FR"]),
        "merchant_category": np.array(["4829", "5411"]),
    }
    out = request_features(columns, other)
    assert out["channel_ecom"].tolist() == [1.0, 0.0]
    assert out["country"].tolist() == [3.0, 0.0]  # position in the declared domain
    assert out["merchant_category"].tolist() == [4.0, 0.0]


def test_an_open_categorical_encodes_unseen_values_as_missing(other: Contract) -> None:
    spec = other.categorical["country"].model_copy(update={"open": True})
    contract = other.model_copy(update={"categorical": {**other.categorical, "country": spec}})
    columns: dict[str, Any] = {name: np.array([1.0]) for name in stored_features(contract)}
    columns |= {"amount": np.array([1.0]), EVENT_TIME: np.array([0.0]), "channel": np.array(["pos"])}
    columns |= {"country": np.array(["PT"]), "merchant_category": np.array(["5411"])}
    assert np.isnan(request_features(columns, contract)["country"][0])
    with pytest.raises(ValueError, match="country must be one of"):
        request_features(columns, other)


# --- drafting a contract --------------------------------------------------------------------------------------


def test_infer_drafts_a_contract_that_needs_only_review(other_csv: Path, other: Contract) -> None:
    draft = parse_contract(yaml.safe_load(draft_contract(read_table(other_csv))))

    assert draft.columns == other.columns
    assert draft.categorical["chan"].values[0] in {"pos", "ecom", "atm"}
    assert set(draft.categorical["chan"].values) == {"pos", "ecom", "atm"}
    assert set(draft.categorical["country_code"].values) == set(other.categorical["country"].values)
    assert set(draft.categorical["mcc"].values) == set(other.categorical["merchant_category"].values)
    assert set(draft.ignore) == {"note", "batch_no"}
    # Unedited, the draft already ingests and validates the file.
    frame, report = conform(read_table(other_csv), draft)
    assert not report.unparsed
    validate_transactions(frame, LOOSE, draft)


def test_infer_on_the_demo_data_finds_its_roles(tmp_path: Path, small_generated: pd.DataFrame) -> None:
    path = tmp_path / "demo.parquet"
    small_generated.to_parquet(path)
    draft = parse_contract(yaml.safe_load(draft_contract(read_table(path))))
    assert draft.columns == demo_contract().columns
    assert set(draft.categorical["channel"].values) == {"pos", "online", "atm"}


def test_a_declared_numeric_field_becomes_a_model_input(other: Contract) -> None:
    contract = other.model_copy(update={"numeric": {"distance_km": parse_numeric({"min": 0.0, "optional": True})}})
    assert model_features(contract)[-1] == "distance_km"
    assert "distance_km" in contract.request_fields
    columns: dict[str, Any] = {name: np.array([1.0, 1.0]) for name in stored_features(contract)}
    columns |= {"amount": np.array([1.0, 2.0]), EVENT_TIME: np.array([0.0, 1.0]), "channel": np.array(["pos"] * 2)}
    columns |= {"country": np.array(["FR"] * 2), "merchant_category": np.array(["5411"] * 2)}
    columns["distance_km"] = np.array([12.5, np.nan])
    out = request_features(columns, contract)["distance_km"]
    assert out[0] == 12.5
    assert np.isnan(out[1])


def parse_numeric(raw: dict[str, Any]) -> Any:
    from mlops_recipes.contract import Numeric

    return Numeric.model_validate(raw)
