"""Ingest by contract: a source table's columns renamed to the internal names and parsed to their types.

Every structural problem is reported at once (all missing columns, all undeclared ones), each naming the
contract key to change. Values that do not parse (a timestamp in another format, text in an amount) become
missing and are counted here; the schema gate then names their rows (:mod:`mlops_recipes.core.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_recipes.contract import TRANSACTION_ID, Contract, IdColumn, TimeColumn
from mlops_recipes.errors import ReportedError

_EXAMPLES = 5
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


class ContractMismatchError(ReportedError, ValueError):
    """The source table does not have the shape the contract declares; ``problems`` lists every mismatch."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"the data does not match the contract ({len(problems)} problem(s)):\n"
            + "\n".join(f"  {p}" for p in problems)
        )


@dataclass
class ConformReport:
    """Values that could not be parsed per contract key (they are missing in the output)."""

    unparsed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, key: str, source: str, raw: pd.Series, bad: pd.Series, hint: str) -> None:
        """Record ``bad`` rows of ``raw`` (a boolean mask) under ``key``."""
        count = int(bad.sum())
        if count:
            examples = [str(v) for v in raw[bad].head(_EXAMPLES)]
            self.unparsed[key] = {"source": source, "count": count, "examples": examples, "hint": hint}


def conform(frame: pd.DataFrame, contract: Contract, *, with_label: bool = True) -> tuple[pd.DataFrame, ConformReport]:
    """Rename, drop ignored columns, parse types; a missing transaction id is derived from the row.

    ``with_label=False`` (batch scoring) accepts a table without the label column.
    """
    sources = contract.source_columns()
    internal = contract.internal_columns()
    if not with_label:
        sources.pop("columns.label")
        internal.pop("columns.label")
    problems = [
        f"{key}: source column {column!r} is not in the data" for key, column in sources.items() if column not in frame
    ]
    declared = {*sources.values(), *contract.ignore, contract.columns.label.source}
    undeclared = [str(c) for c in frame.columns if c not in declared]
    if undeclared:
        problems.append(f"ignore: columns {undeclared} are not in the contract; map them to a field or list them here")
    if problems:
        problems.append(f"(the data has columns {[str(c) for c in frame.columns]})")
        raise ContractMismatchError(problems)

    report = ConformReport()
    out = pd.DataFrame(index=frame.index)
    if contract.columns.transaction_id is None:
        out[TRANSACTION_ID] = row_ids(frame, sorted(sources.values()))
    for key, column in internal.items():
        raw = frame[sources[key]]
        out[column] = _parse(key, raw, contract, report)
    return out.reset_index(drop=True), report


def row_ids(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Deterministic ids from a hash of the row's values in ``columns`` (same row, same id, any order)."""
    hashes = pd.util.hash_pandas_object(frame[columns].astype(str), index=False).to_numpy(dtype=np.uint64)
    return pd.Series([f"h{h:016x}" for h in hashes.tolist()], index=frame.index, dtype=object)


def _parse(key: str, raw: pd.Series, contract: Contract, report: ConformReport) -> pd.Series:
    role = key.split(".", 1)[1]
    source = str(raw.name)
    if key.startswith("categorical."):
        present = raw.notna()
        return raw.where(~present, raw.astype(str).str.strip()).astype(object)
    spec = getattr(contract.columns, role, None) if key.startswith("columns.") else None
    if isinstance(spec, IdColumn):
        return _parse_id(key, raw, spec, report)
    if isinstance(spec, TimeColumn):
        return _parse_time(key, raw, spec, report)
    if key == "columns.label":
        return _parse_label(key, raw, report)
    numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
    report.add(key, source, raw, raw.notna() & numbers.isna(), "not a number")
    return numbers


def _parse_id(key: str, raw: pd.Series, spec: IdColumn, report: ConformReport) -> pd.Series:
    if spec.type == "string":
        text = raw.astype(object).where(raw.isna(), raw.astype(str))
        return text
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & (numbers.isna() | (numbers % 1 != 0))
    report.add(key, spec.source, raw, bad, f"not an integer: set {key}.type: string")
    if numbers.isna().any() or bad.any():
        return numbers.where(~bad).astype("float64")  # missing ids fail the schema with their rows
    return numbers.astype("int64")


def _parse_time(key: str, raw: pd.Series, spec: TimeColumn, report: ConformReport) -> pd.Series:
    hint = f"not a timestamp in format {spec.format!r}: check {key}.format"
    if spec.format in {"epoch_s", "epoch_ms"}:
        seconds = pd.to_numeric(raw, errors="coerce") / (1.0 if spec.format == "epoch_s" else 1000.0)
        parsed = pd.to_datetime(seconds, unit="s", utc=True)
    elif isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize(spec.timezone).dt.tz_convert("UTC")
    else:
        text = raw.astype(object).where(raw.isna(), raw.astype(str).str.strip())
        fmt = spec.format
        if spec.timezone == "UTC":
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        else:
            parsed = text.map(lambda v: _localized(v, fmt, spec.timezone))
            parsed = pd.to_datetime(parsed, errors="coerce", utc=True)
    report.add(key, spec.source, raw, raw.notna() & parsed.isna(), hint)
    return parsed.astype("datetime64[ns, UTC]")


def _localized(value: Any, fmt: str | None, zone: str) -> pd.Timestamp | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        stamp = pd.Timestamp(pd.to_datetime(value, format=fmt))
    except (ValueError, TypeError):
        return None
    localized: pd.Timestamp = stamp.tz_localize(zone) if stamp.tzinfo is None else stamp
    return localized


def _parse_label(key: str, raw: pd.Series, report: ConformReport) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_integer_dtype(raw.dtype):
        return raw.astype("int64")
    text = raw.astype(str).str.strip().str.lower().str.removesuffix(".0")
    label = pd.Series(np.where(text.isin(_TRUE), 1, np.where(text.isin(_FALSE), 0, -1)), index=raw.index)
    report.add(key, str(raw.name), raw, label == -1, "not 0/1 or true/false")
    return label.astype("int64")  # -1 fails the schema's 0/1 check with its rows
