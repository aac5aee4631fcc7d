"""Evaluation a person can look at: figures in the MLflow run, an offline `dvc plots show` page, segments,
the model card, and the comparison with the champion.

One project copy runs `dvc repro` once; the tests then read what it left (the run, the registry, plots/).
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {"roc", "precision_recall", "calibration", "score_distribution", "confusion"}


def png_size(content: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and that IHDR comes first."""
    assert content[:8] == PNG_SIGNATURE, "not a PNG"
    assert content[12:16] == b"IHDR"
    width, height = struct.unpack(">II", content[16:24])
    return width, height


@pytest.fixture(scope="module")
def project(project_factory: Any) -> Any:
    project = project_factory("evaluation", {})
    project.run("dvc", "repro")
    return project


def train_run(project: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((project.root / "artifacts/train_run.json").read_text())
    return result


def test_every_figure_is_a_png_in_the_run_and_in_plots(project: Any, tmp_path: Path) -> None:
    client = project.mlflow_client()
    run_id = train_run(project)["run_id"]

    logged = {Path(a.path).stem: a.path for a in client.list_artifacts(run_id, "figures")}

    assert set(logged) >= FIGURES
    for name, artifact in logged.items():
        downloaded = Path(client.download_artifacts(run_id, artifact, str(tmp_path)))
        content = downloaded.read_bytes()
        width, height = png_size(content)
        assert width >= 300
        assert height >= 300
        # The run holds the very images the DVC plots show.
        assert content == (project.root / "plots/figures" / f"{name}.png").read_bytes()


# Appended to a copy of the generated page: after the charts had time to draw, it writes what it finds into
# the DOM, which `--dump-dom` prints. Vega draws SVG marks; an image that failed to load has no natural width.
_CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var out = {vega: [], images: [], errors: window.__errors || []};
    document.querySelectorAll('.vega-embed').forEach(function (div) {
      var marks = div.querySelectorAll('svg.marks g[class^="mark-"] path, svg.marks g[class^="mark-"] line');
      out.vega.push({id: div.id, marks: marks.length});
    });
    document.querySelectorAll('img').forEach(function (img) {
      out.images.push({src: img.getAttribute('src'), width: img.naturalWidth});
    });
    var pre = document.createElement('pre');
    pre.id = 'render-check';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 3000);
});
</script>
"""
_ERROR_TRAP = (
    "<script>window.__errors = []; window.onerror = function (m) { window.__errors.push(String(m)); };</script>"
)


def render_check(chromium: str, page: Path, profile: Path) -> dict[str, Any]:
    """Open ``page`` (a copy with the check script) in headless Chromium with networking off."""
    html = page.read_text(encoding="utf-8")
    checked = page.with_name("render-check.html")
    checked.write_text(html.replace("<head>", "<head>" + _ERROR_TRAP, 1) + _CHECK_SCRIPT, encoding="utf-8")
    profile.mkdir(parents=True, exist_ok=True)
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # No network at all: every host resolves to nothing and any proxy use goes to a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--window-size=1500,1000",
        "--virtual-time-budget=15000",
        "--dump-dom",
        checked.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    marker = '<pre id="render-check">'
    assert marker in result.stdout, f"chromium printed no check result (exit {result.returncode}):\n{result.stderr}"
    found: dict[str, Any] = json.loads(result.stdout.split(marker, 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    return found


def test_dvc_plots_show_draws_its_charts_offline(project: Any, external_tool: Any, tmp_path: Path) -> None:
    chromium = external_tool("chromium", env_var="MLOPS_CHROMIUM", install="apt-get install chromium")
    project.run("dvc", "plots", "show")
    page = project.root / "dvc_plots/index.html"
    html = page.read_text(encoding="utf-8")
    assert "cdn." not in html
    assert "<script src=" not in html

    found = render_check(chromium, page, tmp_path / "profile")

    assert found["errors"] == []
    # Four data-series plots (ROC, precision-recall, calibration, confusion), each drawn with marks.
    assert html.count("vegaEmbed('#") == 4
    assert len(found["vega"]) == 4, found
    assert all(plot["marks"] > 0 for plot in found["vega"]), found
    # The PNG figures as image plots, each loaded.
    drawn = {Path(image["src"]).stem.removeprefix("workspace_plots_figures_") for image in found["images"]}
    assert drawn >= FIGURES
    assert all(image["width"] > 0 for image in found["images"]), found


def test_the_default_cdn_page_stays_blank_offline(project: Any, external_tool: Any, tmp_path: Path) -> None:
    """The control: the same plots through DVC's built-in page draw nothing without network (the test can fail)."""
    chromium = external_tool("chromium", env_var="MLOPS_CHROMIUM", install="apt-get install chromium")
    from dvc_render.html import PAGE_HTML  # DVC's built-in page, which loads Vega from a CDN

    default_page = tmp_path / "default.html"
    default_page.write_text(PAGE_HTML, encoding="utf-8")
    out = tmp_path / "cdn_plots"
    project.run("dvc", "plots", "show", "--html-template", str(default_page), "-o", str(out))
    assert "cdn." in (out / "index.html").read_text(encoding="utf-8")

    found = render_check(chromium, out / "index.html", tmp_path / "profile")

    assert found["vega"] == [], found
    assert found["errors"], "vegaEmbed should be undefined without its CDN scripts"


def test_generated_plots_leave_git_status_clean(project: Any) -> None:
    project.run("dvc", "plots", "show")
    status = project.run("git", "status", "--porcelain", "--untracked-files=all").stdout.splitlines()
    # dvc.lock is the one file a first run creates that a user commits (README); nothing else shows.
    assert [line for line in status if not line.endswith("dvc.lock")] == []


def test_offline_page_is_written_once(project: Any) -> None:
    from mlops_recipes.io import plots_page

    page = project.root / "plots" / plots_page.PAGE_NAME
    assert page.is_file()
    assert plots_page.ensure(page) is False  # current: not rewritten
