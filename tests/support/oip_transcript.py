"""The shape of an Open Inference Protocol server's answers to a fixed set of calls, for a conformance comparison.

``test_serving_protocol.py`` records this service's answers and compares them, field by field, with the ones
MLServer (the protocol's reference server) gave to the same calls, kept in ``tests/data/oip/``. To record them
again (MLServer's FastAPI pin conflicts with ours, so it lives in a venv of its own)::

    python3 -m venv /tmp/mlsv && /tmp/mlsv/bin/pip install mlserver==1.7.1 mlserver-mlflow==1.7.1
    # a model folder with model-settings.json: {"name": "fraud-detector",
    #   "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": "<the champion's download URI>"}}
    /tmp/mlsv/bin/mlserver start <folder>          # http_port in <folder>/settings.json
    python tests/support/oip_transcript.py http://127.0.0.1:8080 tests/data/oip/mlserver-1.7.1.json

Only what the protocol fixes is recorded: statuses, the keys of every body (values as their JSON types), and
the request ``id`` echoed by infer; values that are the model's own (output names, probabilities) are not.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx

MODEL = "fraud-detector"


def shape_of(value: Any) -> Any:
    """Keys and JSON types of ``value``; lists of objects keep the shape of their first item."""
    if isinstance(value, dict):
        return {key: shape_of(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape_of(value[0])] if value and isinstance(value[0], dict) else "list"
    return {str: "str", bool: "bool", int: "int", float: "float", type(None): "null"}.get(type(value), "other")


def feature_names(metadata: dict[str, Any]) -> list[str]:
    """Per-column input names (MLServer's MLflow runtime), or the 2-D input's ``feature_names`` (this service)."""
    inputs = metadata["inputs"]
    if len(inputs) > 1:
        return [tensor["name"] for tensor in inputs]
    return list(inputs[0]["parameters"]["feature_names"])


def record(base: str) -> dict[str, Any]:
    """Call ``base`` (a server's root URL) the same way every time and keep the shape of each answer."""
    metadata = httpx.get(f"{base}/v2/models/{MODEL}", timeout=30).json()
    per_column = {
        "id": "r1",
        "inputs": [{"name": n, "shape": [2], "datatype": "FP64", "data": [0.5, 1.5]} for n in feature_names(metadata)],
    }
    calls: dict[str, tuple[str, str, Any]] = {
        "server metadata": ("GET", "/v2", None),
        "server live": ("GET", "/v2/health/live", None),
        "server ready": ("GET", "/v2/health/ready", None),
        "model metadata": ("GET", f"/v2/models/{MODEL}", None),
        "model ready": ("GET", f"/v2/models/{MODEL}/ready", None),
        "unknown model metadata": ("GET", f"/v2/models/not-{MODEL}", None),
        "unknown model ready": ("GET", f"/v2/models/not-{MODEL}/ready", None),
        "infer per column": ("POST", f"/v2/models/{MODEL}/infer", per_column),
        "infer unknown model": ("POST", f"/v2/models/not-{MODEL}/infer", per_column),
        "infer not json": ("POST", f"/v2/models/{MODEL}/infer", b"{not json"),
    }
    transcript: dict[str, Any] = {}
    for name, (method, path, body) in calls.items():
        options = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
        response = httpx.request(method, base + path, timeout=30, **options)
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        entry: dict[str, Any] = {"status": response.status_code, "body": shape_of(parsed)}
        if name == "infer per column" and isinstance(parsed, dict):
            entry["id"] = parsed.get("id")
        transcript[name] = entry
    return transcript


if __name__ == "__main__":
    answers = record(sys.argv[1])
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(answers, out, indent=2, sort_keys=True)
        out.write("\n")
