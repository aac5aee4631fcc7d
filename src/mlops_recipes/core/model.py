"""The model: a scikit-learn Pipeline built from ``params.train``, stock estimators only.

Stock estimators keep MLflow's skops serialization simple (see the trusted types in ``stages/train.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_recipes.params import TrainParams


def build_model(params: TrainParams, *, categorical: Sequence[int] = ()) -> Pipeline:
    """An unfitted classifier pipeline; ``predict_proba(X)[:, 1]`` is the fraud probability.

    ``categorical`` are the matrix columns that hold a category's position in its declared domain (the
    contract's ``encoding: category``; NaN for unseen): gradient boosting splits on them as categories, the
    linear model one-hot encodes them (unseen values set no indicator). The encoding lives in the Pipeline
    MLflow logs, so every scorer passes the same float matrix.
    """
    indices = list(categorical)
    if params.model == "hist_gradient_boosting":
        hgb = params.hist_gradient_boosting
        classifier = HistGradientBoostingClassifier(
            learning_rate=hgb.learning_rate,
            max_iter=hgb.max_iter,
            max_leaf_nodes=hgb.max_leaf_nodes,
            min_samples_leaf=hgb.min_samples_leaf,
            l2_regularization=hgb.l2_regularization,
            early_stopping=hgb.early_stopping,
            class_weight=params.class_weight,
            random_state=params.seed,
            categorical_features=indices or None,
        )
        # Handles missing values natively: a new customer's NaN features are information, not noise.
        return Pipeline([("classifier", classifier)])
    logreg = params.logistic_regression
    classifier_step = (
        "classifier",
        LogisticRegression(
            C=logreg.C, max_iter=logreg.max_iter, class_weight=params.class_weight, random_state=params.seed
        ),
    )
    numeric = [
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
        ("scale", StandardScaler()),
    ]
    if not indices:
        return Pipeline([*numeric, classifier_step])
    encode = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore"), indices)], remainder=Pipeline(numeric)
    )
    return Pipeline([("encode", encode), classifier_step])


def check_training_features(features: pd.DataFrame) -> None:
    """Refuse a training matrix with a feature missing on every row, naming the columns.

    Such a column means a broken feature pipeline (a renamed column, an empty source), and scikit-learn 1.9's
    gradient boosting crashes on it with an unrelated-looking binning error.
    """
    empty = [str(column) for column in features.columns if features[column].isna().all()]
    if empty:
        raise ValueError(f"features missing on every training row (check the feature pipeline): {empty}")
