"""Runtime settings: where things live and which backends to use, read from the environment.

Pipeline *parameters* (what to compute) live in ``params.yaml`` (see :mod:`mlops_recipes.params`);
*settings* say where and against which services it runs. The embedded defaults need no server: a SQLite
MLflow store under the project root and Feast's local provider. The scaled profile flips the same code to
an MLflow server, Redis and Postgres through environment variables only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from mlops_recipes.contract import Contract


class Settings(BaseSettings):
    """Typed runtime settings. Build one per process with ``Settings()``; nothing is read at import."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", frozen=True)

    project_root: Path = Field(default_factory=Path.cwd)
    params_file: Path = Path("params.yaml")
    # The data contract (columns, roles, types, domains); the Feast definitions read the same variable.
    contract_file: Path = Path("contract.yaml")
    data_dir: Path = Path("data")
    reports_dir: Path = Path("reports")
    metrics_dir: Path = Path("metrics")
    plots_dir: Path = Path("plots")
    artifacts_dir: Path = Path("artifacts")
    feature_repo: Path = Path("feature_repo")
    # Which feature_store.yaml in the repo to use: the embedded one or feature_store.scaled.yaml.
    feast_config: str = Field(
        default="feature_store.yaml", validation_alias=AliasChoices("FEAST_CONFIG", "MLOPS_FEAST_CONFIG")
    )
    # None means the embedded default: an absolute SQLite URI under the project root (never cwd-relative).
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MLOPS_TRACKING_URI")
    )
    registry_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "MLOPS_REGISTRY_URI")
    )
    experiment_name: str = Field(
        default="fraud-detection", validation_alias=AliasChoices("MLFLOW_EXPERIMENT_NAME", "MLOPS_EXPERIMENT_NAME")
    )
    model_name: str = "fraud-detector"
    # The feedback loop (flows/monitor.py): where the retraining alerts are read, and whether they may retrain.
    prometheus_url: str = Field(default="http://127.0.0.1:9090", pattern=r"^https?://")
    auto_retrain: bool = True
    # The commit runs are tagged with when the project is not a git checkout (container images set it).
    git_commit: str | None = None

    @field_validator("project_root")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def path(self, relative: Path | str) -> Path:
        """Resolve a project-relative path against the project root."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.project_root / candidate

    @property
    def contract_path(self) -> Path:
        """The data contract every stage and the service derive from."""
        return self.path(self.contract_file)

    def contract(self) -> Contract:
        """Load and validate the data contract (raises :class:`~mlops_recipes.contract.ContractError`)."""
        from mlops_recipes.contract import load_contract

        return load_contract(self.contract_path)

    # The files the stages exchange; dvc.yaml names the same paths as deps and outs.
    @property
    def incoming_dir(self) -> Path:
        """Where users drop their own data; the ingest stage depends on this folder."""
        return self.path("incoming")

    @property
    def raw_transactions(self) -> Path:
        """Raw events as ingested (generated or the user's file, normalised to Parquet)."""
        return self.path(self.data_dir) / "raw" / "transactions.parquet"

    @property
    def validated_transactions(self) -> Path:
        """Events that passed the schema gate."""
        return self.path(self.data_dir) / "validated" / "transactions.parquet"

    @property
    def feature_tables_dir(self) -> Path:
        """Feature tables (Parquet) that Feast's file sources point at."""
        return self.path(self.data_dir) / "features"

    @property
    def dataset_dir(self) -> Path:
        """The point-in-time training set, split into train and holdout."""
        return self.path(self.data_dir) / "dataset"

    @property
    def train_run_file(self) -> Path:
        """What the train stage produced: MLflow run id, model URI, feature service."""
        return self.path(self.artifacts_dir) / "train_run.json"

    @property
    def holdout_metrics_file(self) -> Path:
        """Holdout metrics (a DVC metrics file)."""
        return self.path(self.metrics_dir) / "holdout.json"

    @property
    def segment_metrics_file(self) -> Path:
        """Holdout metrics per segment (a DVC metrics file)."""
        return self.path(self.metrics_dir) / "segments.json"

    @property
    def feature_repo_path(self) -> Path:
        """The Feast feature repository."""
        return self.path(self.feature_repo)

    @property
    def resolved_tracking_uri(self) -> str:
        """The MLflow tracking URI, absolute: a relative SQLite path would depend on the working directory."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{self.project_root / 'mlflow.db'}"

    @property
    def resolved_registry_uri(self) -> str:
        """The MLflow registry URI; the tracking store unless set apart."""
        return self.registry_uri or self.resolved_tracking_uri
