"""The wheel is the library alone: no generic top-level package (``serving``, ``flows``) lands in site-packages.

The shells run from the project folder (docs/design.md, "The wheel is the library"); a wheel that shipped them
would collide with any other distribution installing a ``serving`` or ``flows``. Built for real with uv (build
isolation from uv's cache and the configured index), into ``tmp_path``: a second or so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]


def uv() -> str:
    """The uv running this suite (``uv run`` exports it as UV), else the one on PATH or the Makefile's."""
    found = os.environ.get("UV") or shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail(f"uv not found ({found}): run `make install` or set UV to its path", pytrace=False)
    return found


def test_the_wheel_installs_only_the_library(tmp_path: Path) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    result = subprocess.run(
        [uv(), "build", "--wheel", "--out-dir", str(tmp_path), str(REPO_ROOT)],
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0] for name in names}

    dist_info = f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    assert top_level == {"mlops_recipes", dist_info}
    # Not vacuous: the library is whole (its CLI, its typing marker), not an empty package.
    assert {"mlops_recipes/cli.py", "mlops_recipes/py.typed"} <= set(names)
