"""Time-based train / holdout split: the model is judged on the future it will face, never on the past."""

from __future__ import annotations

import pandas as pd

from mlops_recipes.contract import EVENT_TIME, LABEL
from mlops_recipes.errors import ReportedError


class SplitError(ReportedError, ValueError):
    """The split would leave a side empty or without both classes."""


def time_split(
    frame: pd.DataFrame, *, holdout_days: int, gap_hours: int, label: str = LABEL
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout = the last ``holdout_days`` of ``event_timestamp``; train = everything before it minus a gap.

    The gap keeps a burst of fraud that straddles the boundary from appearing on both sides.
    """
    end = frame[EVENT_TIME].max()
    holdout_start = end.floor("D") - pd.Timedelta(days=holdout_days - 1)
    train_end = holdout_start - pd.Timedelta(hours=gap_hours)
    train = frame.loc[frame[EVENT_TIME] < train_end]
    holdout = frame.loc[frame[EVENT_TIME] >= holdout_start]
    for name, part in (("train", train), ("holdout", holdout)):
        if part.empty:
            raise SplitError(f"{name} split is empty (holdout_days={holdout_days}, gap_hours={gap_hours})")
        if part[label].nunique() < 2:
            raise SplitError(f"{name} split has only one class of {label!r}; widen the data or the holdout")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)
