"""Fixtures shared by every test: tiny parameters and a throw-away copy of the project."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings
from support import project_copy, tools
from support.project import PROCESS_LOCAL_PREFIXES, REPO_ROOT, project_env

# No per-example time limit in property tests: the suite runs under xdist beside container builds on 2 cores, where
# an example's first call (a lazy import, a page fault) took ~1 s against Hypothesis' default 200 ms deadline and
# failed a correct test. Speed is the benchmarks' business (bench/), never a test's.
settings.register_profile("mlops", deadline=None)
settings.load_profile("mlops")

# What a project copy needs: the pipeline definition, its params, the feature repo, the code DVC hashes and the
# shells, which are not installed (the wheel is the library only) and run from the project folder as a user's do:
# `python -m serving` and Prefect's flow runs import them from their working directory, the copy.
PROJECT_FILES = (
    "dvc.yaml",
    "params.yaml",
    "contract.yaml",
    ".dvcignore",
    ".gitignore",
    "feature_repo",
    "src",
    "incoming",
    "serving",
    "flows",
    ".dvc/config",
)

# Small enough to run the whole pipeline in seconds (after imports), big enough for both classes everywhere.
TINY_PARAMS: dict[str, Any] = {
    "data": {"n_customers": 300, "n_merchants": 40, "days": 21, "seed": 7},
    "validate": {"min_rows": 500},
    "split": {"holdout_days": 5, "gap_hours": 12},
    "train": {"hist_gradient_boosting": {"max_iter": 60}},
    "register": {"floor": 0.2},
}


# The process-local variables at session start (normally none; ``import feast`` sets PROMETHEUS_MULTIPROC_DIR,
# the project's code restores MLflow's URIs itself, see ``io/tracking.fluent``): every test starts from them and
# leaves them as it found them, so that one test's project does not leak into the next test's in-process Settings().
_BASELINE = {k: v for k, v in os.environ.items() if k.startswith(PROCESS_LOCAL_PREFIXES)}


def _reset_process_local_environment() -> None:
    for key in [k for k in os.environ if k.startswith(PROCESS_LOCAL_PREFIXES)]:
        del os.environ[key]
    os.environ.update(_BASELINE)


@pytest.fixture(autouse=True)
def _isolate_environment() -> Iterator[None]:
    # Reset before the test too: a module- or session-scoped fixture set up just before it may have leaked.
    _reset_process_local_environment()
    yield
    _reset_process_local_environment()


# --- External tools (tests/support/tools.py): one fixture each; tests using one are marked `tools` ------------------


@pytest.fixture(scope="session")
def tool_promtool() -> str:
    """Path of ``promtool`` (skips, or fails under MLOPS_REQUIRE_TOOLS=1, when it is missing)."""
    return tools.require("promtool")


@pytest.fixture(scope="session")
def tool_prometheus() -> str:
    """Path of the ``prometheus`` server binary."""
    return tools.require("prometheus")


@pytest.fixture(scope="session")
def tool_chromium() -> str:
    """Path of a headless-capable Chromium."""
    return tools.require("chromium")


@pytest.fixture(scope="session")
def tool_compose() -> str:
    """Path of Docker Compose (``docker-compose``, or the v2 plugin's binary): ``config`` needs no engine."""
    return tools.require("compose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs an external tool, directly or through another fixture."""
    for item in items:
        if any(name.startswith(tools.FIXTURE_PREFIX) for name in getattr(item, "fixturenames", ())):
            item.add_marker(tools.MARKER)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Give every tool skip one location, so that ``-ra`` folds them all into a single summary line.

    A skip raised in a fixture is reported at the test's own line, one summary line per test otherwise.
    """
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and tools.SKIP_PREFIX in str(longrepr[2]):
        report.longrepr = (tools.__file__, tools.SKIP_LINE, longrepr[2])
    return report


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Project:
    """A copy of the template in a temporary git repository, driven through its real commands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = project_env(root)
        self.first_repro = ""  # what the first `dvc repro` printed, where the fixture keeps it

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a command in the project; on unexpected failure show its output."""
        result = subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def mlflow_client(self) -> Any:
        """A client of this project's embedded MLflow store (tracking and registry named explicitly: MLflow's
        default registry URI is a process global that an earlier in-process call may have pointed elsewhere)."""
        from mlflow import MlflowClient

        uri = f"sqlite:///{self.root / 'mlflow.db'}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def write_params(self, override: dict[str, Any], base: Path = REPO_ROOT / "params.yaml") -> None:
        """Write ``params.yaml``: ``base``'s values (the repo's defaults), then ``override``."""
        defaults = yaml.safe_load(base.read_text())
        (self.root / "params.yaml").write_text(yaml.safe_dump(merge(defaults, override), sort_keys=False))

    def shrink_params(self) -> None:
        """Put TINY_PARAMS over the project's own params.yaml (a Copier render has its own names in it)."""
        self.write_params(TINY_PARAMS, base=self.root / "params.yaml")

    def commit(self, message: str) -> None:
        """Commit everything (DVC experiments need a commit)."""
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "--allow-empty", "-m", message)


def make_project(root: Path, params: dict[str, Any]) -> Project:
    """Copy the template into ``root``, apply ``params`` and make it a git repository with one commit."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "data"))
        else:
            shutil.copy2(source, target)
    (root / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    project = Project(root)
    project.write_params(params)
    project.run("git", "init", "-q", "-b", "main")
    project.commit("template copy")
    return project


# --- A user's file shaped differently from the demo (issue 11): built here, never committed -----------------

# The contract a user writes for that file: no transaction id, no account-creation date, string card ids,
# ISO-8601 times with offsets, other channel values, a country and a merchant category, two ignored columns.
OTHER_CONTRACT = """\
version: 1
columns:
  transaction_id: null
  event_time: {source: ts, format: ISO8601}
  customer: {source: card_number, type: string}
  merchant: {source: shop, type: string}
  amount: {source: value_eur}
  label: {source: chargeback}
  account_created: null
categorical:
  channel: {source: chan, values: [pos, ecom, atm]}
  country: {source: country_code, values: [FR, DE, ES, IT, NL], encoding: category}
  merchant_category: {source: mcc, values: ['5411', '5812', '5999', '7995', '4829'], encoding: category}
ignore: [note, batch_no]
"""
_COUNTRIES = ("FR", "DE", "ES", "IT", "NL")
_MCC = ("5411", "5812", "5999", "7995", "4829")


def other_shaped_transactions(frame: Any) -> Any:
    """The demo's transactions re-shaped as another system exports them (see ``OTHER_CONTRACT``)."""
    import numpy as np
    import pandas as pd

    from mlops_recipes.core.generator import TRANSACTION_COLUMNS

    transaction_id, event_time, customer, merchant, amount, channel, _, label = TRANSACTION_COLUMNS
    local = frame[event_time].dt.tz_convert("Europe/Paris")
    return pd.DataFrame(
        {
            "note": np.where(frame[label] == 1, "check", ""),
            "ts": [stamp.isoformat() for stamp in local],
            "card_number": [f"{value:08d}" for value in frame[customer]],  # leading zeros that must survive
            "shop": [f"S-{value:03d}" for value in frame[merchant]],
            "value_eur": frame[amount].map(lambda v: f"{v:.2f}"),
            "chan": frame[channel].replace({"online": "ecom"}),
            "country_code": [_COUNTRIES[value % len(_COUNTRIES)] for value in frame[customer]],
            "mcc": [_MCC[value % len(_MCC)] for value in frame[merchant]],
            "chargeback": frame[label],
            "batch_no": frame[transaction_id] // 1000,
        }
    )


@pytest.fixture(scope="session")
def other_shaped() -> Callable[[Any], Any]:
    """``other_shaped(generated_frame)``: the frame as a differently shaped export (contract: ``OTHER_CONTRACT``)."""
    return other_shaped_transactions


@pytest.fixture(scope="session")
def other_contract_text() -> str:
    """The contract for :func:`other_shaped_transactions`' files."""
    return OTHER_CONTRACT


@pytest.fixture(scope="session")
def project_at() -> Callable[[Path], Project]:
    """Drive a project folder made another way (a Copier render) with the helpers of a template copy."""
    return Project


@pytest.fixture(scope="session")
def project_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, dict[str, Any]], Project]:
    """Build a fresh project copy with tiny params plus overrides."""

    def build(name: str, override: dict[str, Any]) -> Project:
        return make_project(tmp_path_factory.mktemp(name), merge(TINY_PARAMS, override))

    return build


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The run's one `dvc repro` on the tiny defaults; tests get copies of it (``trained_copy``), never it.

    Under pytest-xdist the workers share it: the first to need it trains it in the run's common temporary folder
    while the others wait on a lock, then all copy from it (a second `dvc repro` would cost each worker 50 CPU-s).
    ``first_repro`` keeps what that run printed (every stage ran) for the tests that check the first run.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # xdist: each worker's basetemp is a child of the run's
        shared = shared.parent
    root = shared / "trained-template"
    printed = shared / "trained-template.first-repro.txt"
    with (shared / "trained-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the template is complete: waiters never see half of it
        if not printed.exists():
            shutil.rmtree(root, ignore_errors=True)  # a worker that died half-way
            project = make_project(root, merge(TINY_PARAMS, {}))
            result = project.run("dvc", "repro")
            printed.write_text(result.stdout + result.stderr)
    project = Project(root)
    project.first_repro = printed.read_text()
    return project


@pytest.fixture(scope="session")
def trained_copy(trained_template: Project, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Project]:
    """``trained_copy(name)``: a project of its own in the state `dvc repro` left (champion v1, stores filled).

    Copying takes well under a second where each `dvc repro` costs 30 s or more: tests that need a trained project
    to change (retrain, promote, rewind its stores) take a copy instead of training their own.
    """

    def copy(name: str) -> Project:
        root = tmp_path_factory.mktemp(name)
        project_copy.copy_trained(trained_template.root, root)
        project = Project(root)
        project.first_repro = trained_template.first_repro
        return project

    return copy
