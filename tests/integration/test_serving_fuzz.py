"""Hostile bytes to every route of a real server: never a 5xx, and non-finite numbers are refused by field name.

schemathesis generates standard JSON only; what Python's ``json.loads`` accepts beyond it (``NaN``,
``Infinity``, ``1e400``), undecodable bytes, lone surrogates, huge numbers, deep nesting and odd content types
are sent here as raw bytes (see PITFALLS: the default 422 handler answered 500 to 34 of 56 such bodies).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "fraud-detector"
TRANSACTION = '{"customer_id": 1, "merchant_id": 1, "amount": 25.0, "channel": "pos"}'


def tensor(values: str) -> str:
    """An infer body: one [1, 21] tensor with ``values`` (JSON text)."""
    return '{"inputs": [{"name": "input-0", "shape": [1, 21], "datatype": "FP64", "data": [' + values + "]}]}"


VALID_BODIES = {
    "/predict": TRANSACTION,
    "/predict/batch": '{"transactions": [' + TRANSACTION + "]}",
    "/feedback": '{"labels": [{"transaction_id": "tx-1", "is_fraud": true}]}',
    f"/v2/models/{MODEL}/infer": tensor(", ".join(["1.0"] * 21)),
    f"/v2/models/{MODEL}/versions/1/infer": tensor(", ".join(["1.0"] * 21)),
}
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
# Numeric fields of each body: where a non-finite number must be refused by name.
NUMERIC = {
    "/predict": [("25.0", ["body", "amount"]), ('"customer_id": 1', ["body", "customer_id"])],
    "/predict/batch": [("25.0", ["body", "transactions", 0, "amount"])],
    "/feedback": [("true", ["body", "labels", 0, "is_fraud"])],
}
GET_ROUTES = [
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    f"/v2/models/{MODEL}",
    f"/v2/models/{MODEL}/ready",
    f"/v2/models/{MODEL}/versions/1",
    f"/v2/models/{MODEL}/versions/1/ready",
    "/v2/models/%ff%fe/ready",
    "/v2/models/%ED%A0%80",
    "/metrics",
    "/openapi.json",
]
CONTENT_TYPES = [
    {"Content-Type": "application/json"},
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "multipart/form-data; boundary=xyz"},
    {"Content-Type": "application/octet-stream"},
    {"Content-Type": "application/json; charset=utf-16"},
    {},
]


def hostile_bodies(valid: str) -> list[bytes]:
    """The route's valid body made hostile in every way we know, plus generic garbage."""
    bodies = [
        valid.replace("1.0", value, 1).replace("25.0", value, 1).replace("true", value, 1).encode()
        for value in NON_FINITE
    ]
    bodies += [
        valid[:-1].encode() + b', "extra": NaN}',  # NaN in a field the schema does not have
        valid.replace('"pos"', '"\xff\xfe"').encode("latin-1"),  # invalid UTF-8 inside a string
        valid.replace('"pos"', '"\\ud800"').replace('"tx-1"', '"\\udfff"').encode(),  # lone surrogates
        b"\xff\xfe\x00{",  # not text at all
        valid.replace("25.0", "1" + "0" * 5000).replace("1.0", "9" * 5000, 1).encode(),  # > int digit limit
        valid.replace("25.0", "1e-400").encode(),
        b"[" * 5000 + b"]" * 5000,  # nesting deeper than the parser's recursion limit
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"",
        b"null",
        b"[]",
        b'"a string"',
        valid[: len(valid) // 2].encode(),
        b"\x00" * 64,
    ]
    return bodies


@pytest.fixture
def client(scoring_service: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scoring_service.url, timeout=30) as http:
        yield http


def test_no_hostile_body_gets_a_server_error(client: httpx.Client, scoring_service: Any, scrape: Any) -> None:
    before = scrape(scoring_service).value("http_requests_total", status="5xx")
    answers: list[tuple[str, int, str, bytes]] = []
    for route, valid in VALID_BODIES.items():
        for body in hostile_bodies(valid):
            for headers in CONTENT_TYPES:
                response = client.post(route, content=body, headers=headers)
                answers.append((route, response.status_code, response.text, body[:80]))
    for route in GET_ROUTES:
        for body in (b"", b"NaN", b"\xff"):
            response = client.request("GET", route, content=body)
            answers.append((route, response.status_code, response.text, body))

    server_errors = [(route, status, text[:200], body) for route, status, text, body in answers if status >= 500]
    assert server_errors == [], f"{len(server_errors)} of {len(answers)} answered 5xx: {server_errors[:5]}"
    assert len(answers) > 500
    assert scrape(scoring_service).value("http_requests_total", status="5xx") == before
    # Every error body is JSON in its API's shape: the protocol's {"error"} under /v2, {"detail"} elsewhere.
    for route, status, text, body in answers:
        if status >= 400:
            key = "error" if route.startswith("/v2") else "detail"
            assert key in json.loads(text), (route, status, text[:200], body)


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("route", list(NUMERIC))
def test_non_finite_numbers_are_422_naming_the_field(client: httpx.Client, route: str, value: str) -> None:
    for placeholder, loc in NUMERIC[route]:
        target = value if placeholder[0] != '"' else placeholder.rsplit(" ", 1)[0] + f" {value}"
        body = VALID_BODIES[route].replace(placeholder, target, 1)

        response = client.post(route, content=body.encode(), headers={"Content-Type": "application/json"})

        assert response.status_code == 422, (body, response.text)
        assert [error["loc"] for error in response.json()["detail"]] == [loc], response.text


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_numbers_in_infer_are_400_in_the_protocol_shape(client: httpx.Client, value: str) -> None:
    body = tensor(", ".join([value] + ["1.0"] * 20))

    response = client.post(f"/v2/models/{MODEL}/infer", content=body.encode())

    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "non-finite" in message or "overflows" in message


def test_a_nan_in_an_unrelated_field_is_still_rendered(client: httpx.Client) -> None:
    body = TRANSACTION[:-1] + ', "coupon": NaN}'

    response = client.post("/predict", content=body.encode(), headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"type": "extra_forbidden", "loc": ["body", "coupon"], "msg": "Extra inputs are not permitted", "input": "nan"}
    ]
