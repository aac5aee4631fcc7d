"""Opt-in pytest plugin: wall and CPU seconds per test, to find where the suite's time goes.

``pytest -p support.cpu_times`` with ``MLOPS_TEST_TIMES=path.json`` writes one record per test (setup, call and
teardown together, so a session fixture counts against the first test that needs it). CPU seconds are the test
process's own plus those of the children it reaped (`dvc repro`, services once stopped): on a machine shared
with other work they stay comparable where wall times do not.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path

import pytest

_RECORDS: list[dict[str, float | str]] = []


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    cpu, wall = _cpu_seconds(), time.monotonic()
    try:
        return (yield)
    finally:
        _RECORDS.append(
            {"id": item.nodeid, "wall": round(time.monotonic() - wall, 3), "cpu": round(_cpu_seconds() - cpu, 3)}
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the records (also after Ctrl-C: the tests run so far)."""
    target = os.environ.get("MLOPS_TEST_TIMES")
    if target:
        worker = os.environ.get("PYTEST_XDIST_WORKER")  # under pytest-xdist: one file per worker process
        Path(f"{target}.{worker}" if worker else target).write_text(json.dumps(_RECORDS, indent=0))
