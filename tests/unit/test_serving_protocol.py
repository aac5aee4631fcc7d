"""serving/protocol.py, errors.py, validation.py: infer bodies, safe error rendering, event-time window; and the
pure parts of the model lifecycle (what counts as transient) and of the multiprocess sweep."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops_recipes.io.models import is_transient
from serving.errors import renderable, safe_errors, summary
from serving.metrics import sweep_dead_workers
from serving.protocol import ProtocolError, encode_response, feature_matrix, parse_infer, parse_json
from serving.validation import event_time_errors

pytestmark = pytest.mark.unit

FEATURES = ("a", "b", "c")


def _body(inputs: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def test_a_matrix_and_named_tensors_give_the_same_rows() -> None:
    rows = [[1.0, 2.0, 3.0], [4.0, None, 6.0]]
    matrix = parse_infer(_body([{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": rows}]), None)
    named = parse_infer(
        _body(
            [
                {"name": name, "shape": [2], "datatype": "FP32", "data": [row[j] for row in rows]}
                for j, name in reversed(list(enumerate(FEATURES)))  # any order: matched by name
            ]
        ),
        None,
    )

    first = feature_matrix(matrix, FEATURES, max_rows=8)
    second = feature_matrix(named, FEATURES, max_rows=8)

    np.testing.assert_array_equal(first, second)
    assert np.isnan(first[1, 1])


def test_binary_inputs_follow_the_json_in_input_order() -> None:
    values = np.arange(6, dtype="<f8").reshape(2, 3)
    header = _body([{"name": "x", "shape": [2, 3], "datatype": "FP64", "parameters": {"binary_data_size": 48}}])

    parsed = parse_infer(header + values.tobytes(), str(len(header)))

    np.testing.assert_array_equal(feature_matrix(parsed, FEATURES, max_rows=8), values)


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, NaN, 3]}]}', None, "non-finite"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 1e400, 3]}]}', None, "overflow"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, "2", 3]}]}', None, "not a num"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": [1, 2, 3]}]}', None, "datatype"),
        (b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3]}]}', None, "3 values"),
        (b'{"inputs": [{"name": "x", "shape": [-1, 3], "datatype": "FP64", "data": []}]}', None, "greater than"),
        (b"\xff\xfe{", None, "not valid JSON"),
        (b"[" * 5000, None, "not valid JSON"),
        (b'{"inputs": []}', "5", "not valid JSON"),
        (b'{"inputs": []}', "99", "not a length within the body"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}]}', None,
         "does not fit"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_protocol_errors(body: bytes, length: str | None, message: str) -> None:
    def parse() -> None:
        feature_matrix(parse_infer(body, length), FEATURES, max_rows=8)

    with pytest.raises(ProtocolError) as raised:
        parse()

    assert raised.value.status == 400
    assert message in raised.value.message


def test_requested_binary_outputs_come_after_the_json() -> None:
    parsed = parse_infer(
        _body(
            [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}],
            id="r1",
            outputs=[{"name": "fraud_probability", "parameters": {"binary_data": True}}, {"name": "is_fraud"}],
        ),
        None,
    )
    probabilities = np.array([0.25])

    body, header_length = encode_response(
        model_name="m",
        model_version="3",
        request=parsed.request,
        values={"fraud_probability": probabilities, "is_fraud": np.array([False])},
    )

    assert header_length is not None
    header = json.loads(body[:header_length])
    assert header["id"] == "r1"
    assert [o["name"] for o in header["outputs"]] == ["fraud_probability", "is_fraud"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert header["outputs"][1]["data"] == [False]
    assert np.frombuffer(body[header_length:], dtype="<f8").tolist() == [0.25]


def test_parse_json_refuses_what_python_accepts_beyond_json() -> None:
    for text in (b"NaN", b"[Infinity]", b"-Infinity", b"1e400"):
        with pytest.raises(ProtocolError):
            parse_json(text)
    assert parse_json(b"[1e-400, 2]") == [0.0, 2]


def test_error_records_always_render() -> None:
    errors = [
        {"type": "finite_number", "loc": ("body", "amount"), "msg": "Input should be a finite number", "input": np.nan},
        {"type": "x", "loc": ("body",), "msg": "m", "input": b"\xff\xfe", "ctx": {"error": ValueError("boom")}},
        {"type": "x", "loc": ("body", "id"), "msg": "m", "input": "\ud800"},
        {"type": "x", "loc": ("body",), "msg": "m", "input": {"a": [float("inf"), {"b": -float("inf")}]}},
    ]

    rendered = safe_errors(errors)

    text = json.dumps(rendered, allow_nan=False, ensure_ascii=False).encode("utf-8")  # what Starlette does
    assert json.loads(text)[0]["input"] == "nan"
    assert rendered[1]["ctx"] == {"error": "boom"}
    assert renderable({"a": [float("inf")]}) == {"a": ["inf"]}
    assert summary(rendered).startswith("amount: Input should be a finite number; ")


def test_event_times_outside_the_window_are_named() -> None:
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    stamps = [
        (("event_timestamp",), None),
        (("transactions", 0, "event_timestamp"), now - dt.timedelta(days=1)),
        (("transactions", 1, "event_timestamp"), now + dt.timedelta(hours=1)),
        (("transactions", 2, "event_timestamp"), dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    ]

    errors = event_time_errors(stamps, now=now, max_future_s=300, max_age_s=30 * 86400)

    assert [error["loc"] for error in errors] == [
        ("body", "transactions", 1, "event_timestamp"),
        ("body", "transactions", 2, "event_timestamp"),
    ]
    assert "in the future" in errors[0]["msg"]
    assert "in the past" in errors[1]["msg"]


def test_unreachable_stores_are_transient_broken_versions_are_not() -> None:
    wrapped = RuntimeError("API request to endpoint failed")
    wrapped.__cause__ = ConnectionRefusedError("refused")
    assert is_transient(wrapped)
    assert is_transient(RuntimeError("Max retries exceeded with url: /api/2.0/mlflow/registered-models"))
    assert not is_transient(FileNotFoundError("No such file or directory: 'model.skops'"))
    assert not is_transient(ValueError("X has 3 features, but the model expects 21"))


def test_the_sweep_drops_live_gauges_of_dead_pids_only(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid in (dead, alive.pid):
            for kind in ("counter", "histogram", "gauge_livesum", "gauge_livemax"):
                (tmp_path / f"{kind}_{pid}.db").write_bytes(b"")

        assert dead in sweep_dead_workers(str(tmp_path))
    finally:
        alive.kill()
        alive.wait()

    names = {path.name for path in tmp_path.iterdir()}
    assert names == {
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        *(f"{kind}_{alive.pid}.db" for kind in ("counter", "histogram", "gauge_livesum", "gauge_livemax")),
    }
