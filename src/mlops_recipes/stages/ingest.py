"""ingest: raw transactions from the seeded generator or the user's own Parquet/CSV file, conformed to the contract.

The output has the internal column names and types (:mod:`mlops_recipes.contract`); values that did not parse
are missing there and counted in the summary, and the validate stage names their rows.
"""

from __future__ import annotations

import logging
from typing import Any

from mlops_recipes.core.conform import conform
from mlops_recipes.core.generator import generate_transactions
from mlops_recipes.io.files import read_table, write_parquet
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

_log = logging.getLogger(__name__)


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Write ``data/raw/transactions.parquet``."""
    data = params.data
    if data.source == "synthetic":
        source_frame = generate_transactions(data)
        origin = f"synthetic(seed={data.seed})"
    else:
        source = settings.path(data.path or "")  # DataParams guarantees a path for file sources
        if not source.resolve().is_relative_to(settings.incoming_dir.resolve()):
            _log.warning("%s is outside %s: DVC will not notice when it changes", source, settings.incoming_dir)
        source_frame = read_table(source)
        origin = str(source)
    frame, report = conform(source_frame, settings.contract())
    for key, problem in report.unparsed.items():
        _log.warning("%s: %d value(s) %s, e.g. %s", key, problem["count"], problem["hint"], problem["examples"])
    write_parquet(frame, settings.raw_transactions)
    return {
        "stage": "ingest",
        "source": origin,
        "rows": len(frame),
        "output": str(settings.raw_transactions),
        "unparsed": report.unparsed,
    }
