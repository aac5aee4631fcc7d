"""params.py: the strict params model and its loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlops_recipes.params import (
    DataParams,
    Params,
    ParamsError,
    ValidateParams,
    json_schema,
    load_params,
    parse_params,
)

pytestmark = pytest.mark.unit

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_defaults_are_valid_and_consistent() -> None:
    params = Params()

    assert params.validate_.min_rows <= params.validate_.max_rows
    assert params.validate_.min_fraud_rate <= params.validate_.max_fraud_rate
    assert params.data.source == "synthetic"
    # The defaults survive a round trip through their own serialized (aliased) form.
    assert parse_params(params.model_dump(by_alias=True)) == params


def test_repo_params_yaml_parses() -> None:
    params = load_params(REPO_PARAMS)

    assert isinstance(params, Params)
    assert params.train.model in {"hist_gradient_boosting", "logistic_regression"}


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("# nothing set\n", encoding="utf-8")

    assert load_params(path) == Params()


def test_yaml_values_are_applied(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("validate:\n  min_rows: 5\nregister:\n  floor: 0.25\n", encoding="utf-8")

    params = load_params(path)

    # The aliased sections ("validate", "register") land on their python-side fields.
    assert params.validate_.min_rows == 5
    assert params.register_.floor == 0.25
    assert params.data == DataParams()


@pytest.mark.parametrize(
    ("raw", "dotted_key"),
    [
        ({"trian": {}}, "trian"),
        ({"train": {"hgb_typo": 1}}, "train.hgb_typo"),
        ({"train": {"hist_gradient_boosting": {"learning_rte": 0.1}}}, "train.hist_gradient_boosting.learning_rte"),
        ({"data": {"drift": {"amount_scael": 2.0}}}, "data.drift.amount_scael"),
    ],
)
def test_unknown_key_is_rejected_by_its_dotted_name(raw: dict[str, Any], dotted_key: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)

    assert f"{dotted_key}:" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "dotted_key"),
    [
        ({"data": {"days": -5}}, "data.days"),
        ({"data": {"n_customers": 0}}, "data.n_customers"),
        ({"data": {"compromised_share": 1.5}}, "data.compromised_share"),
        ({"register": {"floor": 1.01}}, "register.floor"),
        ({"register": {"metric": "accuracy"}}, "register.metric"),
        ({"train": {"model": "xgboost"}}, "train.model"),
        ({"evaluate": {"max_fpr": 0.0}}, "evaluate.max_fpr"),
        ({"features": {"service": "fraud model v1"}}, "features.service"),
    ],
)
def test_bad_value_is_rejected_naming_the_key(raw: dict[str, Any], dotted_key: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)

    assert f"{dotted_key}:" in str(info.value)


def test_file_source_without_path_is_rejected() -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({"data": {"source": "file"}})

    assert "data.path" in str(info.value)
    # With a path, the same source is fine.
    assert parse_params({"data": {"source": "file", "path": "tx.parquet"}}).data.path == "tx.parquet"


def test_min_rows_above_max_rows_is_rejected() -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({"validate": {"min_rows": 10, "max_rows": 5}})

    assert "validate.min_rows" in str(info.value)
    assert "validate.max_rows" in str(info.value)


def test_min_fraud_rate_above_max_fraud_rate_is_rejected() -> None:
    with pytest.raises(ParamsError, match=r"validate\.min_fraud_rate"):
        parse_params({"validate": {"min_fraud_rate": 0.3, "max_fraud_rate": 0.2}})


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({"data": {"days": 1}, "register": {"floor": 2.0}, "split": {"gap_hourz": 1}})

    message = str(info.value)
    for key in ("data.days", "register.floor", "split.gap_hourz"):
        assert key in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_is_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)


def test_invalid_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  seed: [1, 2\n", encoding="utf-8")

    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_params_error_is_a_value_error() -> None:
    # Callers that only know ValueError still catch it.
    assert issubclass(ParamsError, ValueError)


def test_params_are_frozen() -> None:
    params = Params()

    with pytest.raises(ValidationError):
        params.train.seed = 7  # type: ignore[misc]


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValidationError):
        ValidateParams(min_rows=10, max_rows=5)


def test_json_schema_uses_the_yaml_keys() -> None:
    schema = json_schema()

    properties = schema["properties"]
    assert isinstance(properties, dict)
    assert {"validate", "register"} <= set(properties)
    assert not {"validate_", "register_"} & set(properties)
    assert {"data", "features", "split", "train", "evaluate"} <= set(properties)


def test_python_field_names_are_not_accepted_as_keys() -> None:
    with pytest.raises(ParamsError, match="validate_"):
        parse_params({"validate_": {"min_rows": 5}})
