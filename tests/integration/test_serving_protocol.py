"""The Open Inference Protocol as its reference HTTP client (``tritonclient.http``) uses it, on a real server.

Every call either succeeds or fails with the protocol's error shape, which the client decodes into an
``InferenceServerException`` with the server's message and status. Infer goes through the scoring path of
``/predict``: the same probabilities for the same rows, and the prediction metrics count it. Its answers are
compared field by field with those of MLServer, the protocol's reference server (a recorded transcript:
``oip_transcript.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

MODEL = "fraud-detector"
DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def triton(scoring_service: Any) -> Iterator[Any]:
    import tritonclient.http as http

    client = http.InferenceServerClient(scoring_service.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def metadata(triton: Any) -> dict[str, Any]:
    result: dict[str, Any] = triton.get_model_metadata(MODEL)
    return result


@pytest.fixture(scope="module")
def rows(metadata: dict[str, Any]) -> np.ndarray:
    """Three rows of plausible feature values."""
    width = metadata["inputs"][0]["shape"][1]
    return np.random.default_rng(7).uniform(0, 3, size=(3, width))


def _input(name: str, values: np.ndarray, *, binary: bool) -> Any:
    import tritonclient.http as http

    tensor = http.InferInput(name, list(values.shape), "FP64")
    tensor.set_data_from_numpy(values, binary_data=binary)
    return tensor


def _expected(scoring_service: Any, rows: np.ndarray) -> list[float]:
    """What the service returns for the same rows as plain JSON (null for the missing value)."""
    data = [None if np.isnan(v) else float(v) for v in rows.ravel()]
    body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": data}]}
    response = httpx.post(
        f"{scoring_service.url}/v2/models/{MODEL}/infer",
        json=body,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    probabilities: list[float] = response.json()["outputs"][0]["data"]
    return probabilities


def test_server_metadata_health_and_model_readiness(triton: Any, metadata: dict[str, Any]) -> None:
    server = triton.get_server_metadata()

    assert server["name"] == "mlops-recipes"
    assert "binary_tensor_data" in server["extensions"]
    assert triton.is_server_live()
    assert triton.is_server_ready()
    version = metadata["versions"][0]
    assert triton.is_model_ready(MODEL)
    assert triton.is_model_ready(MODEL, version)
    assert not triton.is_model_ready(MODEL, version + "0")
    assert not triton.is_model_ready("not-" + MODEL)
    assert triton.get_model_metadata(MODEL, version) == metadata
    assert metadata["inputs"][0]["datatype"] == "FP64"
    assert len(metadata["inputs"][0]["parameters"]["feature_names"]) == metadata["inputs"][0]["shape"][1]
    assert [output["name"] for output in metadata["outputs"]] == ["fraud_probability", "is_fraud"]


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_infer_with_one_matrix_json_or_binary(
    triton: Any, scoring_service: Any, rows: np.ndarray, metadata: dict[str, Any], binary_in: bool, binary_out: bool
) -> None:
    import tritonclient.http as http

    outputs = [http.InferRequestedOutput(name, binary_data=binary_out) for name in ("fraud_probability", "is_fraud")]

    result = triton.infer(
        MODEL,
        [_input("input-0", rows, binary=binary_in)],
        model_version=metadata["versions"][0],
        outputs=outputs,
        request_id="req-7",
    )

    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == metadata["versions"][0]
    probabilities = result.as_numpy("fraud_probability")
    assert probabilities.tolist() == pytest.approx(_expected(scoring_service, rows), rel=1e-12)
    decisions = result.as_numpy("is_fraud")
    assert decisions.dtype == np.bool_
    assert decisions.tolist() == [bool(p >= 0.5) for p in probabilities]
    has_binary = [("binary_data_size" in (o.get("parameters") or {})) for o in response["outputs"]]
    assert has_binary == [binary_out, binary_out]


def test_infer_with_one_named_tensor_per_feature_and_default_outputs(
    triton: Any, scoring_service: Any, rows: np.ndarray, metadata: dict[str, Any]
) -> None:
    names = metadata["inputs"][0]["parameters"]["feature_names"]
    rows = rows.copy()
    rows[1, 0] = np.nan  # a missing value: NaN in binary data (null in JSON)
    inputs = [_input(name, rows[:, j].copy(), binary=j % 2 == 0) for j, name in enumerate(names)]

    result = triton.infer(MODEL, inputs)  # no outputs named: the client asks for all of them as binary data

    assert result.as_numpy("fraud_probability").tolist() == pytest.approx(_expected(scoring_service, rows), rel=1e-12)
    assert result.as_numpy("is_fraud").shape == (3,)


def test_requested_outputs_are_the_only_ones_returned(triton: Any, rows: np.ndarray) -> None:
    import tritonclient.http as http

    result = triton.infer(
        MODEL,
        [_input("input-0", rows, binary=False)],
        outputs=[http.InferRequestedOutput("is_fraud", binary_data=False)],
    )

    assert [output["name"] for output in result.get_response()["outputs"]] == ["is_fraud"]
    assert result.as_numpy("fraud_probability") is None


def test_infer_counts_in_the_prediction_metrics(
    triton: Any, scoring_service: Any, rows: np.ndarray, metadata: dict[str, Any], scrape: Any
) -> None:
    version = metadata["versions"][0]
    before = scrape(scoring_service)

    triton.infer(MODEL, [_input("input-0", rows, binary=True)])

    after = scrape(scoring_service)
    assert after.value("predictions_total", model_version=version) == (
        before.value("predictions_total", model_version=version) + len(rows)
    )
    assert after.value("model_inference_duration_seconds_count") == (
        before.value("model_inference_duration_seconds_count") + 1
    )


def test_errors_are_decoded_by_the_client(triton: Any, rows: np.ndarray, metadata: dict[str, Any]) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    version = metadata["versions"][0]
    calls = {
        "unknown model": (lambda: triton.get_model_metadata("not-" + MODEL), "404", "not served here"),
        "unknown version": (lambda: triton.get_model_metadata(MODEL, version + "0"), "404", "not served here"),
        "infer unknown version": (
            lambda: triton.infer(MODEL, [_input("input-0", rows, binary=True)], model_version=version + "0"),
            "404",
            "not served here",
        ),
        "wrong width": (lambda: triton.infer(MODEL, [_input("input-0", rows[:, :3], binary=True)]), "400", "[n, "),
        "missing feature tensors": (
            lambda: triton.infer(MODEL, [_input("amount", rows[:, 0].copy(), binary=False)]),
            "400",
            "missing inputs",
        ),
        "unknown output": (
            lambda: triton.infer(
                MODEL, [_input("input-0", rows, binary=False)], outputs=[http.InferRequestedOutput("nope")]
            ),
            "400",
            "unknown output",
        ),
        "NaN in JSON (not JSON)": (
            lambda: triton.infer(MODEL, [_input("input-0", np.full_like(rows, np.nan), binary=False)]),
            "400",
            "non-finite",
        ),
        "infinite value": (
            lambda: triton.infer(MODEL, [_input("input-0", np.full_like(rows, np.inf), binary=True)]),
            "400",
            "infinite",
        ),
    }
    for name, (call, status, message) in calls.items():
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.status() == status, (name, raised.value)
        assert message in raised.value.message(), (name, raised.value)


def test_binary_data_that_does_not_add_up_is_400_never_500(scoring_service: Any, rows: np.ndarray) -> None:
    header = (
        b'{"inputs": [{"name": "input-0", "shape": [3, %d], "datatype": "FP64", '
        b'"parameters": {"binary_data_size": %d}}]}' % (rows.shape[1], rows.size * 8)
    )
    payload = rows.astype("<f8").tobytes()
    cases = {
        "short data": (header + payload[:-8], str(len(header))),
        "extra data": (header + payload + b"\0" * 8, str(len(header))),
        "header length past the body": (header + payload, str(len(header) + len(payload) + 1)),
        "header length not a number": (header + payload, "abc"),
        "header length cuts the JSON": (header + payload, "10"),
    }
    for name, (body, length) in cases.items():
        response = httpx.post(
            f"{scoring_service.url}/v2/models/{MODEL}/infer",
            content=body,
            headers={"Inference-Header-Content-Length": length},
            timeout=10,
        )
        assert response.status_code == 400, (name, response.text)
        assert set(response.json()) == {"error"}, name


# Where MLServer 1.7.1 itself departs from the protocol, and this service follows the protocol instead.
MLSERVER_DEPARTURES = {
    # A body that is not JSON: MLServer answers FastAPI's 422 {"detail": [...]}, which the protocol's clients
    # cannot decode; the protocol's answer to a malformed request is a 400 with {"error": "<message>"}.
    "infer not json": {"status": 400, "body": {"error": "str"}},
}


def _conforms(ours: Any, reference: Any, where: str) -> list[str]:
    """Where ``ours`` lacks a field of ``reference`` or has it with another JSON type (``parameters`` are free)."""
    if isinstance(reference, dict):
        if not isinstance(ours, dict):
            return [f"{where}: {ours!r} is not an object"]
        problems = []
        for key, value in reference.items():
            if key == "parameters":  # optional in the protocol, and server-specific in content
                continue
            if key not in ours:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += _conforms(ours[key], value, f"{where}.{key}")
        return problems
    if isinstance(reference, list):
        if not isinstance(ours, list) or len(ours) != 1:
            return [f"{where}: {ours!r} is not a list of objects"]
        return _conforms(ours[0], reference[0], f"{where}[0]")
    return [] if ours == reference else [f"{where}: {ours!r}, reference {reference!r}"]


def test_answers_conform_to_the_reference_server_field_by_field(scoring_service: Any) -> None:
    from support.oip_transcript import record

    reference = json.loads((DATA / "oip" / "mlserver-1.7.1.json").read_text())

    ours = record(scoring_service.url)

    assert ours.keys() == reference.keys()
    problems = []
    for call, answer in reference.items():
        expected = MLSERVER_DEPARTURES.get(call, answer)
        if ours[call]["status"] != expected["status"]:
            problems.append(f"{call}: status {ours[call]['status']}, reference {expected['status']}")
        if expected["body"] != "null":  # MLServer's probes answer with an empty body: any body is fine
            problems += _conforms(ours[call]["body"], expected["body"], call)
        if "error" in expected["body"]:
            assert ours[call]["body"] == {"error": "str"}, call
    assert ours["infer per column"]["id"] == reference["infer per column"]["id"] == "r1"
    assert not problems, problems
