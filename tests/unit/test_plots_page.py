"""io/plots_page.py: the offline `dvc plots show` template, bundled once and reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_recipes.io import plots_page

pytestmark = pytest.mark.unit


def test_page_inlines_the_libraries_and_keeps_dvc_placeholders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    page = tmp_path / "a" / "offline.html"

    assert plots_page.ensure(page) is True

    html = page.read_text(encoding="utf-8")
    assert "{plot_divs}" in html
    assert "{scripts}" not in html  # DVC would put its CDN tags there
    assert "<script src=" not in html
    assert "window.vegaEmbed" in html
    assert plots_page.ensure(page) is False  # current: left alone

    # Another checkout gets the cached copy, without bundling again.
    def no_bundling() -> str:
        raise AssertionError("bundled again instead of using the cache")

    monkeypatch.setattr(plots_page, "render", no_bundling)
    other = tmp_path / "b" / "offline.html"
    assert plots_page.ensure(other) is True
    assert other.read_text(encoding="utf-8") == html


def test_a_page_from_other_library_versions_is_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    page = tmp_path / "offline.html"
    page.write_text("<!DOCTYPE html>\n<!-- mlops-recipes offline plots page: old -->\n{plot_divs}\n", encoding="utf-8")
    monkeypatch.setattr(plots_page, "render", lambda: "<!DOCTYPE html>\nnew\n{plot_divs}\n")

    assert plots_page.ensure(page) is True
    assert "new" in page.read_text(encoding="utf-8")
