"""Evaluation a person can look at: figures in the MLflow run, an offline `dvc plots show` page, segments,
the model card, and the comparison with the champion.

One trained project copy (what `dvc repro` left); the tests read it (the run, the registry, plots/).
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
def project(trained_copy: Any) -> Any:
    return trained_copy("evaluation")


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


def test_dvc_plots_show_draws_its_charts_offline(project: Any, tool_chromium: str, tmp_path: Path) -> None:
    project.run("dvc", "plots", "show")
    page = project.root / "dvc_plots/index.html"
    html = page.read_text(encoding="utf-8")
    assert "cdn." not in html
    assert "<script src=" not in html

    found = render_check(tool_chromium, page, tmp_path / "profile")

    assert found["errors"] == []
    # Four data-series plots (ROC, precision-recall, calibration, confusion), each drawn with marks.
    assert html.count("vegaEmbed('#") == 4
    assert len(found["vega"]) == 4, found
    assert all(plot["marks"] > 0 for plot in found["vega"]), found
    # The PNG figures as image plots, each loaded.
    drawn = {Path(image["src"]).stem.removeprefix("workspace_plots_figures_") for image in found["images"]}
    assert drawn >= FIGURES
    assert all(image["width"] > 0 for image in found["images"]), found


def test_the_default_cdn_page_stays_blank_offline(project: Any, tool_chromium: str, tmp_path: Path) -> None:
    """The control: the same plots through DVC's built-in page draw nothing without network (the test can fail)."""

    from dvc_render.html import PAGE_HTML  # DVC's built-in page, which loads Vega from a CDN

    default_page = tmp_path / "default.html"
    default_page.write_text(PAGE_HTML, encoding="utf-8")
    out = tmp_path / "cdn_plots"
    project.run("dvc", "plots", "show", "--html-template", str(default_page), "-o", str(out))
    assert "cdn." in (out / "index.html").read_text(encoding="utf-8")

    found = render_check(tool_chromium, out / "index.html", tmp_path / "profile")

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


# --- segments ------------------------------------------------------------------------------------------------


def segments_document(project: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((project.root / "metrics/segments.json").read_text())
    return document


def weakest_gated_segment(project: Any, min_positives: int = 10) -> tuple[str, float]:
    """The segment with enough frauds to be gated and the lowest PR AUC, with that PR AUC."""
    candidates = [
        (f"{name}/{value}", entry["pr_auc"])
        for name, values in segments_document(project).items()
        for value, entry in values.items()
        if entry["positives"] >= min_positives and entry["pr_auc"] is not None
    ]
    assert candidates, "the tiny holdout should have segments with enough frauds"
    return min(candidates, key=lambda item: item[1])


def test_segment_metrics_are_logged_with_the_run(project: Any) -> None:
    run = project.mlflow_client().get_run(train_run(project)["run_id"])
    document = segments_document(project)

    assert set(document) == {"channel", "account_age", "amount"}
    assert set(document["account_age"]) == {"new", "established"}
    for name, values in document.items():
        for value, entry in values.items():
            assert run.data.metrics[f"segment/{name}/{value}/rows"] == entry["rows"]
            if entry["pr_auc"] is not None:
                assert run.data.metrics[f"segment/{name}/{value}/pr_auc"] == pytest.approx(entry["pr_auc"], abs=1e-6)
    assert sum(entry["rows"] for entry in document["channel"].values()) == run.data.metrics["holdout_rows"]
    assert (project.root / "plots/figures/segments.png").read_bytes()[:8] == PNG_SIGNATURE


def test_gate_refuses_a_segment_regression_against_the_re_scored_champion(project: Any) -> None:
    import yaml

    from mlops_recipes.io import holdout as holdouts
    from mlops_recipes.io import tracking
    from mlops_recipes.params import parse_params
    from mlops_recipes.settings import Settings
    from mlops_recipes.stages import register

    settings = Settings(project_root=project.root)
    raw = yaml.safe_load((project.root / "params.yaml").read_text())
    raw["register"]["segments"]["max_regression"] = 0.05
    params = parse_params(raw)
    client = tracking.client(settings)
    holdout = holdouts.read(settings)
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    model, champion_scores = register.score_version(settings, str(champion.version), holdout)
    threshold = model.threshold
    champion_global = holdouts.metrics(holdout, champion_scores, params.evaluate, threshold=threshold)["pr_auc"]
    # A candidate better overall, but 0.2 worse than the champion on its weakest gated segment.
    key, _ = weakest_gated_segment(project)
    candidate = holdouts.segment_table(settings, params, holdout, champion_scores, threshold=threshold)
    candidate.loc[candidate["segment"] == key, "pr_auc"] -= 0.2

    decision, _ = register.gate(
        client,
        settings,
        params,
        version="candidate",
        candidate_score=champion_global + 0.01,
        holdout=holdout,
        candidate_segments=candidate,
    )

    assert decision.promote is False
    text = " | ".join(decision.reasons)
    assert "beats champion" in text  # the global metric improves ...
    assert f"segment {key} pr_auc=" in text  # ... and this segment refuses it
    assert "regresses from the champion's" in text


def test_a_candidate_below_a_segment_floor_is_refused_in_the_pipeline(project: Any) -> None:
    import yaml

    client = project.mlflow_client()
    champion = client.get_model_version_by_alias("fraud-detector", "champion").version
    key, _ = weakest_gated_segment(project)
    path = project.root / "params.yaml"
    original = path.read_text()
    raw = yaml.safe_load(original)
    raw["train"]["seed"] = 11  # a new candidate
    raw["register"]["min_improvement"] = -1.0  # whatever its global score, the global gate lets it through
    raw["register"]["segments"]["floors"] = {key: 0.999}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        project.run("dvc", "repro")
    finally:
        path.write_text(original)

    promotion = json.loads((project.root / "reports/promotion.json").read_text())
    reasons = " | ".join(promotion["decision"]["reasons"])
    assert promotion["decision"]["promote"] is False
    assert "beats champion" in reasons
    assert f"segment {key} pr_auc=" in reasons
    assert "is below its floor 0.9990" in reasons
    assert client.get_model_version_by_alias("fraud-detector", "champion").version == champion
    version = client.get_model_version("fraud-detector", promotion["candidate_version"])
    assert version.tags["gate_decision"] == "rejected"


# --- model card ----------------------------------------------------------------------------------------------


def run_figures(project: Any, run_id: str, into: Path) -> dict[str, bytes]:
    client = project.mlflow_client()
    out = {}
    for artifact in client.list_artifacts(run_id, "figures"):
        out[Path(artifact.path).stem] = Path(client.download_artifacts(run_id, artifact.path, str(into))).read_bytes()
    return out


def test_model_card_carries_the_runs_own_figures_and_facts(project: Any, tmp_path: Path) -> None:
    import base64
    import re

    client = project.mlflow_client()
    champion = client.get_model_version_by_alias("fraud-detector", "champion")
    page = tmp_path / "card.html"

    markdown = project.run("mlops", "status", "--card", "--html", str(page)).stdout

    html = page.read_text(encoding="utf-8")
    embedded = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]
    figures = run_figures(project, champion.run_id, tmp_path / "artifacts")
    assert set(figures) >= {*FIGURES, "segments"}
    assert sorted(embedded) == sorted(figures.values())  # the run's very images, every one of them
    run = client.get_run(champion.run_id)
    assert f"# Model card: fraud-detector v{champion.version}" in markdown
    assert f"| pr_auc | {run.data.metrics['holdout_pr_auc']:.4f} |" in markdown
    assert run.data.tags["data.train_md5"] in markdown
    assert run.data.tags["data.holdout_window"] in markdown
    assert "| train.hist_gradient_boosting.max_iter | 60 |" in markdown
    assert "| account_age/new |" in markdown
    assert "## Gate decision" in markdown
    assert "## Known limitations" in markdown
    assert "Intended use" in champion.description
    assert "model_card/card.html" in champion.description


def test_a_refused_versions_card_gives_the_gates_reasons(project: Any) -> None:
    client = project.mlflow_client()
    challenger = client.get_model_version_by_alias("fraud-detector", "challenger")

    markdown = project.run("mlops", "status", "--card", "--version", str(challenger.version)).stdout

    assert challenger.tags["gate_decision"] == "rejected"
    assert "rejected." in markdown
    assert "is below its floor 0.9990" in markdown


# --- comparison ----------------------------------------------------------------------------------------------


def test_compare_puts_the_candidate_beside_the_champion_on_the_same_holdout(project: Any) -> None:
    client = project.mlflow_client()
    champion = client.get_model_version_by_alias("fraud-detector", "champion")
    challenger = client.get_model_version_by_alias("fraud-detector", "challenger")
    assert challenger.version != champion.version

    printed = project.run("mlops", "compare").stdout

    out = project.root / f"reports/compare/v{challenger.version}_vs_v{champion.version}"
    document = json.loads((out / "comparison.json").read_text())
    pr_auc = document["metrics"]["pr_auc"]
    cand, champ = f"candidate v{challenger.version}", f"champion v{champion.version}"
    # Each model re-scored on today's holdout: the same numbers their own evaluation logged (same data here).
    assert pr_auc[cand] == pytest.approx(client.get_run(challenger.run_id).data.metrics["holdout_pr_auc"], abs=1e-6)
    assert pr_auc[champ] == pytest.approx(client.get_run(champion.run_id).data.metrics["holdout_pr_auc"], abs=1e-6)
    assert pr_auc["difference"] == pytest.approx(pr_auc[cand] - pr_auc[champ], abs=2e-6)  # each rounded to 6 places
    assert {row["model"] for row in document["segments"]} == {cand, champ}
    for name in {*FIGURES, "segments"}:
        png_size((out / f"{name}.png").read_bytes())
    assert (out / "comparison.html").read_text().count("data:image/png;base64,") == len(FIGURES) + 1
    assert "pr_auc" in printed
    assert str(out / "comparison.html") in printed


def test_a_version_decides_at_the_threshold_its_gate_metrics_were_computed_at(project: Any) -> None:
    from mlops_recipes.io import holdout as holdouts
    from mlops_recipes.io.models import THRESHOLD_TAG, ModelLoadError, load_alias, load_version
    from mlops_recipes.params import load_params
    from mlops_recipes.settings import Settings

    settings = Settings(project_root=project.root)
    params = load_params(project.root / "params.yaml")
    client = project.mlflow_client()
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert champion.tags[THRESHOLD_TAG] == str(params.evaluate.threshold)  # recorded at registration

    model = load_alias(settings, "champion")
    assert model.threshold == params.evaluate.threshold
    holdout = holdouts.read(settings)
    rescored = holdouts.metrics(holdout, model.score_frame(holdout), params.evaluate, threshold=model.threshold)
    # The evaluate stage's metrics of this version's run (same holdout data; later runs here only change the model).
    recorded = model.holdout_metrics
    for name in ("recall_at_threshold", "precision_at_threshold"):  # what the gate saw is what production decides
        assert rescored[name] == pytest.approx(recorded[name], abs=1e-6), name
    assert load_alias(settings, "champion", threshold_override=0.9).threshold == 0.9  # an explicit override

    # A version that does not say at which threshold it decides is refused, not served at a default.
    probe = "threshold-probe"
    client.create_registered_model(probe)
    source = client.get_model_version_download_uri(settings.model_name, champion.version)
    untagged = {k: v for k, v in champion.tags.items() if k != THRESHOLD_TAG}
    version = client.create_model_version(probe, source=source, run_id=champion.run_id, tags=untagged)
    with pytest.raises(ModelLoadError, match=THRESHOLD_TAG) as refused:
        load_version(settings.model_copy(update={"model_name": probe}), str(version.version))
    assert refused.value.reason == "threshold"
    assert not refused.value.transient
