"""compare (an operator command, not a DVC stage): a candidate beside the champion on the same holdout.

Both versions are re-scored on the current holdout, so the numbers and figures are like for like (the
metrics logged with each run came from the holdout of its own day). Writes PNG figures with both models
drawn together, ``comparison.json`` and a self-contained ``comparison.html`` under
``reports/compare/v<candidate>_vs_v<champion>/``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_recipes.contract import LABEL
from mlops_recipes.core.figures import holdout_figures
from mlops_recipes.io import holdout as holdouts
from mlops_recipes.io import registry, tracking
from mlops_recipes.io.figures import write_pngs
from mlops_recipes.io.files import write_json
from mlops_recipes.io.models import load_version
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _resolve(client: MlflowClient, name: str, version: str | None, alias: str) -> str:
    if version is not None:
        return str(registry.get_version(client, name, version).version)
    found = registry.alias_version(client, name, alias)
    if found is None:
        raise registry.RegistryError(f"model {name!r} has no {alias}; pass its version explicitly")
    return str(found.version)


def _page(title: str, metrics: pd.DataFrame, pngs: dict[str, Path]) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (i, *r)) + "</tr>"
        for i, r in zip(metrics.index, metrics.round(4).itertuples(index=False), strict=True)
    )
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in ("metric", *metrics.columns))
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{name}</figcaption></figure>"
        for name, p in pngs.items()
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font-family:sans-serif;max-width:1300px;margin:2em auto;} table{border-collapse:collapse;}"
        " td,th{border:1px solid #ccc;padding:2px 8px;} img{max-width:100%;}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table><tr>{header}</tr>{rows}</table>{images}</body></html>"
    )


def run(
    settings: Settings, params: Params, *, candidate: str | None = None, champion: str | None = None
) -> dict[str, Any]:
    """Score both versions on the current holdout; write figures and the side-by-side metrics."""
    client = tracking.client(settings)
    name = settings.model_name
    cand = _resolve(client, name, candidate, registry.CHALLENGER)
    champ = _resolve(client, name, champion, registry.CHAMPION)
    holdout = holdouts.read(settings)
    labels = holdouts.segment_labels(settings, params, holdout)
    models = {f"candidate v{cand}": load_version(settings, cand), f"champion v{champ}": load_version(settings, champ)}
    scored = {key: model.score_frame(holdout) for key, model in models.items()}
    # Each version is judged at the threshold it decides at (recorded on it); the figures mark the candidate's.
    metrics = pd.DataFrame(
        {
            key: holdouts.metrics(holdout, scored[key], params.evaluate, threshold=model.threshold)
            for key, model in models.items()
        }
    )
    first, second = metrics.columns
    metrics["difference"] = metrics[first] - metrics[second]
    by_segment = pd.concat(
        [
            holdouts.segment_table(
                settings, params, holdout, scored[key], threshold=model.threshold, labels=labels
            ).assign(model=key)
            for key, model in models.items()
        ],
        ignore_index=True,
    )
    figures = holdout_figures(
        holdout[LABEL].to_numpy(),
        scored,
        threshold=models[first].threshold,
        max_fpr=params.evaluate.max_fpr,
        bins=params.evaluate.calibration_bins,
        segments=by_segment,
    )
    out = settings.path(settings.reports_dir) / "compare" / f"v{cand}_vs_v{champ}"
    pngs = write_pngs(figures, out)
    document = {
        "model_name": name,
        "candidate": cand,
        "champion": champ,
        "holdout_rows": len(holdout),
        "metrics": {k: {m: round(float(v), 6) for m, v in row.items()} for k, row in metrics.iterrows()},
        "segments": by_segment.round(6).to_dict("records"),
        "figures": {k: str(p) for k, p in pngs.items()},
    }
    write_json(document, out / "comparison.json")
    page = out / "comparison.html"
    page.write_text(_page(f"{name}: v{cand} vs champion v{champ}", metrics, pngs), encoding="utf-8")
    return {"candidate": cand, "champion": champ, "metrics": document["metrics"], "report": str(page)}
