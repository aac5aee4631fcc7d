"""serving/schemas.py: the scoring API's request model derives from the data contract."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mlops_recipes.contract import demo_contract, parse_contract
from serving.schemas import batch_model, transaction_model

pytestmark = pytest.mark.unit


def test_the_demo_contract_gives_the_demo_request() -> None:
    model = transaction_model(demo_contract())
    schema = model.model_json_schema()
    assert set(schema["required"]) == {"customer_id", "merchant_id", "amount", "channel"}
    assert schema["properties"]["channel"]["enum"] == ["pos", "online", "atm"]
    assert schema["properties"]["customer_id"]["type"] == "integer"
    (example,) = schema["examples"]
    assert model.model_validate(example).customer_id == 42  # type: ignore[attr-defined]


def test_a_users_contract_gives_its_ids_enums_and_optional_fields(other_contract_text: str) -> None:
    raw: dict[str, Any] = yaml.safe_load(other_contract_text)
    raw["numeric"] = {"distance_km": {"min": 0.0, "optional": True}, "items": {"min": 1.0}}
    raw["categorical"]["country"]["open"] = True
    model = transaction_model(parse_contract(raw))
    schema = model.model_json_schema()

    assert schema["properties"]["customer_id"]["type"] == "string"
    assert schema["properties"]["channel"]["enum"] == ["pos", "ecom", "atm"]
    assert "enum" not in schema["properties"]["country"]  # open: any value, encoded as unseen
    assert "distance_km" not in schema["required"]
    assert "items" in schema["required"]
    body = {"customer_id": "00000742", "merchant_id": "S-001", "amount": 10.0, "channel": "ecom"}
    body |= {"country": "PT", "merchant_category": "5411", "items": 2}
    parsed = model.model_validate(body)
    assert parsed.customer_id == "00000742"  # type: ignore[attr-defined]
    assert parsed.distance_km is None  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as info:
        model.model_validate(body | {"customer_id": 742, "channel": "online", "items": 0})
    assert {error["loc"][0] for error in info.value.errors()} == {"customer_id", "channel", "items"}
    (example,) = schema["examples"]
    model.model_validate(example)
    batch = batch_model(model).model_validate({"transactions": [body]})
    assert batch.transactions[0].customer_id == "00000742"  # type: ignore[attr-defined]
