"""The holdout as every judge of a model reads it: the evaluate stage, the gate, ``mlops promote`` and ``compare``.

Metrics are always computed at a model's own decision threshold (the one recorded on its version, or for a
candidate the ``evaluate.threshold`` that registration will record): the gate compares what production decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_recipes.contract import ACCOUNT_CREATED, EVENT_TIME, LABEL, TRANSACTION_ID
from mlops_recipes.core import segments
from mlops_recipes.core.metrics import holdout_metrics
from mlops_recipes.errors import MissingInputError
from mlops_recipes.io.files import read_parquet
from mlops_recipes.params import EvaluateParams, Params
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def read(settings: Settings) -> pd.DataFrame:
    """The holdout split the dataset stage wrote."""
    return read_parquet(settings.dataset_dir / "holdout.parquet")


def metrics(holdout: pd.DataFrame, scores: np.ndarray, params: EvaluateParams, *, threshold: float) -> dict[str, float]:
    """Scalar metrics of scored holdout rows, deciding at ``threshold``."""
    return holdout_metrics(
        holdout[LABEL].to_numpy(),
        scores,
        max_fpr=params.max_fpr,
        top_k=params.top_k,
        threshold=threshold,
        bins=params.calibration_bins,
    )


def segment_labels(settings: Settings, params: Params, holdout: pd.DataFrame) -> pd.DataFrame:
    """Each holdout row's segment label per ``evaluate.segments``.

    Columns come from the validated transactions (the data contract: channel, account_created_at, amount, ...)
    or, failing that, from the holdout itself (a model feature).
    """
    import pandas as pd

    # A segment over the account-creation date means nothing for data without one (contract: account_created null).
    without_account_date = not settings.contract().has_account_created
    specs = tuple(s for s in params.evaluate.segments if not (without_account_date and s.column == ACCOUNT_CREATED))
    if not specs:
        return pd.DataFrame(index=holdout.index)
    needed = {spec.column for spec in specs} | {EVENT_TIME}
    path = settings.validated_transactions
    if not path.is_file():
        raise MissingInputError(f"{path} not found; run the stage that writes it first (dvc repro)")
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    from_raw = sorted((needed & available) - {TRANSACTION_ID})
    raw = pd.read_parquet(path, columns=[TRANSACTION_ID, *from_raw])
    frame = holdout[[TRANSACTION_ID]].merge(raw, on=TRANSACTION_ID, how="left", validate="one_to_one")
    frame.index = holdout.index
    for column in needed - set(from_raw):
        if column in holdout:
            frame[column] = holdout[column]
    return segments.assign_all(frame, specs)


def segment_table(
    settings: Settings,
    params: Params,
    holdout: pd.DataFrame,
    scores: np.ndarray,
    *,
    threshold: float,
    labels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Metrics per segment of scored holdout rows at ``threshold`` (see :func:`segments.segment_metrics`)."""
    if labels is None:
        labels = segment_labels(settings, params, holdout)
    return segments.segment_metrics(holdout[LABEL].to_numpy(), scores, labels, threshold=threshold)
