"""Request and response models of the scoring API (documented with examples in the OpenAPI page)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_recipes.core.schema import MAX_AMOUNT

EntityId = Annotated[int, Field(ge=1, le=2**62, description="Entity key, as in the feature store.")]
TransactionId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The caller's id of the transaction: echoed back, and the key for its label later (/feedback).",
    ),
]


class Transaction(BaseModel):
    """A card transaction to score: entity ids plus the fields known only at request time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_id": 42, "merchant_id": 7, "amount": 129.9, "channel": "online"}]},
    )

    transaction_id: TransactionId | None = None
    customer_id: EntityId
    merchant_id: EntityId
    amount: float = Field(gt=0, le=MAX_AMOUNT, description="Transaction amount.")
    channel: Literal["pos", "online", "atm"]
    event_timestamp: dt.datetime | None = Field(
        default=None, description="When the transaction happened (timezone-aware); default: now."
    )


class Prediction(BaseModel):
    """The score of one transaction."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "fraud_probability": 0.031,
                    "is_fraud": False,
                    "threshold": 0.5,
                    "model_name": "fraud-detector",
                    "model_version": "3",
                    "missing_features": [],
                }
            ]
        }
    )

    transaction_id: str | None = Field(default=None, description="As sent in the request.")
    fraud_probability: float = Field(ge=0, le=1)
    is_fraud: bool = Field(description="fraud_probability >= threshold")
    threshold: float
    model_name: str
    model_version: str
    missing_features: list[str] = Field(description="Stored features the online store did not have.")


class BatchRequest(BaseModel):
    """Several transactions scored in one call (bounded by SERVING_MAX_BATCH)."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[Transaction] = Field(min_length=1)


class BatchResponse(BaseModel):
    """Scores in the order of the request."""

    model_name: str
    model_version: str
    predictions: list[Prediction]


class Label(BaseModel):
    """A confirmed outcome of a scored transaction (chargeback, analyst review), known later than the score."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: TransactionId
    is_fraud: bool


class FeedbackRequest(BaseModel):
    """Delayed labels for transactions scored earlier with a ``transaction_id``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"labels": [{"transaction_id": "tx-0001", "is_fraud": True}]}]},
    )

    labels: list[Label] = Field(min_length=1)


class FeedbackResponse(BaseModel):
    """Which labels were matched with a score this service returned (only those count in precision/recall)."""

    matched: int
    unmatched: int
    unmatched_ids: list[str] = Field(description="Never scored here with that id, already labelled, or forgotten.")


class Problem(BaseModel):
    """An error the client can act on."""

    detail: str


# Open Inference Protocol (KServe v2) subset.
class TensorMetadata(BaseModel):
    """Name, type and shape of a tensor."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferTensor(BaseModel):
    """An input tensor: FP64 values, row-major, with its shape."""

    name: str
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=2)
    datatype: Literal["FP64", "FP32"]
    data: list[float | None] | list[list[float | None]]


class InferRequest(BaseModel):
    """``POST /v2/models/{name}/infer``: one [n, k] tensor in signature order, or one [n] tensor per feature.

    ``GET /v2/models/{name}`` gives k; the feature names and order are the model's MLflow signature.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
            ]
        }
    )

    id: str | None = None
    inputs: list[InferTensor] = Field(min_length=1)


class InferOutput(BaseModel):
    """An output tensor."""

    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(BaseModel):
    """The inference result."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class ReadyState(BaseModel):
    """Liveness or readiness."""

    live: bool | None = None
    ready: bool | None = None
