"""The schema gate for ingested transactions, derived from the data contract (:mod:`mlops_recipes.contract`).

Every failure is reported at once (pandera's lazy mode): each names the column, the check, a few offending
rows and values, and the contract key or parameter to change (:class:`DataValidationError`), so that bad
data stops ``dvc repro`` with a message a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlops_recipes.contract import (
    ACCOUNT_CREATED,
    AMOUNT,
    CUSTOMER,
    EVENT_TIME,
    LABEL,
    MERCHANT,
    TRANSACTION_ID,
    Contract,
)
from mlops_recipes.errors import ReportedError
from mlops_recipes.params import ValidateParams

_EXAMPLES_PER_CHECK = 5
_ROW_COUNT = "row_count"
_FRAUD_RATE = "fraud_rate"


class DataValidationError(ReportedError, ValueError):
    """The data broke the schema; ``failures`` lists each broken check with example rows."""

    def __init__(self, failures: list[dict[str, Any]]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} schema check(s) failed:"]
        for failure in failures:
            shown = f" -> {failure['examples']}" if failure["examples"] else ""
            fix = f" (change: {failure['key']})" if failure.get("key") else ""
            if failure["check"] == "column_in_dataframe":
                lines.append(f"  missing column(s) {failure['examples']}{fix}")
                continue
            lines.append(
                f"  column {failure['column']!r}, check {failure['check']!r}: "
                f"{failure['count']} failing row(s), e.g. rows {failure['rows']}{shown}{fix}"
            )
        super().__init__("\n".join(lines))


def transaction_schema(params: ValidateParams, contract: Contract) -> pa.DataFrameSchema:
    """The ingested-transaction schema from the contract, with row-count and label-balance bounds from ``params``."""
    utc = pd.DatetimeTZDtype(tz="UTC")

    def key(column: str, **kwargs: Any) -> pa.Column:
        if contract.id_type(column) == "int":  # non-negative, as the API accepts them
            return pa.Column("int64", pa.Check.ge(0), **kwargs)
        return pa.Column(str, pa.Check.str_length(min_value=1), **kwargs)

    columns: dict[str, pa.Column] = {
        TRANSACTION_ID: key(TRANSACTION_ID, unique=True),
        EVENT_TIME: pa.Column(utc),
        CUSTOMER: key(CUSTOMER),
        MERCHANT: key(MERCHANT),
        AMOUNT: pa.Column("float64", pa.Check.in_range(0.0, contract.columns.amount.max, include_min=False)),
    }
    for name, categorical in contract.categorical.items():
        checks = [] if categorical.open else [pa.Check.isin(categorical.values)]
        columns[name] = pa.Column(str, checks)
    for name, numeric in contract.numeric.items():
        bounds = []
        if numeric.min is not None:
            bounds.append(pa.Check.ge(numeric.min))
        if numeric.max is not None:
            bounds.append(pa.Check.le(numeric.max))
        columns[name] = pa.Column("float64", bounds, nullable=numeric.optional)
    table_checks = [
        pa.Check(
            lambda df: params.min_rows <= len(df) <= params.max_rows,
            name=f"{_ROW_COUNT}_between_{params.min_rows}_and_{params.max_rows}",
        ),
        pa.Check(
            lambda df: params.min_fraud_rate <= df[LABEL].mean() <= params.max_fraud_rate,
            name=f"{_FRAUD_RATE}_between_{params.min_fraud_rate}_and_{params.max_fraud_rate}",
        ),
    ]
    if contract.has_account_created:
        columns[ACCOUNT_CREATED] = pa.Column(utc)
        table_checks.append(
            pa.Check(lambda df: df[ACCOUNT_CREATED] <= df[EVENT_TIME], name="account_created_before_transaction")
        )
    columns[LABEL] = pa.Column("int64", pa.Check.isin([0, 1]))
    return pa.DataFrameSchema(
        columns,
        checks=table_checks,
        strict="filter",  # columns outside the contract are dropped, not an error
        coerce=False,
    )


def fix_for(check: str, column: str | None, contract: Contract) -> str:
    """The contract key or parameter that a failing check points at (for the message and the report)."""
    if check.startswith(_ROW_COUNT):
        return "validate.min_rows / validate.max_rows in params.yaml, or the data"
    if check.startswith(_FRAUD_RATE):
        return "validate.min_fraud_rate / validate.max_fraud_rate in params.yaml, or columns.label in the contract"
    if check == "account_created_before_transaction":
        return "the data, or columns.account_created (its timezone, or null to drop account age)"
    if column is None:
        return "the contract's columns"
    key = contract.key_of(column)
    if check.startswith("isin") and key.startswith("categorical."):
        return f"{key}.values (or {key}.open: true) in the contract, or the data"
    if check == "not_nullable" and column in (EVENT_TIME, ACCOUNT_CREATED):
        return f"{key}.format / {key}.timezone in the contract, or the data"
    if check.startswith("dtype") or check == "not_nullable":
        return f"{key} in the contract (source column, type or format), or the data"
    if check.startswith("in_range") and column == AMOUNT:
        return f"{key}.max in the contract, or the data"
    return f"{key} in the contract, or the data"


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


def validate_transactions(
    frame: pd.DataFrame, params: ValidateParams, contract: Contract
) -> tuple[pd.DataFrame, ValidationSummary]:
    """Validate ``frame`` against the contract; return it (extra columns dropped) and a summary."""
    schema = transaction_schema(params, contract)
    missing = [column for column in schema.columns if column not in frame.columns]
    if missing:  # one failure naming them all, not one per column with no row to show
        keys = ", ".join(contract.key_of(column) for column in missing)
        raise DataValidationError(
            [
                {
                    "column": "<table>",
                    "check": "column_in_dataframe",
                    "count": len(missing),
                    "rows": [],
                    "examples": missing,
                    "key": f"{keys} in the contract",
                }
            ]
        )
    try:
        valid = schema.validate(frame, lazy=True)
    except SchemaErrors as error:
        table_checks = {str(check.name) for check in schema.checks}
        raise DataValidationError(_failures(error.failure_cases, table_checks, contract)) from None
    summary = ValidationSummary(
        rows=len(valid),
        fraud_rate=float(valid[LABEL].mean()),
        start=valid[EVENT_TIME].min().isoformat(),
        end=valid[EVENT_TIME].max().isoformat(),
        customers=int(valid[CUSTOMER].nunique()),
        merchants=int(valid[MERCHANT].nunique()),
        checks=[*schema.columns, *(check.name for check in schema.checks)],
    )
    return valid, summary


def _failures(cases: pd.DataFrame, table_checks: set[str], contract: Contract) -> list[dict[str, Any]]:
    # A table-wide check fails once per row, but pandera reports it once per column of that row.
    cases = cases.assign(column=cases["column"].where(~cases["check"].isin(table_checks), None))
    cases = cases.drop_duplicates(["column", "check", "index"])
    failures = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        examples = group.head(_EXAMPLES_PER_CHECK)
        name = str(column) if isinstance(column, str) else None
        failures.append(
            {
                "column": name or "<table>",
                "key": fix_for(str(check), name, contract),
                "check": str(check),
                "count": len(group),
                "rows": [None if pd.isna(i) else int(i) for i in examples["index"]],
                # A table-wide check has no single failing value; the rows say where to look.
                "examples": [] if check in table_checks else [str(v) for v in examples["failure_case"]],
            }
        )
    return failures
