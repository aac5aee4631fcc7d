"""core/model.py: the classifier pipeline built from ``params.train``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mlops_recipes.core.model import build_model, check_training_features
from mlops_recipes.params import HistGradientBoostingParams, LogisticRegressionParams, TrainParams

pytestmark = pytest.mark.unit

FAMILIES = ["hist_gradient_boosting", "logistic_regression"]


def _params(model: str, seed: int = 7) -> TrainParams:
    # Few iterations: the tests are about the contract, not the fit quality.
    return TrainParams(
        model=model,  # type: ignore[arg-type]
        seed=seed,
        hist_gradient_boosting=HistGradientBoostingParams(max_iter=30, min_samples_leaf=10),
    )


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    # On tiny data OpenMP thread start-up and contention cost seconds per fit; one thread takes milliseconds.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """400 rows, 5 features; the label follows feature 0; 15% of cells missing."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 1.0).astype(np.int64)
    x[rng.random(x.shape) < 0.15] = np.nan
    return x, y


@pytest.mark.parametrize("family", FAMILIES)
def test_fits_on_missing_values_and_returns_probabilities(family: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = build_model(_params(family)).fit(x, y)

    proba = model.predict_proba(x)

    assert proba.shape == (len(x), 2)
    assert np.all((proba >= 0.0) & (proba <= 1.0))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # The signal in feature 0 is learned: fraud rows score higher on average.
    assert proba[y == 1, 1].mean() > proba[y == 0, 1].mean() + 0.2


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_predictions(family: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data

    first = build_model(_params(family)).fit(x, y).predict_proba(x)
    second = build_model(_params(family)).fit(x, y).predict_proba(x)

    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("family", FAMILIES)
def test_clone_gives_an_equivalent_unfitted_estimator(family: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = build_model(_params(family)).fit(x, y)

    copy = clone(model)

    assert copy is not model
    assert copy.get_params().keys() == model.get_params().keys()
    with pytest.raises(Exception, match=r"(?i)not fitted"):
        copy.predict_proba(x)
    np.testing.assert_array_equal(copy.fit(x, y).predict_proba(x), model.predict_proba(x))


def test_logistic_regression_keeps_an_all_missing_column(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    x = np.column_stack([x, np.full(len(x), np.nan)])
    model = build_model(_params("logistic_regression")).fit(x, y)

    proba = model.predict_proba(x)[:, 1]

    assert np.isfinite(proba).all()
    # The empty column is kept (not silently dropped), so the coefficient count stays stable:
    # 6 imputed columns + 6 missing-indicators.
    assert model.steps[-1][1].coef_.shape == (1, 12)


def test_training_features_with_an_all_missing_column_are_refused_by_name() -> None:
    features = pd.DataFrame({"ok": [1.0, np.nan, 3.0], "broken": [np.nan, np.nan, np.nan]})

    with pytest.raises(ValueError, match=r"\['broken'\]"):
        check_training_features(features)


def test_training_features_partly_missing_are_accepted() -> None:
    check_training_features(pd.DataFrame({"a": [1.0, np.nan], "b": [np.nan, 2.0]}))


def test_hist_gradient_boosting_uses_the_params() -> None:
    params = TrainParams(
        seed=11,
        class_weight="balanced",
        hist_gradient_boosting=HistGradientBoostingParams(learning_rate=0.05, max_leaf_nodes=7, early_stopping=False),
    )

    classifier = build_model(params).steps[-1][1]

    assert isinstance(classifier, HistGradientBoostingClassifier)
    assert classifier.learning_rate == 0.05
    assert classifier.max_leaf_nodes == 7
    assert classifier.early_stopping is False
    assert classifier.class_weight == "balanced"
    assert classifier.random_state == 11


def test_logistic_regression_uses_the_params() -> None:
    params = TrainParams(model="logistic_regression", seed=3, logistic_regression=LogisticRegressionParams(C=0.25))

    model = build_model(params)

    classifier = model.steps[-1][1]
    assert isinstance(classifier, LogisticRegression)
    assert classifier.C == 0.25
    assert classifier.random_state == 3
    # The linear model cannot take NaN itself: something must impute before it.
    assert [name for name, _ in model.steps][:1] == ["impute"]


def test_build_returns_a_fresh_unfitted_pipeline_each_time() -> None:
    params = _params("hist_gradient_boosting")

    assert build_model(params) is not build_model(params)


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "logistic_regression"])
def test_category_inputs_are_encoded_inside_the_pipeline(family: str) -> None:
    # Column 0 holds a category's position in its declared domain (contract encoding: category); NaN is unseen.
    rng = np.random.default_rng(0)
    category = rng.integers(0, 4, 2_000).astype(np.float64)
    other = rng.normal(size=2_000)
    labels = ((category == 2) | (other > 1.5)).astype(int)
    matrix = np.column_stack([category, other])
    model = build_model(TrainParams(model=family), categorical=[0]).fit(matrix, labels)

    scores = model.predict_proba(np.array([[2.0, 0.0], [1.0, 0.0], [np.nan, 0.0], [7.0, 0.0]]))[:, 1]
    assert scores[0] > 0.8 > 0.2 > scores[1]  # the category itself carries the signal, not its number
    assert np.isfinite(scores).all()  # unseen (NaN) and out-of-domain positions still score
