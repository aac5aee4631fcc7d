"""train: fit the model on the training split and log it to MLflow with signature and lineage tags."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops_recipes.contract import LABEL
from mlops_recipes.core.drift import REFERENCE_ARTIFACT, DriftReference
from mlops_recipes.core.model import build_model, check_training_features
from mlops_recipes.core.request_features import category_features, model_features
from mlops_recipes.io import tracking
from mlops_recipes.io.files import file_digest, read_parquet, write_json
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

# Pinned requirements instead of MLflow's inference, which re-imports the model's whole environment (~s).
_MODEL_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "scipy")
# skops refuses to load types it cannot audit; the gradient-boosting trees are ours, built in this stage.
_SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# Gradient boosting with categorical inputs (the contract's ``encoding: category``) keeps an input check that
# skops stores as a partial of scikit-learn's own check_array.
_SKOPS_CATEGORY_TYPES = ["functools.partial", "sklearn.utils.validation.check_array"]


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(f"{prefix}.{key}" if prefix else str(key), item)
        return out
    return {prefix: value}


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in _MODEL_REQUIREMENTS]


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Fit, log the run and the model, and write ``artifacts/train_run.json`` for the next stages."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.metrics import average_precision_score

    train_path = settings.dataset_dir / "train.parquet"
    train = read_parquet(train_path)
    contract = settings.contract()
    service = params.features.service
    names = model_features(contract, service)
    features = train[list(names)].astype("float64")
    check_training_features(features)
    labels = train[LABEL].to_numpy()
    if params.train.shuffle_labels:
        labels = np.random.default_rng(params.train.seed).permutation(labels)
    categories = category_features(contract)
    model = build_model(params.train, categorical=[names.index(name) for name in categories])

    client = tracking.client(settings)
    experiment_id = tracking.experiment_id(client, settings.experiment_name)
    abandoned = tracking.fail_abandoned_runs(client, experiment_id)
    tags = {
        **tracking.process_tags(),
        "git_commit": tracking.git_commit(settings),
        "feature_service": service,
        "data.train_md5": file_digest(train_path),
        "data.holdout_md5": file_digest(settings.dataset_dir / "holdout.parquet"),
        "data.raw_md5": file_digest(settings.raw_transactions),
        "model_family": params.train.model,
    }
    with (
        tracking.fluent(settings),  # log_model has no client-only form
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{params.train.model}", tags=tags) as run,
    ):
        mlflow.log_params(
            _flatten("train", params.train.model_dump()) | _flatten("data", params.data.model_dump(mode="json"))
        )
        # Fitted on a plain matrix in model_features(contract, service) order, the way every scorer calls it (serving,
        # batch, evaluate): scikit-learn then never warns about column names on the hot path.
        matrix = features.to_numpy()
        model.fit(matrix, labels)
        scores = model.predict_proba(matrix)[:, 1]
        mlflow.log_metrics({"train_pr_auc": float(average_precision_score(labels, scores)), "train_rows": len(train)})
        # What the service compares live inputs and scores with (drift gauges); loaded with the model version.
        reference = DriftReference.build(matrix, names, scores)
        mlflow.log_dict(reference.to_dict(), REFERENCE_ARTIFACT)
        sample = features.head(200)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(sample, model.predict_proba(sample.to_numpy())[:, 1]),
            input_example=features.head(3),
            pyfunc_predict_fn="predict_proba",
            pip_requirements=_requirements(),
            skops_trusted_types=_SKOPS_TRUSTED_TYPES + (_SKOPS_CATEGORY_TYPES if categories else []),
            tags={"feature_service": service},
        )
    result = {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": info.model_uri,
        "model_id": info.model_id,
        "feature_service": service,
        "features": list(names),
        "model_family": params.train.model,
        "shuffled_labels": params.train.shuffle_labels,
    }
    write_json(result, settings.train_run_file)
    summary = {"stage": "train", **{k: result[k] for k in ("run_id", "model_uri", "model_family")}}
    return summary | ({"abandoned_runs_failed": abandoned} if abandoned else {})
