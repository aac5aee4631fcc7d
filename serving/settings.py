"""Service settings from the environment (``SERVING_*``), validated once at start-up."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """How the service runs. Where the stores are comes from :class:`mlops_recipes.settings.Settings`."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore", frozen=True)

    model_alias: str = Field(default="champion", pattern=r"^[A-Za-z0-9_-]+$")
    poll_interval_s: float = Field(default=10.0, gt=0, description="How often the registry alias is checked.")
    threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Overrides the decision threshold recorded on the served version (the one its gate metrics were "
        "computed at), with a warning at every load. Unset: the version's own threshold decides.",
    )
    max_batch: int = Field(default=256, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_timeout_s: float = Field(default=2.0, gt=0)
    scoring_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Scoring calls running at once per worker process. 1 suits the embedded SQLite store (CPU-bound "
        "under the GIL); raise it when online lookups wait on the network (Redis elsewhere).",
    )
    update_customer_features: bool = Field(
        default=True,
        description="Record every scored transaction in its customer's online features (the next transaction sees "
        "it, as in training). Off: the service only reads the store (benchmarks, read-only replicas).",
    )
    max_clock_skew_s: float = Field(
        default=300.0, ge=0, description="How far in the future an event_timestamp may lie (clients' clock skew)."
    )
    max_event_age_s: float = Field(
        default=30 * 86400.0,
        gt=0,
        description="How far in the past an event_timestamp may lie: older than the longest feature window (7 d), "
        "the online features no longer describe that moment.",
    )
    load_retry_base_s: float = Field(
        default=5.0, gt=0, description="First wait before loading a version again after a transient failure."
    )
    load_retry_max_s: float = Field(default=300.0, gt=0, description="Longest wait between such retries.")
    max_alias_skew_s: float = Field(
        default=600.0,
        gt=0,
        description="How long the served version may differ from the alias' before served_model_behind_alias is 1.",
    )
    mlflow_http_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="MLFLOW_HTTP_REQUEST_MAX_RETRIES unless set: MLflow's default (7, with backoff factor 2) blocks "
        "a start with the tracking server down for minutes.",
    )
    mlflow_http_timeout_s: int = Field(
        default=10, ge=1, description="MLFLOW_HTTP_REQUEST_TIMEOUT unless set (MLflow's default: 120 s)."
    )
    api_key: SecretStr | None = Field(default=None, description="If set, scoring routes need X-API-Key.")
    feedback_api_key: SecretStr | None = Field(
        default=None,
        description="If set, /feedback takes X-API-Key with this key only (unset: SERVING_API_KEY's rule).",
    )
    drift_window_rows: int = Field(
        default=2000, ge=100, le=1_000_000, description="Latest scored rows compared with the training reference."
    )
    drift_min_rows: int = Field(default=500, ge=1, description="Rows the window needs before PSI is published.")
    monitor_interval_s: float = Field(
        default=10.0, gt=0, description="How often drift, feature freshness and registry aliases are published."
    )
    remembered_scores: int = Field(
        default=100_000, ge=0, le=10_000_000, description="Scores kept (by transaction_id) for delayed labels."
    )
    rollout_shadow_queue: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Transactions waiting for the shadow candidate at most; beyond, they are dropped and counted.",
    )
    rollout_score_window: int = Field(
        default=2000, ge=100, le=1_000_000, description="Recent scores per variant for the rollout's score PSI."
    )
    log_level: str = "INFO"
    json_logs: bool = True
    metrics_enabled: bool = True

    @model_validator(mode="after")
    def _window_holds_min_rows(self) -> ServingSettings:
        if self.drift_min_rows > self.drift_window_rows:
            raise ValueError(
                f"SERVING_DRIFT_MIN_ROWS ({self.drift_min_rows}) exceeds SERVING_DRIFT_WINDOW_ROWS "
                f"({self.drift_window_rows}): drift would never be published"
            )
        return self

    @field_validator("api_key", "feedback_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        # `SERVING_API_KEY: ${SERVING_API_KEY:-}` in compose passes an empty string when the key is not set.
        return None if value == "" else value

    @field_validator("api_key", "feedback_api_key")
    @classmethod
    def _no_weak_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            name = f"SERVING_{(info.field_name or '').upper()}"
            raise ValueError(f"{name} must be at least 16 characters (or unset to disable auth)")
        return value

    @model_validator(mode="after")
    def _labels_key_is_its_own(self) -> ServingSettings:
        # Whoever may score must not be able to send labels (fake labels drive live recall and retraining).
        if self.feedback_api_key is not None and self.feedback_api_key == self.api_key:
            raise ValueError("SERVING_FEEDBACK_API_KEY must differ from SERVING_API_KEY")
        return self
