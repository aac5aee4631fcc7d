"""validate: the schema gate. Bad data stops the pipeline here with a report in ``reports/validation.json``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mlops_recipes.core.schema import DataValidationError, validate_transactions
from mlops_recipes.io.files import read_parquet, write_json, write_parquet
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Validate the raw transactions; write them to ``data/validated/`` only if they pass."""
    report_path = settings.path(settings.reports_dir) / "validation.json"
    frame = read_parquet(settings.raw_transactions)
    try:
        valid, summary = validate_transactions(frame, params.validate_, settings.contract())
    except DataValidationError as error:
        write_json(
            {"status": "failed", "source": str(settings.raw_transactions), "failures": error.failures}, report_path
        )
        settings.validated_transactions.unlink(missing_ok=True)  # never leave stale data that looks valid
        raise
    write_parquet(valid, settings.validated_transactions)
    write_json({"status": "passed", **asdict(summary)}, report_path)
    return {"stage": "validate", "status": "passed", "rows": summary.rows, "fraud_rate": round(summary.fraud_rate, 4)}
