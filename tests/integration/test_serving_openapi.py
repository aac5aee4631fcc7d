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
    assert {"400", "401", "413", "422", "503", "504"} <= predict["responses"].keys()
    # The protocol's routes answer its own error shape, never FastAPI's 422.
    for path, operations in spec["paths"].items():
        if path.startswith("/v2/models"):
            for operation in operations.values():
                assert "422" not in operation["responses"], path
                assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ProtocolErrorBody"
                }, path
    assert {"Transaction", "Prediction", "BatchRequest", "BatchResponse", "InferRequest", "Problem"} <= schemas.keys()
    assert schemas["BatchRequest"]["properties"]["transactions"]["maxItems"] == 8  # SERVING_MAX_BATCH
    assert set(schemas["Transaction"]["required"]) == {"customer_id", "merchant_id", "amount", "channel"}
    assert schemas["Transaction"]["properties"]["channel"]["enum"] == ["pos", "online", "atm"]
    examples = schemas["Transaction"]["examples"]
    assert examples == [{"customer_id": 42, "merchant_id": 7, "amount": 129.9, "channel": "online"}]
    # The example a reader copies from the page scores as documented.
    scored = httpx.post(scoring_service.url + "/predict", json=examples[0], timeout=10)
    assert scored.status_code == 200, scored.text
    assert set(scored.json()) == set(schemas["Prediction"]["properties"])


# What the schema cannot say, stated per check (each with its reason):
# - 413: the body-size limit (SERVING_MAX_BODY_BYTES) applies before the body is read, valid or not;
# - 400 to a schema-valid infer body: the protocol's request schema is generic, a tensor's shape is checked against
#   the model's metadata (GET /v2/models/{name}) at run time, as the protocol specifies.
SCHEMATHESIS_CONFIG = """
hooks = "{hooks}"

[parameters]
"path.model_name" = "fraud-detector"
"path.model_version" = "{version}"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "404", "413", "429", "503"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "404", "405", "406", "413", "415", "422"]

[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "413", "503"]
"""


def test_schemathesis_finds_no_failure_with_all_checks(scoring_service: Any, tmp_path: Path) -> None:
    served = httpx.get(scoring_service.url + "/v2/models/fraud-detector", timeout=10).json()["versions"][0]
    config = tmp_path / "schemathesis.toml"
    hooks = Path(__file__).with_name("schemathesis_hooks.py")
    config.write_text(SCHEMATHESIS_CONFIG.format(hooks=hooks, version=served))

    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            scoring_service.url + "/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "50",
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
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]
