"""A user's own transactions file through `dvc repro`: bad rows stop the pipeline at the schema gate.

One project copy with ``data.source: file`` runs the steps in order, as a user would: a broken CSV, the
fixed CSV, then the same data as Parquet with microsecond timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mlops_recipes.core.generator import generate_transactions
from mlops_recipes.params import DataParams

pytestmark = pytest.mark.integration

SOURCE = "incoming/transactions.csv"
# Rows (0-based, the numbering the validation report uses) broken on purpose, and how.
NEGATIVE_AMOUNT, PHONE_CHANNEL, BAD_TIMESTAMP = 17, 123, 2048


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    return generate_transactions(DataParams(n_customers=300, days=21, seed=7))


@pytest.fixture(scope="module")
def project(project_factory: Any) -> Any:
    return project_factory("baddata", {"data": {"source": "file", "path": SOURCE}})


def write_bad_csv(good: pd.DataFrame, path: Path) -> None:
    bad = good.astype({"event_timestamp": str})
    bad.loc[NEGATIVE_AMOUNT, "amount"] = -12.5
    bad.loc[PHONE_CHANNEL, "channel"] = "phone"
    bad.loc[BAD_TIMESTAMP, "event_timestamp"] = "yesterday-ish"
    bad.to_csv(path, index=False)


def failure(report: dict[str, Any], column: str, check: str) -> dict[str, Any]:
    matches = [f for f in report["failures"] if f["column"] == column and check in f["check"]]
    assert len(matches) == 1, f"no single {column}/{check} failure in {report['failures']}"
    return matches[0]


def test_bad_rows_fail_validate_with_a_report(project: Any, good: pd.DataFrame) -> None:
    assert len(good) > BAD_TIMESTAMP
    write_bad_csv(good, project.root / SOURCE)
    project.commit("broken transactions file")

    result = project.run("dvc", "repro", "validate", check=False)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    lines = output.splitlines()
    for column, check, row in (
        ("amount", "in_range", NEGATIVE_AMOUNT),
        ("channel", "isin", PHONE_CHANNEL),
        ("event_timestamp", "not_nullable", BAD_TIMESTAMP),
    ):
        assert any(f"column '{column}'" in line and check in line and f"rows [{row}]" in line for line in lines), (
            f"{column}/{check}/row {row} not reported:\n{output}"
        )
    assert "'phone'" in output
    assert "Traceback" not in output

    report = read_json(project.root / "reports/validation.json")
    assert report["status"] == "failed"
    assert failure(report, "amount", "in_range")["rows"] == [NEGATIVE_AMOUNT]
    assert failure(report, "amount", "in_range")["examples"] == ["-12.5"]
    assert failure(report, "channel", "isin")["rows"] == [PHONE_CHANNEL]
    assert failure(report, "channel", "isin")["examples"] == ["phone"]
    assert failure(report, "event_timestamp", "not_nullable")["rows"] == [BAD_TIMESTAMP]
    # Only the broken rows fail; every other row of the file is fine.
    assert {row for f in report["failures"] for row in f["rows"]} == {NEGATIVE_AMOUNT, PHONE_CHANNEL, BAD_TIMESTAMP}
    assert not (project.root / "data/validated/transactions.parquet").exists()


def test_dvc_sees_the_fixed_file(project: Any, good: pd.DataFrame) -> None:
    good.to_csv(project.root / SOURCE, index=False)

    status = project.run("dvc", "status", "ingest").stdout

    assert "ingest" in status


def test_fixed_file_passes_validate(project: Any, good: pd.DataFrame) -> None:
    good.to_csv(project.root / SOURCE, index=False)
    project.commit("fixed transactions file")

    project.run("dvc", "repro", "validate")

    report = read_json(project.root / "reports/validation.json")
    assert report["status"] == "passed"
    assert report["rows"] == len(good)
    validated = pd.read_parquet(project.root / "data/validated/transactions.parquet")
    assert validated["transaction_id"].tolist() == good["transaction_id"].tolist()
    pd.testing.assert_series_equal(validated["event_timestamp"], good["event_timestamp"])


def test_parquet_with_microsecond_timestamps_is_accepted(project: Any, good: pd.DataFrame) -> None:
    path = project.root / "incoming/transactions.parquet"
    micro = good.astype({"event_timestamp": "datetime64[us, UTC]", "account_created_at": "datetime64[us, UTC]"})
    micro.to_parquet(path, index=False)
    assert pq.read_schema(path).field("event_timestamp").type.unit == "us"
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["data"]["path"] = "incoming/transactions.parquet"
    (project.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    project.commit("transactions as Parquet")

    result = project.run("dvc", "repro", "validate")

    assert "Running stage 'ingest'" in result.stdout  # a changed data.path is a changed param
    report = read_json(project.root / "reports/validation.json")
    assert report["status"] == "passed"
    assert report["rows"] == len(good)
    validated = pd.read_parquet(project.root / "data/validated/transactions.parquet")
    assert str(validated["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert str(validated["account_created_at"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_series_equal(validated["event_timestamp"], good["event_timestamp"])
