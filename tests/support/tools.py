"""External tools no Python package ships (promtool, prometheus, chromium, compose): found, skipped or required.

A test that needs one asks for the fixture ``tool_<name>`` (``tests/conftest.py``) and gets its path; every such
test is marked ``tools`` at collection (``pytest -m tools`` runs just them). Where a tool is missing, the test is
skipped with one reason shared by every such skip, so pytest's summary (``-ra``) folds them into a single line that
names the missing tools and how to install them. Set ``MLOPS_REQUIRE_TOOLS=1`` (CI does) and a missing tool fails
the test instead: CI never skips them.

Each tool is looked up as ``$MLOPS_<NAME>`` (an explicit path) first, then on the PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass

import pytest

REQUIRE_VARIABLE = "MLOPS_REQUIRE_TOOLS"
MARKER = "tools"
FIXTURE_PREFIX = "tool_"
# The words every tool skip starts with: the bare-machine CI job accepts no other skip.
SKIP_PREFIX = "external tools not found"
SKIP_LINE = 1  # where the summary line says the skips come from: this module (tests/conftest.py folds them here)


@dataclass(frozen=True)
class Tool:
    """A binary the suite uses, with the packages that provide it."""

    name: str
    candidates: tuple[str, ...]
    debian: str
    macos: str

    @property
    def variable(self) -> str:
        return f"MLOPS_{self.name.upper()}"

    def find(self) -> str | None:
        """The tool's path, or None."""
        explicit = os.environ.get(self.variable)
        if explicit:
            return shutil.which(explicit)
        for candidate in self.candidates:
            found = shutil.which(candidate)
            if found:
                return found
        return None


TOOLS = {
    tool.name: tool
    for tool in (
        Tool("promtool", ("promtool",), debian="prometheus", macos="prometheus"),
        Tool("prometheus", ("prometheus",), debian="prometheus", macos="prometheus"),
        Tool("chromium", ("chromium", "chromium-browser", "google-chrome"), debian="chromium", macos="--cask chromium"),
        # Docker Compose: the standalone binary, or Compose v2's CLI plugin (which also runs on its own).
        Tool(
            "compose",
            (
                "docker-compose",
                "/usr/libexec/docker/cli-plugins/docker-compose",
                "/usr/local/lib/docker/cli-plugins/docker-compose",
            ),
            debian="docker-compose",
            macos="docker-compose",
        ),
    )
}


@functools.cache
def missing_tools() -> tuple[Tool, ...]:
    """Every known tool that is not there (computed once, so all skips share one reason)."""
    return tuple(tool for tool in TOOLS.values() if tool.find() is None)


def skip_reason() -> str:
    """The one reason every tool skip gives: what is missing and how to install it."""
    missing = missing_tools()
    debian = " ".join(sorted({t.debian for t in missing}))
    macos = "; ".join(sorted({f"brew install {t.macos}" for t in missing}))
    names = ", ".join(t.name for t in missing)
    variables = ", ".join(t.variable for t in missing)
    return (
        f"{SKIP_PREFIX}: {names}. Install them (Debian/Ubuntu: sudo apt-get install {debian}; "
        f"macOS: {macos}) or point {variables} at them; {REQUIRE_VARIABLE}=1 makes this a failure"
    )


def require(name: str) -> str:
    """The path of tool ``name``; skips the test (or fails it, under ``MLOPS_REQUIRE_TOOLS=1``) when it is missing."""
    path = TOOLS[name].find()
    if path is not None:
        return path
    if os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} not found and {REQUIRE_VARIABLE} is set: {skip_reason()}", pytrace=False)
    pytest.skip(skip_reason())
