"""Request and response models of the scoring API (documented with examples in the OpenAPI page)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_recipes.core.schema import MAX_AMOUNT
from serving.validation import NOT_A_BOOLEAN, FiniteFloat, StrictBool, Timestamp

# The largest integer a JSON number holds exactly (2**53 - 1): above it, clients and schema validators compare ids
# as doubles, and a maximum like 2**62 would admit 2**62 + 1 on paper and refuse it here.
MAX_ENTITY_ID = 2**53 - 1
EntityId = Annotated[
    int, Field(ge=1, le=MAX_ENTITY_ID, description="Entity key, as in the feature store."), NOT_A_BOOLEAN
]
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
    amount: FiniteFloat = Field(gt=0, le=MAX_AMOUNT, description="Transaction amount.")
    channel: Literal["pos", "online", "atm"]
    event_timestamp: Timestamp | None = Field(
        default=None,
        description="When the transaction happened (RFC 3339 with an offset); default: now. Must lie within "
        "SERVING_MAX_EVENT_AGE_S before and SERVING_MAX_CLOCK_SKEW_S after the service's clock (else 422).",
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
    is_fraud: StrictBool


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


# Open Inference Protocol (KServe v2): metadata and health. Infer bodies are in serving.protocol.
class ServerMetadata(BaseModel):
    """``GET /v2``: the server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """Name, type and shape of a tensor (-1: any size)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, list[str]] | None = Field(
        default=None, description="For the 2-D input: feature_names, the column order (the model's signature)."
    )


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}[/versions/{version}]``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    """``GET /v2/models/{name}[/versions/{version}]/ready`` when it is (else an error body)."""

    name: str
    ready: bool


class ReadyState(BaseModel):
    """Liveness or readiness."""

    live: bool | None = None
    ready: bool | None = None
