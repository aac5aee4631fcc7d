"""Model cards in the registry: facts read from a version's run and tags, the card stored back with it.

The card goes to the run as ``model_card/card.md`` and ``model_card/card.html`` (figures inline; the MLflow
UI shows it in the run's Artifacts tab) and, without figures, into the version's description.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_recipes.core import card
from mlops_recipes.core.segments import from_document
from mlops_recipes.errors import MissingInputError
from mlops_recipes.io.registry import METRIC_PREFIX, get_version
from mlops_recipes.params import Params

if TYPE_CHECKING:
    from mlflow import MlflowClient

CARD_DIR = "model_card"
FIGURES_ARTIFACT = "figures"
SEGMENTS_ARTIFACT = "holdout_segments.json"
_DATA_TAGS = {
    "data.train_window": "training window (UTC)",
    "data.holdout_window": "holdout window (UTC)",
    "data.train_rows": "training rows",
    "data.holdout_rows": "holdout rows",
    "data.raw_md5": "raw transactions md5",
    "data.train_md5": "training set md5",
    "data.holdout_md5": "holdout md5",
    "git_commit": "git commit",
}


def _download(client: MlflowClient, run_id: str | None, path: str, into: Path) -> Path | None:
    """A run artifact downloaded into ``into``, or None when it is not there (an older run)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return Path(client.download_artifacts(run_id, path, str(into)))
    except (MlflowException, OSError):
        return None


def gather(client: MlflowClient, name: str, version: str, params: Params) -> card.CardFacts:
    """Read what the card says about ``name`` v``version`` from its run, tags and artifacts."""
    model_version = get_version(client, name, version)
    if not model_version.run_id:
        raise MissingInputError(f"{name} v{version} has no MLflow run to describe")
    run = client.get_run(model_version.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    figures: dict[str, bytes] = {}
    segment_rows: list[dict[Any, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for artifact in client.list_artifacts(run.info.run_id, FIGURES_ARTIFACT):
            if artifact.path.endswith(".png"):
                local = _download(client, run.info.run_id, artifact.path, Path(tmp))
                if local is not None:
                    figures[Path(artifact.path).stem] = local.read_bytes()
        local = _download(client, run.info.run_id, SEGMENTS_ARTIFACT, Path(tmp))
        if local is not None:
            segment_rows = from_document(json.loads(local.read_text(encoding="utf-8"))).to_dict("records")
    reasons = json.loads(model_version.tags.get("gate_reasons", "[]"))
    return card.CardFacts(
        model_name=name,
        version=str(version),
        run_id=run.info.run_id,
        model_family=tags.get("model_family", "unknown"),
        feature_service=model_version.tags.get("feature_service") or tags.get("feature_service", "unknown"),
        intended_use=params.register_.card.intended_use,
        data={label: tags[key] for key, label in _DATA_TAGS.items() if key in tags},
        training_params={k: v for k, v in run.data.params.items() if k.startswith("train.")},
        holdout_metrics={k.removeprefix(METRIC_PREFIX): v for k, v in metrics.items() if k.startswith(METRIC_PREFIX)},
        segment_metrics=segment_rows,
        decision=model_version.tags.get("gate_decision", "not gated yet"),
        reasons=[str(r) for r in reasons],
        limitations=list(params.register_.card.limitations),
        figures=dict(sorted(figures.items())),
    )


def publish(client: MlflowClient, facts: card.CardFacts, *, min_positives: int) -> dict[str, str]:
    """Store the card with the version (description) and its run (Markdown and HTML). Returns the paths."""
    links = {name: f"../{FIGURES_ARTIFACT}/{name}.png" for name in facts.figures}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / CARD_DIR
        folder.mkdir()
        (folder / "card.md").write_text(
            card.markdown(facts, min_positives=min_positives, figure_links=links), encoding="utf-8"
        )
        (folder / "card.html").write_text(card.to_html(facts, min_positives=min_positives), encoding="utf-8")
        client.log_artifacts(facts.run_id, str(folder), artifact_path=CARD_DIR)
    client.update_model_version(
        facts.model_name,
        facts.version,
        description=card.description(facts, card_artifact=f"{CARD_DIR}/card.html", min_positives=min_positives),
    )
    return {"markdown": f"{CARD_DIR}/card.md", "html": f"{CARD_DIR}/card.html"}


def read(client: MlflowClient, name: str, version: str, *, kind: str = "md") -> str:
    """The stored card of a version (``md`` or ``html``), from its run."""
    model_version = get_version(client, name, version)
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(client, model_version.run_id, f"{CARD_DIR}/card.{kind}", Path(tmp))
        if local is None:
            raise MissingInputError(f"{name} v{version} has no model card yet; run `mlops register` to write it")
        return local.read_text(encoding="utf-8")
