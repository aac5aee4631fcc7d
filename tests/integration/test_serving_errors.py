"""Bad requests get the 4xx a client can act on, never a 5xx: validation, limits, API key, unknown names.

Most tests use the shared ``scoring_service`` (SERVING_MAX_BATCH=8, SERVING_MAX_BODY_BYTES=16384); the API key
needs a service of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlops_recipes.views.customer_stats import VIEW as CUSTOMER_VIEW

pytestmark = pytest.mark.integration

MODEL = "fraud-detector"
VALID = {"customer_id": 1, "merchant_id": 1, "amount": 25.0, "channel": "pos"}
API_KEY = "test-key-0123456789abcdef"
FEEDBACK_KEY = "test-labels-key-0123456789"


@pytest.fixture
def client(scoring_service: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scoring_service.url, timeout=10) as http:
        yield http


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"customer_id": 1, "merchant_id": 1, "amount": 25.0}, id="missing-channel"),
        pytest.param({"customer_id": 1}, id="missing-fields"),
        pytest.param({**VALID, "amount": 0}, id="zero-amount"),
        pytest.param({**VALID, "amount": -5.0}, id="negative-amount"),
        pytest.param({**VALID, "amount": "lots"}, id="amount-not-a-number"),
        pytest.param({**VALID, "channel": "carrier-pigeon"}, id="unknown-channel"),
        pytest.param({**VALID, "customer_id": -1}, id="negative-customer"),
        pytest.param({**VALID, "merchant_id": -1}, id="negative-merchant"),
        pytest.param({**VALID, "event_timestamp": "yesterday"}, id="bad-timestamp"),
        pytest.param({**VALID, "event_timestamp": 0}, id="timestamp-as-a-number"),
        pytest.param({**VALID, "event_timestamp": "2026-11-30T10:00:00"}, id="timestamp-without-offset"),
        pytest.param({**VALID, "event_timestamp": "1970-01-02T00:00:00Z"}, id="timestamp-from-1970"),
        pytest.param({**VALID, "event_timestamp": "2099-01-01T00:00:00Z"}, id="timestamp-from-2099"),
        pytest.param({**VALID, "customer_id": 2**53}, id="customer-over-the-maximum"),
        pytest.param({**VALID, "customer_id": True}, id="customer-as-a-boolean"),
        pytest.param({**VALID, "coupon": "FREE"}, id="extra-field"),
        pytest.param([VALID], id="list-not-object"),
    ],
)
def test_invalid_transactions_are_422(client: httpx.Client, body: Any) -> None:
    response = client.post("/predict", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_ids_at_the_documented_maximum_are_scored(client: httpx.Client) -> None:
    response = client.post("/predict", json={**VALID, "customer_id": 2**53 - 1, "merchant_id": 2**53 - 1})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("label", [0, 1, "true", None])
def test_a_label_is_a_json_boolean(client: httpx.Client, label: Any) -> None:
    response = client.post("/feedback", json={"labels": [{"transaction_id": "tx-1", "is_fraud": label}]})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "labels", 0, "is_fraud"]


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post("/predict", content=b'{"customer_id": 1,', headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="curl-d-form"),
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({}, id="no-content-type"),
    ],
)
def test_json_without_json_content_type_is_422(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post("/predict", content=httpx.Request("POST", "/", json=VALID).content, headers=headers)

    assert response.status_code == 422, response.text


def test_batch_over_the_limit_is_422(client: httpx.Client) -> None:
    response = client.post("/predict/batch", json={"transactions": [VALID] * 9})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "transactions"]
    assert "exceed the limit of 8" in response.json()["detail"][0]["msg"]
    assert client.post("/predict/batch", json={"transactions": []}).status_code == 422
    assert client.post("/predict/batch", json={"transactions": [VALID] * 8}).status_code == 200


def test_body_over_the_limit_is_413_declared_or_streamed(client: httpx.Client) -> None:
    big = httpx.Request("POST", "/", json={"transactions": [VALID] * 400}).content
    assert len(big) > 16384

    declared = client.post("/predict/batch", content=big, headers={"Content-Type": "application/json"})
    streamed = client.post(  # chunked: no Content-Length, the limit applies while reading
        "/predict/batch",
        content=(big[i : i + 4096] for i in range(0, len(big), 4096)),
        headers={"Content-Type": "application/json"},
    )

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": "request body exceeds 16384 bytes"}
    assert "content-length" not in streamed.request.headers


def test_unknown_customer_is_scored_with_every_customer_feature_missing(
    client: httpx.Client, scoring_service: Any, scrape: Any
) -> None:
    before = scrape(scoring_service).value("unknown_entities_total", entity="customer")

    response = client.post("/predict", json={**VALID, "customer_id": 10**12})

    assert response.status_code == 200, response.text
    assert response.json()["missing_features"] == list(CUSTOMER_VIEW.names)
    after = scrape(scoring_service)
    assert after.value("unknown_entities_total", entity="customer") == before + 1
    assert after.value("missing_features_total", feature="cust_amount_mean_30d") >= 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v2/models/not-{MODEL}"),
        ("GET", f"/v2/models/not-{MODEL}/ready"),
        ("POST", f"/v2/models/not-{MODEL}/infer"),
    ],
)
def test_unknown_model_name_is_404(client: httpx.Client, method: str, path: str) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}]}

    response = client.request(method, path, json=body if method == "POST" else None)

    assert response.status_code == 404, response.text
    assert MODEL in response.json()["error"]  # the Open Inference Protocol's error shape


@pytest.mark.parametrize(
    "tensor",
    [
        pytest.param({"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}, id="3-cols"),
        pytest.param({"name": "input-0", "shape": [2, 21], "datatype": "FP64", "data": [1.0] * 21}, id="short-data"),
        pytest.param({"name": "input-0", "shape": [0, 21], "datatype": "FP64", "data": []}, id="no-rows"),
        pytest.param({"name": "input-0", "shape": [9, 21], "datatype": "FP64", "data": [0.0] * 189}, id="over-batch"),
        pytest.param({"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}, id="missing-tensors"),
        pytest.param({"name": "input-0", "shape": [1, 2, 3], "datatype": "FP64", "data": [0.0] * 6}, id="3-dims"),
    ],
)
def test_infer_with_a_wrong_tensor_is_400_in_the_protocol_error_shape(
    client: httpx.Client, tensor: dict[str, Any]
) -> None:
    response = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})

    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


def test_api_keys_guard_the_scoring_routes_and_the_labels_apart(
    trained_project: Any, start_isolated_service: Any, scrape: Any
) -> None:
    service = start_isolated_service(
        trained_project, env={"SERVING_API_KEY": API_KEY, "SERVING_FEEDBACK_API_KEY": FEEDBACK_KEY}
    )
    service.wait_ready()
    infer = {"inputs": [{"name": "input-0", "shape": [1, 21], "datatype": "FP64", "data": [None] * 21}]}
    scoring = [
        ("/predict", VALID),
        ("/predict/batch", {"transactions": [VALID]}),
        (f"/v2/models/{MODEL}/infer", infer),
    ]

    with httpx.Client(base_url=service.url, timeout=10) as http:
        for path, body in scoring:
            missing = http.post(path, json=body)
            wrong = http.post(path, json=body, headers={"X-API-Key": API_KEY[:-1] + "X"})
            right = http.post(path, json=body, headers={"X-API-Key": API_KEY})
            assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200), path
            key = "error" if path.startswith("/v2") else "detail"  # the Open Inference Protocol's error shape
            assert missing.json() == {key: "missing or invalid X-API-Key"}
        # Labels take their own key only: a scoring client cannot send them, a labelling job cannot score.
        labels = {"labels": [{"transaction_id": "t-1", "is_fraud": True}]}
        feedback = [
            http.post("/feedback", json=labels, headers=headers).status_code
            for headers in ({}, {"X-API-Key": API_KEY}, {"X-API-Key": FEEDBACK_KEY})
        ]
        assert feedback == [401, 401, 200]
        assert http.post("/predict", json=VALID, headers={"X-API-Key": FEEDBACK_KEY}).status_code == 401
        refusals = scrape(service)
        assert refusals.value("api_key_refusals_total", route="/feedback") == 2
        assert refusals.value("api_key_refusals_total", route="/predict") == 3
        assert refusals.value("api_key_refusals_total", route="/predict/batch") == 2
        # Probes, metadata and metrics stay open: orchestrators and scrapers hold no key.
        for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready"):
            assert http.get(path).status_code == 200, path
        assert http.get("/metrics").status_code == 200
        assert http.get("/openapi.json").status_code == 200


def test_a_weak_api_key_is_refused_at_start(trained_project: Any, start_isolated_service: Any) -> None:
    service = start_isolated_service(trained_project, env={"SERVING_API_KEY": "short"})

    returncode = service.process.wait(60)

    assert returncode != 0
    assert "SERVING_API_KEY must be at least 16 characters" in service.logs()
