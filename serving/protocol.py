"""Open Inference Protocol (KServe v2) infer bodies: parsing requests and encoding responses, no I/O.

A request body is JSON, or JSON followed by binary tensor data (the binary tensor data extension: the
``Inference-Header-Content-Length`` header gives the JSON's length, each binary input says its byte size in
``parameters.binary_data_size``, in input order). The content type is not looked at: the reference client
(``tritonclient.http``) sends none. Every problem is a :class:`ProtocolError`: a 400 in the protocol's error
shape, never a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops_recipes.contract import LABEL
from serving.errors import safe_errors, safe_text, summary

BINARY_EXTENSION = "binary_tensor_data"
HEADER_LENGTH = "inference-header-content-length"

# Binary layouts of the numeric datatypes (little-endian, row-major). BOOL and BYTES are not model inputs here.
NUMPY_TYPES: dict[str, str] = {
    "FP64": "<f8",
    "FP32": "<f4",
    "FP16": "<f2",
    "INT64": "<i8",
    "INT32": "<i4",
    "INT16": "<i2",
    "INT8": "i1",
    "UINT64": "<u8",
    "UINT32": "<u4",
    "UINT16": "<u2",
    "UINT8": "u1",
}
PROBABILITY = "fraud_probability"
DECISION = LABEL  # the decision on the label, named as /predict names it
OUTPUTS = (PROBABILITY, DECISION)


class ProtocolError(Exception):
    """A request the protocol calls malformed (400), or another status with the protocol's error body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RequestInput(BaseModel):
    """``$request_input``: a named tensor with its shape and datatype; data as JSON or binary."""

    name: str = Field(min_length=1, max_length=256)
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        min_length=1, max_length=2, description="[n] (one feature) or [n, k] (k features)."
    )
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = Field(default=None, description="Row-major numbers (flat or nested); null is a missing value.")


class RequestOutput(BaseModel):
    """``$request_output``: an output to return, optionally as binary data (``parameters.binary_data``)."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``$inference_request``: one [n, k] tensor in signature order, or one [n] tensor per feature name.

    ``GET /v2/models/{name}`` gives k and the feature names (its input's ``parameters.feature_names``).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
            ]
        }
    )

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=256)
    outputs: list[RequestOutput] | None = None

    @field_validator("id")
    @classmethod
    def _renderable_id(cls, value: str | None) -> str | None:
        if value is not None and safe_text(value) != value:
            raise ValueError("must be valid Unicode (it is echoed in the response)")
        return value


class ResponseOutput(BaseModel):
    """``$response_output``: data as JSON, or ``parameters.binary_data_size`` bytes after the JSON."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | list[bool] | None = None


class InferResponse(BaseModel):
    """``$inference_response``."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ProtocolErrorBody(BaseModel):
    """The protocol's error response: ``{"error": "<message>"}`` (what its clients decode)."""

    error: str


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-finite number {name} in the JSON body: send null for a missing value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:40]} overflows a double")
    return value


def parse_json(body: bytes) -> Any:
    """Standard JSON only: NaN, Infinity and overflowing numbers are refused (400), as are undecodable bodies."""
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as error:  # bad JSON, invalid UTF-8, too deep, too many digits
        raise ProtocolError(f"the body is not valid JSON: {type(error).__name__}: {error}") from None


@dataclass(frozen=True)
class ParsedRequest:
    """An infer request with every input's values as a float array of its shape."""

    request: InferRequest
    tensors: dict[str, np.ndarray]
    order: list[str]


def parse_infer(body: bytes, header_length: str | None) -> ParsedRequest:
    """Split JSON and binary parts, validate the JSON, and decode every input tensor."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ProtocolError(
                f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within the body "
                f"({len(body)} bytes)"
            )
        split = int(header_length)
        body, binary = body[:split], body[split:]
    try:
        request = InferRequest.model_validate(parse_json(body))
    except ValidationError as error:
        raise ProtocolError(summary(safe_errors(error.errors(include_url=False)))) from None
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(request.inputs):
        if tensor.name in tensors:
            raise ProtocolError(f"inputs.{index}: duplicate input {tensor.name!r}")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ProtocolError(
                    f"inputs.{index}: binary_data_size {size!r} does not fit the {len(binary)} bytes of binary data"
                )
            tensors[tensor.name] = _binary_tensor(tensor, binary[offset : offset + size], index)
            offset += size
        else:
            tensors[tensor.name] = _json_tensor(tensor, index)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return ParsedRequest(request, tensors, [tensor.name for tensor in request.inputs])


def _elements(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _numpy_type(tensor: RequestInput, index: int) -> str:
    numpy_type = NUMPY_TYPES.get(tensor.datatype)
    if numpy_type is None:
        raise ProtocolError(
            f"inputs.{index}: datatype {safe_text(tensor.datatype)[:20]!r} is not supported here "
            f"(features are numbers: {', '.join(NUMPY_TYPES)})"
        )
    return numpy_type


def _binary_tensor(tensor: RequestInput, raw: bytes, index: int) -> np.ndarray:
    numpy_type = np.dtype(_numpy_type(tensor, index))
    expected = _elements(tensor.shape) * numpy_type.itemsize
    if len(raw) != expected:
        raise ProtocolError(
            f"inputs.{index}: {len(raw)} bytes of binary data, shape {tensor.shape} of {tensor.datatype} needs "
            f"{expected}"
        )
    values = np.frombuffer(raw, dtype=numpy_type).astype(np.float64)
    if np.isinf(values).any():  # NaN is how binary data says "missing"; infinity is no feature value
        raise ProtocolError(f"inputs.{index}.data: infinite values are not feature values")
    return values.reshape(tensor.shape)


def _flatten(data: Any, out: list[float], depth: int) -> None:
    if isinstance(data, list):
        if depth > 2:
            raise ValueError("nested deeper than the shape")
        for item in data:
            _flatten(item, out, depth + 1)
    elif data is None:
        out.append(math.nan)
    elif isinstance(data, int | float) and not isinstance(data, bool):
        out.append(float(data))
    else:
        raise ValueError(f"{type(data).__name__} is not a number")


def _json_tensor(tensor: RequestInput, index: int) -> np.ndarray:
    _numpy_type(tensor, index)
    if tensor.data is None:
        raise ProtocolError(f"inputs.{index}.data: required (or binary data with parameters.binary_data_size)")
    values: list[float] = []
    try:
        _flatten(tensor.data, values, 0)
    except (ValueError, OverflowError) as error:
        raise ProtocolError(f"inputs.{index}.data: {error}") from None
    if len(values) != _elements(tensor.shape):
        raise ProtocolError(f"inputs.{index}.data: {len(values)} values for shape {tensor.shape}")
    return np.array(values, dtype=np.float64).reshape(tensor.shape)


def feature_matrix(parsed: ParsedRequest, features: Sequence[str], *, max_rows: int) -> np.ndarray:
    """The model's rows: one [n, k] input in signature order, or one [n] (or [n, 1]) input per feature."""
    width = len(features)
    if len(parsed.order) == 1 and parsed.tensors[parsed.order[0]].ndim == 2:
        matrix = parsed.tensors[parsed.order[0]]
        if matrix.shape[1] != width:
            raise ProtocolError(
                f"inputs.0: shape {list(matrix.shape)}, expected [n, {width}] (features in signature order)"
            )
    else:
        missing = [name for name in features if name not in parsed.tensors]
        unknown = [name for name in parsed.order if name not in features]
        if missing or unknown:
            raise ProtocolError(
                f"expected one [n, {width}] input, or one [n] input per feature; missing inputs: {missing[:5]}, "
                f"unknown inputs: {[safe_text(n)[:64] for n in unknown[:5]]}"
            )
        columns = []
        for name in features:
            column = parsed.tensors[name]
            if column.ndim == 2 and column.shape[1] != 1:
                raise ProtocolError(f"input {name!r}: shape {list(column.shape)}, expected [n] or [n, 1]")
            columns.append(column.reshape(-1))
        if len({len(column) for column in columns}) != 1:
            raise ProtocolError("inputs have different numbers of rows")
        matrix = np.column_stack(columns)
    if not 1 <= matrix.shape[0] <= max_rows:
        raise ProtocolError(f"{matrix.shape[0]} rows: between 1 and {max_rows} rows per request")
    return matrix


def _as_binary(flag: Any, where: str) -> bool:
    if not isinstance(flag, bool):
        raise ProtocolError(f"{where} must be a boolean")
    return flag


def requested_outputs(request: InferRequest) -> list[tuple[str, bool]]:
    """The outputs to return and whether each goes as binary data: all of them unless ``outputs`` names some."""
    default = _as_binary((request.parameters or {}).get("binary_data_output", False), "parameters.binary_data_output")
    if request.outputs is None:
        return [(name, default) for name in OUTPUTS]
    chosen = []
    for index, output in enumerate(request.outputs):
        if output.name not in OUTPUTS:
            raise ProtocolError(
                f"outputs.{index}: unknown output {safe_text(output.name)[:64]!r} (this model has {list(OUTPUTS)})"
            )
        flag = (output.parameters or {}).get("binary_data", default)
        chosen.append((output.name, _as_binary(flag, f"outputs.{index}.parameters.binary_data")))
    return chosen


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request: InferRequest,
    values: Mapping[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The response body and, when binary data follows the JSON, the JSON's length (for the response header)."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in requested_outputs(request):
        array = values[name]
        datatype = "BOOL" if array.dtype == np.bool_ else "FP64"
        output: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            raw = array.astype("u1" if datatype == "BOOL" else "<f8").tobytes()
            output["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            output["data"] = array.tolist()
        outputs.append(output)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, allow_nan=False).encode()
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
