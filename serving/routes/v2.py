"""Open Inference Protocol (KServe v2) REST routes: server and model metadata, health, infer.

Every failure answers ``{"error": "<message>"}`` (:mod:`serving.errors` renders by path): 400 for a malformed
request, 404 for a model or version not served here, 503 while no model is loaded. Infer scores through the
same path as ``/predict`` (:func:`serving.scoring.score_rows` in a scoring slot, within the timeout): the same
metrics and drift window, and the same probabilities for the same feature rows.
"""

from __future__ import annotations

from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from mlops_recipes.observability import HEALTH_LIVE, HEALTH_READY, INFER, INFER_VERSION, PROTOCOL_PREFIX
from serving.deps import Authorized, ServiceState, State, in_scoring_slot
from serving.errors import problem
from serving.model import LoadedModel
from serving.protocol import (
    BINARY_EXTENSION,
    DECISION,
    HEADER_LENGTH,
    PROBABILITY,
    InferRequest,
    InferResponse,
    ProtocolError,
    ProtocolErrorBody,
    encode_response,
    feature_matrix,
    parse_infer,
)
from serving.schemas import ModelMetadata, ModelReady, ReadyState, ServerMetadata, TensorMetadata
from serving.scoring import score_rows

SERVER_NAME = "mlops-recipes"


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Malformed request (the message names the field).",
        401: "Missing or wrong API key.",
        404: "No such model or version here.",
        413: "The body is larger than SERVING_MAX_BODY_BYTES.",
        503: "No model loaded yet, or the online store is down.",
        504: "Scoring took longer than SERVING_REQUEST_TIMEOUT_S.",
    }
    return {code: {"model": ProtocolErrorBody, "description": described[code]} for code in codes}


router = APIRouter(tags=["v2"])


@router.get(PROTOCOL_PREFIX, response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Name, version and protocol extensions of this server."""
    try:
        served_version = version("mlops-recipes")
    except PackageNotFoundError:  # pragma: no cover (running from a source tree without installing)
        served_version = "0"
    return ServerMetadata(name=SERVER_NAME, version=served_version, extensions=[BINARY_EXTENSION])


@router.get(HEALTH_LIVE, response_model=ReadyState, response_model_exclude_none=True)
async def live() -> ReadyState:
    """The process is up (it may not be ready)."""
    return ReadyState(live=True)


@router.get(
    HEALTH_READY,
    response_model=ReadyState,
    response_model_exclude_none=True,
    responses={503: {"model": ReadyState, "description": "No model loaded yet."}},
)
async def ready(state: State, response: Response) -> ReadyState:
    """Ready once a model is loaded."""
    is_ready = state.models.current is not None
    if not is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadyState(ready=is_ready)


def _served(state: ServiceState, model_name: str, model_version: str | None) -> LoadedModel:
    model = state.models.require()  # read once: the whole request uses one model even if a swap happens now
    if model_name != model.name:
        raise ProtocolError(f"model {model_name[:100]!r} is not served here (try {model.name!r})", status=404)
    if model_version is not None and model_version != model.version:
        raise ProtocolError(
            f"version {model_version[:40]!r} of {model.name!r} is not served here (serving {model.version!r})",
            status=404,
        )
    return model


def _metadata(model: LoadedModel) -> ModelMetadata:
    return ModelMetadata(
        name=model.name,
        versions=[model.version],
        platform="sklearn",
        inputs=[
            TensorMetadata(
                name="input-0",
                datatype="FP64",
                shape=[-1, len(model.features)],
                parameters={"feature_names": list(model.features)},
            )
        ],
        outputs=[
            TensorMetadata(name=PROBABILITY, datatype="FP64", shape=[-1]),
            TensorMetadata(name=DECISION, datatype="BOOL", shape=[-1]),
        ],
    )


@router.get(
    f"{PROTOCOL_PREFIX}/models/{{model_name}}",
    response_model=ModelMetadata,
    response_model_exclude_none=True,
    responses=_errors(404, 503),
)
async def model_metadata(model_name: str, state: State) -> ModelMetadata:
    """Name, version and tensor layout of the served model (inputs in the order of its MLflow signature)."""
    return _metadata(_served(state, model_name, None))


@router.get(
    f"{PROTOCOL_PREFIX}/models/{{model_name}}/versions/{{model_version}}",
    response_model=ModelMetadata,
    response_model_exclude_none=True,
    responses=_errors(404, 503),
)
async def model_version_metadata(model_name: str, model_version: str, state: State) -> ModelMetadata:
    """Metadata of one version (only the version being served is here)."""
    return _metadata(_served(state, model_name, model_version))


@router.get(f"{PROTOCOL_PREFIX}/models/{{model_name}}/ready", response_model=ModelReady, responses=_errors(404, 503))
async def model_ready(model_name: str, state: State) -> ModelReady:
    """200 when the named model is loaded, 503 while none is."""
    model = _served(state, model_name, None)
    return ModelReady(name=model.name, ready=True)


@router.get(
    f"{PROTOCOL_PREFIX}/models/{{model_name}}/versions/{{model_version}}/ready",
    response_model=ModelReady,
    responses=_errors(404, 503),
)
async def model_version_ready(model_name: str, model_version: str, state: State) -> ModelReady:
    """200 when that version is the one loaded."""
    model = _served(state, model_name, model_version)
    return ModelReady(name=model.name, ready=True)


_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON (any or no content type), or JSON followed by binary tensor data with the "
        "Inference-Header-Content-Length header (the binary tensor data extension).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}},
    }
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferResponse,
        "description": "Outputs as JSON; with binary outputs, the JSON (Inference-Header-Content-Length bytes) is "
        "followed by the binary data (application/octet-stream).",
    },
    **_errors(400, 401, 404, 413, 503, 504),
}


async def _infer(request: Request, state: ServiceState, model_name: str, model_version: str | None) -> Response:
    model = _served(state, model_name, model_version)
    parsed = parse_infer(await request.body(), request.headers.get(HEADER_LENGTH))
    matrix = feature_matrix(parsed, model.features, max_rows=state.serving.max_batch)
    probabilities, decisions = await in_scoring_slot(
        state,
        partial(
            score_rows,
            matrix,
            model=model,
            metrics=state.metrics,
            monitor=state.monitor,
        ),
    )
    body, header_length = encode_response(
        model_name=model.name,
        model_version=model.version,
        request=parsed.request,
        values={PROBABILITY: probabilities, DECISION: np.array(decisions, dtype=np.bool_)},
    )
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )


@router.post(
    INFER,
    response_class=Response,
    responses=_INFER_RESPONSES,
    dependencies=[Authorized],
    openapi_extra=_INFER_DOC,
)
async def infer(model_name: str, request: Request, state: State) -> Response:
    """Score feature rows sent as tensors (no feature lookup): one [n, k] tensor, or one [n] tensor per feature."""
    return await _infer(request, state, model_name, None)


@router.post(
    INFER_VERSION,
    response_class=Response,
    responses=_INFER_RESPONSES,
    dependencies=[Authorized],
    openapi_extra=_INFER_DOC,
)
async def infer_version(model_name: str, model_version: str, request: Request, state: State) -> Response:
    """Infer with one version (only the version being served is here)."""
    return await _infer(request, state, model_name, model_version)


async def protocol_error(request: Request, error: Exception) -> JSONResponse:
    """Render a :class:`ProtocolError` in the protocol's error shape."""
    assert isinstance(error, ProtocolError)  # noqa: S101 (registered for this type only)
    return problem(request.url.path, error.status, error.message)


def openapi_components() -> dict[str, Any]:
    """Schemas the infer routes refer to (their body is parsed by hand, so FastAPI does not collect them)."""
    schemas: dict[str, Any] = {}
    for model in (InferRequest, InferResponse):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas
