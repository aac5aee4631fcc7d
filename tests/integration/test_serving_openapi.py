"""The OpenAPI page: documented models with a working example, and no generated request ever gets a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_openapi_documents_the_models_with_a_working_example(scoring_service: Any) -> None:
    spec = httpx.get(scoring_service.url + "/openapi.json", timeout=10).json()
    schemas = spec["components"]["schemas"]

    predict = spec["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Transaction"
    }
    assert predict["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Prediction"
    }
    assert {"401", "422", "503", "504"} <= predict["responses"].keys()
    assert {"Transaction", "Prediction", "BatchRequest", "BatchResponse", "InferRequest", "Problem"} <= schemas.keys()
    assert set(schemas["Transaction"]["required"]) == {"customer_id", "merchant_id", "amount", "channel"}
    assert schemas["Transaction"]["properties"]["channel"]["enum"] == ["pos", "online", "atm"]
    examples = schemas["Transaction"]["examples"]
    assert examples == [{"customer_id": 42, "merchant_id": 7, "amount": 129.9, "channel": "online"}]
    # The example a reader copies from the page scores as documented.
    scored = httpx.post(scoring_service.url + "/predict", json=examples[0], timeout=10)
    assert scored.status_code == 200, scored.text
    assert set(scored.json()) == set(schemas["Prediction"]["properties"])


def test_schemathesis_finds_no_server_error(scoring_service: Any, tmp_path: Path) -> None:
    # The served model's name in path parameters, so generated inference requests reach the model.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.model_name" = "fraud-detector"\n')

    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            scoring_service.url + "/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "20261126",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the repository
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
