"""The suite's handling of external tools (tests/support/tools.py): found, skipped with one reason, or required."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from support import tools

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _fresh_lookup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(tools.REQUIRE_VARIABLE, raising=False)
    tools.missing_tools.cache_clear()
    yield
    tools.missing_tools.cache_clear()


def test_a_tool_named_by_its_variable_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_PROMTOOL", sys.executable)
    assert tools.require("promtool") == sys.executable


def test_a_missing_tool_skips_with_the_reason_every_tool_skip_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_PROMTOOL", "/nonexistent/promtool")
    monkeypatch.setenv("MLOPS_CHROMIUM", "/nonexistent/chromium")

    with pytest.raises(pytest.skip.Exception) as skipped:
        tools.require("promtool")
    with pytest.raises(pytest.skip.Exception) as other:
        tools.require("chromium")

    reason = str(skipped.value)
    assert reason == str(other.value)  # one reason: pytest folds the skips into one summary line
    assert reason.startswith(f"{tools.SKIP_PREFIX}: ")
    assert "promtool" in reason
    assert "chromium" in reason
    assert "sudo apt-get install" in reason
    assert "brew install --cask chromium" in reason


def test_a_missing_tool_fails_when_tools_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_PROMTOOL", "/nonexistent/promtool")
    monkeypatch.setenv(tools.REQUIRE_VARIABLE, "1")

    with pytest.raises(pytest.fail.Exception, match="promtool not found and MLOPS_REQUIRE_TOOLS is set"):
        tools.require("promtool")
