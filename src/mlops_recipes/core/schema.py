"""The data contract for raw transactions, checked before anything is computed from them.

A failure names the column, the check and a few offending rows (:class:`DataValidationError`), so that bad
data stops ``dvc repro`` with a message a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlops_recipes.core.request_features import CHANNELS
from mlops_recipes.params import ValidateParams

MAX_AMOUNT = 1_000_000.0
_EXAMPLES_PER_CHECK = 5


class DataValidationError(ValueError):
    """The data broke the schema; ``failures`` lists each broken check with example rows."""

    def __init__(self, failures: list[dict[str, Any]]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} schema check(s) failed:"]
        for failure in failures:
            shown = f" -> {failure['examples']}" if failure["examples"] else ""
            lines.append(
                f"  column {failure['column']!r}, check {failure['check']!r}: "
                f"{failure['count']} failing row(s), e.g. rows {failure['rows']}{shown}"
            )
        super().__init__("\n".join(lines))


def transaction_schema(params: ValidateParams) -> pa.DataFrameSchema:
    """The raw-transaction schema, with row-count and label-balance bounds from ``params``."""
    utc = pd.DatetimeTZDtype(tz="UTC")
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column("int64", unique=True),
            "event_timestamp": pa.Column(utc),
            "customer_id": pa.Column("int64", pa.Check.ge(1)),
            "merchant_id": pa.Column("int64", pa.Check.ge(1)),
            "amount": pa.Column("float64", pa.Check.in_range(0.0, MAX_AMOUNT, include_min=False)),
            "channel": pa.Column(str, pa.Check.isin(CHANNELS)),
            "account_created_at": pa.Column(utc),
            "is_fraud": pa.Column("int64", pa.Check.isin([0, 1])),
        },
        checks=[
            pa.Check(
                lambda df: params.min_rows <= len(df) <= params.max_rows,
                name=f"row_count_between_{params.min_rows}_and_{params.max_rows}",
            ),
            pa.Check(
                lambda df: params.min_fraud_rate <= df["is_fraud"].mean() <= params.max_fraud_rate,
                name=f"fraud_rate_between_{params.min_fraud_rate}_and_{params.max_fraud_rate}",
            ),
            pa.Check(
                lambda df: df["account_created_at"] <= df["event_timestamp"],
                name="account_created_before_transaction",
            ),
        ],
        strict="filter",  # extra columns in a user's file are dropped, not an error
        coerce=False,
    )


@dataclass(frozen=True)
class ValidationSummary:
    """What passed: sizes and label balance, for the report."""

    rows: int
    fraud_rate: float
    start: str
    end: str
    customers: int
    merchants: int
    checks: list[str] = field(default_factory=list)


def validate_transactions(frame: pd.DataFrame, params: ValidateParams) -> tuple[pd.DataFrame, ValidationSummary]:
    """Validate ``frame`` against the contract; return it (extra columns dropped) and a summary."""
    schema = transaction_schema(params)
    try:
        valid = schema.validate(frame, lazy=True)
    except SchemaErrors as error:
        table_checks = {str(check.name) for check in schema.checks}
        raise DataValidationError(_failures(error.failure_cases, table_checks)) from None
    summary = ValidationSummary(
        rows=len(valid),
        fraud_rate=float(valid["is_fraud"].mean()),
        start=valid["event_timestamp"].min().isoformat(),
        end=valid["event_timestamp"].max().isoformat(),
        customers=int(valid["customer_id"].nunique()),
        merchants=int(valid["merchant_id"].nunique()),
        checks=[*schema.columns, *(check.name for check in schema.checks)],
    )
    return valid, summary


def _failures(cases: pd.DataFrame, table_checks: set[str]) -> list[dict[str, Any]]:
    # A table-wide check fails once per row, but pandera reports it once per column of that row.
    cases = cases.assign(column=cases["column"].where(~cases["check"].isin(table_checks), None))
    cases = cases.drop_duplicates(["column", "check", "index"])
    failures = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        examples = group.head(_EXAMPLES_PER_CHECK)
        failures.append(
            {
                "column": str(column) if isinstance(column, str) else "<table>",
                "check": str(check),
                "count": len(group),
                "rows": [None if pd.isna(i) else int(i) for i in examples["index"]],
                # A table-wide check has no single failing value; the rows say where to look.
                "examples": [] if check in table_checks else [str(v) for v in examples["failure_case"]],
            }
        )
    return failures
