"""Pipeline parameters: ``params.yaml`` loaded through one strict, frozen pydantic model.

DVC tracks the file and ``dvc exp run -S key=value`` edits it; every stage loads it through
:func:`load_params` first, so a typo or an out-of-range value fails before any work starts, with a message
that names the key.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops_recipes.contract import ACCOUNT_CREATED, AMOUNT
from mlops_recipes.errors import ReportedError

PositiveInt = Annotated[int, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class ParamsError(ReportedError, ValueError):
    """``params.yaml`` is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftParams(_Strict):
    """Knobs that shift the generated data, for monitoring demos. 1.0 means no drift."""

    amount_scale: Annotated[float, Field(gt=0)] = 1.0
    fraud_multiplier: Annotated[float, Field(ge=0)] = 1.0
    online_share_shift: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0


class DataParams(_Strict):
    """Where the raw transactions come from: the seeded generator or the user's own file."""

    source: Literal["synthetic", "file"] = "synthetic"
    path: str | None = Field(default=None, description="Parquet or CSV file when source is 'file'.")
    seed: int = 42
    n_customers: PositiveInt = 2000
    n_merchants: PositiveInt = 200
    days: Annotated[int, Field(ge=2, le=3650)] = 60
    end_date: dt.date | None = Field(
        default=None,
        description="Last day of generated data (UTC, exclusive end at midnight). None: today, so the "
        "online store holds fresh features and feature TTLs make sense at serving time.",
    )
    txns_per_customer_day: Annotated[float, Field(gt=0, le=100)] = 0.8
    compromised_share: Probability = Field(
        default=0.2, description="Share of customers whose card is compromised once in the window."
    )
    risky_merchant_share: Probability = 0.05
    new_account_share: Probability = 0.1
    drift: DriftParams = DriftParams()

    @model_validator(mode="after")
    def _file_needs_path(self) -> DataParams:
        if self.source == "file" and not self.path:
            raise ValueError("data.path is required when data.source is 'file'")
        return self


class ValidateParams(_Strict):
    """Row-count bounds and tolerated label balance for the schema gate."""

    min_rows: PositiveInt = 1000
    max_rows: PositiveInt = 100_000_000
    min_fraud_rate: Probability = 0.001
    max_fraud_rate: Probability = 0.2

    @model_validator(mode="after")
    def _ordered(self) -> ValidateParams:
        if self.min_rows > self.max_rows:
            raise ValueError("validate.min_rows must not exceed validate.max_rows")
        if self.min_fraud_rate > self.max_fraud_rate:
            raise ValueError("validate.min_fraud_rate must not exceed validate.max_fraud_rate")
        return self


class FeatureParams(_Strict):
    """Which feature service is the model's contract, and how merchant fraud rates are smoothed.

    Feature windows are part of the feature views themselves (``src/mlops_recipes/views/``), not parameters:
    changing one means a new view in a new feature service version. ``service`` must be declared there (the
    ``since`` of a view); the features and dataset stages check it.
    """

    service: str = Field(default="fraud_model_v1", pattern=r"^[A-Za-z0-9_]+$")
    merchant_rate_prior_weight: Annotated[float, Field(gt=0)] = 20.0


class SplitParams(_Strict):
    """Time-based split: the last ``holdout_days`` are the holdout, after a gap that stops bursts straddling it."""

    holdout_days: Annotated[int, Field(ge=1)] = 10
    gap_hours: Annotated[int, Field(ge=0)] = 24


class HistGradientBoostingParams(_Strict):
    """The default model: gradient boosting that handles missing features natively."""

    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_iter: Annotated[int, Field(ge=1, le=5000)] = 200
    max_leaf_nodes: Annotated[int, Field(ge=2)] = 31
    min_samples_leaf: Annotated[int, Field(ge=1)] = 40
    l2_regularization: Annotated[float, Field(ge=0)] = 0.0
    early_stopping: bool = True


class LogisticRegressionParams(_Strict):
    """The linear alternative (imputed, scaled)."""

    C: Annotated[float, Field(gt=0)] = 1.0
    max_iter: Annotated[int, Field(ge=1)] = 1000


class TrainParams(_Strict):
    """Which model to train and how."""

    model: Literal["hist_gradient_boosting", "logistic_regression"] = "hist_gradient_boosting"
    seed: int = 42
    class_weight: Literal["balanced"] | None = None
    shuffle_labels: bool = Field(
        default=False, description="Sanity check: train on permuted labels; the gate must refuse the model."
    )
    hist_gradient_boosting: HistGradientBoostingParams = HistGradientBoostingParams()
    logistic_regression: LogisticRegressionParams = LogisticRegressionParams()


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


class SegmentParams(_Strict):
    """One way to cut the holdout into segments: by a column's values, or by bands of a number.

    ``column`` is a column of the validated transactions (the data contract: ``channel``, ``amount``,
    ``account_created_at``, ...) or of the holdout (a model feature). Without ``bands`` every distinct value is
    a segment; with ``bands`` (ascending edges) each band is one, named by ``labels`` (one more than edges). A
    timestamp column is banded by its age in days at the transaction (``account_created_at`` → account age).
    """

    name: Name
    column: str
    bands: tuple[float, ...] | None = None
    labels: tuple[Name, ...] | None = None

    @model_validator(mode="after")
    def _bands_and_labels(self) -> SegmentParams:
        if self.bands is not None:
            if not self.bands or list(self.bands) != sorted(set(self.bands)):
                raise ValueError(f"segment {self.name}: bands must be strictly ascending edges")
            if self.labels is not None and len(self.labels) != len(self.bands) + 1:
                raise ValueError(
                    f"segment {self.name}: {len(self.bands) + 1} labels needed for {len(self.bands)} edges"
                )
        elif self.labels is not None:
            raise ValueError(f"segment {self.name}: labels need bands")
        return self


# Segments every contract has (its amount and account-creation roles); params.yaml adds categorical fields.
DEFAULT_SEGMENTS = (
    SegmentParams(name="account_age", column=ACCOUNT_CREATED, bands=(30.0,), labels=("new", "established")),
    SegmentParams(name="amount_band", column=AMOUNT, bands=(50.0, 200.0), labels=("under_50", "50_to_200", "over_200")),
)


class EvaluateParams(_Strict):
    """Operating points reported on the holdout, and the segments metrics are broken down by."""

    max_fpr: Annotated[float, Field(gt=0, lt=1)] = 0.01
    top_k: PositiveInt = 100
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    segments: tuple[SegmentParams, ...] = DEFAULT_SEGMENTS

    @model_validator(mode="after")
    def _unique_segment_names(self) -> EvaluateParams:
        names = [s.name for s in self.segments]
        if len(names) != len(set(names)):
            raise ValueError(f"evaluate.segments: names must be unique, got {names}")
        return self


class SegmentGateParams(_Strict):
    """Optional per-segment checks in the gate; all off by default (no floor, no regression margin).

    Segment keys are ``<segment name>/<value or band label>``, e.g. ``channel/online`` or ``account_age/new``.
    """

    metric: Literal["pr_auc", "roc_auc", "recall_at_threshold", "precision_at_threshold"] = "pr_auc"
    min_positives: PositiveInt = Field(
        default=10, description="Segments with fewer frauds in the holdout are reported but not gated."
    )
    floor: Probability | None = Field(default=None, description="Every gated segment must reach this.")
    floors: dict[str, Probability] = Field(default_factory=dict, description="Per segment key, overrides floor.")
    max_regression: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None,
        description="Refuse a candidate that falls more than this below the champion (re-scored on the same "
        "holdout) on any gated segment.",
    )

    @property
    def active(self) -> bool:
        """Whether any segment check is configured."""
        return self.floor is not None or bool(self.floors) or self.max_regression is not None


class CardParams(_Strict):
    """What the model card says about use and limits, beyond what it reads from the run."""

    intended_use: str = (
        "Scores card transactions for fraud at authorisation time, from the customer's and merchant's recent "
        "activity (online features) and the transaction itself. A score at or above the threshold flags the "
        "transaction for review or step-up authentication; it is not meant to block cards on its own."
    )
    limitations: tuple[str, ...] = (
        "Trained and evaluated on the seeded synthetic generator shipped with the template unless data.source "
        "is 'file': its fraud patterns are illustrative, not real.",
        "Labels are taken as known at the end of each day; real chargebacks arrive weeks later, so the holdout "
        "flatters recent performance.",
        "Customers without history (no online features) are scored from the transaction alone.",
    )


class RegisterParams(_Strict):
    """The promotion gate: an absolute floor, a floor relative to chance, then a margin over the champion.

    ``min_skill`` means the same on any data: the share of the way from a random ranking's score on this
    holdout (the base rate for PR AUC) to a perfect one that the candidate must cover.
    """

    metric: Literal["pr_auc", "roc_auc", "recall_at_fpr", "precision_at_k"] = "pr_auc"
    floor: Probability = Field(default=0.0, description="Absolute floor on the metric's own scale (0: none).")
    min_skill: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.1, description="(score - chance) / (1 - chance) the candidate must reach on the holdout."
    )
    min_improvement: Annotated[float, Field(ge=-1, le=1)] = 0.0
    fail_on_reject: bool = Field(default=False, description="Exit non-zero (fail `dvc repro`) when the gate refuses.")
    segments: SegmentGateParams = SegmentGateParams()
    card: CardParams = CardParams()


class Params(_Strict):
    """Everything in ``params.yaml``."""

    data: DataParams = DataParams()
    validate_: ValidateParams = Field(default=ValidateParams(), alias="validate")
    features: FeatureParams = FeatureParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    register_: RegisterParams = Field(default=RegisterParams(), alias="register")

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _segment_floors_name_declared_segments(self) -> Params:
        declared = {s.name for s in self.evaluate.segments}
        unknown = sorted(k for k in self.register_.segments.floors if k.split("/", 1)[0] not in declared)
        if unknown:
            raise ValueError(
                f"register.segments.floors: {unknown} name no segment in evaluate.segments {sorted(declared)}"
            )
        return self


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: object, *, source: str = "params") -> Params:
    """Validate an already-loaded mapping; raise :class:`ParamsError` naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{source} is invalid:\n{_format_errors(error)}") from None


def load_params(path: Path) -> Params:
    """Read and validate ``params.yaml``."""
    from mlops_recipes.io.files import read_yaml

    return parse_params(read_yaml(path, error=ParamsError, what="parameters file"), source=str(path))


def json_schema() -> dict[str, object]:
    """The JSON Schema of ``params.yaml`` (``mlops params --schema``)."""
    return Params.model_json_schema(by_alias=True)
