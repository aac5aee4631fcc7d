"""Request and response models of the scoring API (documented with examples in the OpenAPI page).

The transaction to score is built from the data contract (:func:`transaction_model`): the entity ids' types,
the amount's bound, the categorical fields as enums of their declared values, the numeric fields (optional
where the contract says so) and the OpenAPI example.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlops_recipes.contract import AMOUNT, CUSTOMER, LABEL, MERCHANT, TRANSACTION_ID, Contract
from serving.validation import NOT_A_BOOLEAN, FiniteFloat, StrictBool, Timestamp

# The largest integer a JSON number holds exactly (2**53 - 1): above it, clients and schema validators compare ids
# as doubles, and a maximum like 2**62 would admit 2**62 + 1 on paper and refuse it here.
MAX_ENTITY_ID = 2**53 - 1
IntEntityId = Annotated[
    int, Field(ge=0, le=MAX_ENTITY_ID, description="Entity key, as in the feature store."), NOT_A_BOOLEAN
]
StrEntityId = Annotated[str, Field(min_length=1, max_length=128, description="Entity key, as in the feature store.")]
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
    """A card transaction to score: entity ids plus the fields known only at request time.

    The contract's fields are added by :func:`transaction_model`; scoring reads them by name.
    """

    model_config = ConfigDict(extra="forbid")

    transaction_id: TransactionId | None = None
    event_timestamp: Timestamp | None = Field(
        default=None,
        description="When the transaction happened (RFC 3339 with an offset); default: now. Must lie within "
        "SERVING_MAX_EVENT_AGE_S before and SERVING_MAX_CLOCK_SKEW_S after the service's clock (else 422).",
    )
    account_created_at: Timestamp | None = Field(
        default=None,
        description="When the customer's account was opened, if known: kept with a customer the online store has "
        "not seen yet, for the account age of their next transactions.",
    )


def transaction_model(contract: Contract) -> type[Transaction]:
    """The request model of one transaction, derived from the data contract."""
    fields: dict[str, Any] = {
        column: (IntEntityId if contract.id_type(column) == "int" else StrEntityId, ...)
        for column in (CUSTOMER, MERCHANT)
    }
    fields[AMOUNT] = (FiniteFloat, Field(gt=0, le=contract.columns.amount.max, description="Transaction amount."))
    example: dict[str, Any] = {
        CUSTOMER: 42 if contract.id_type(CUSTOMER) == "int" else "C0042",
        MERCHANT: 7 if contract.id_type(MERCHANT) == "int" else "M007",
        AMOUNT: 129.9,
    }
    for name, spec in contract.categorical.items():
        kind: Any = str if spec.open else Literal[tuple(spec.values)]
        fields[name] = (kind, Field(description=f"One of the declared values of categorical.{name}."))
        example[name] = spec.values[1]
    for name, numeric in contract.numeric.items():
        bounded = Field(default=None if numeric.optional else ..., ge=numeric.min, le=numeric.max, allow_inf_nan=False)
        fields[name] = (float | None if numeric.optional else float, bounded)
        example[name] = numeric.min if numeric.min is not None else 1.0
    model: type[Transaction] = create_model(
        "Transaction",
        __base__=Transaction,
        __config__=None,
        __doc__=Transaction.__doc__,
        **fields,
    )
    model.model_config["json_schema_extra"] = {"examples": [example]}
    model.model_rebuild(force=True)
    return model


def batch_model(transaction: type[Transaction]) -> type[BatchRequest]:
    """The batch request model over the contract's transaction model."""
    model: type[BatchRequest] = create_model(
        "BatchRequest",
        __base__=BatchRequest,
        __doc__=BatchRequest.__doc__,
        transactions=(list[transaction], Field(min_length=1)),  # type: ignore[valid-type]
    )
    return model


class Prediction(BaseModel):
    """The score of one transaction."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "fraud_probability": 0.031,
                    LABEL: False,
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
    variant: Literal["champion", "candidate"] = Field(
        default="champion", description="Which model scored it: the candidate only for a canary rollout's customers."
    )


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
        json_schema_extra={"examples": [{"labels": [{TRANSACTION_ID: "tx-0001", LABEL: True}]}]},
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
