"""The model card of a registered version: what it is for, what it saw, how it did, why it was (not) promoted.

Pure rendering of facts gathered from the MLflow run and the version's tags (``io/card.py``), as Markdown
(the version's description and ``mlops status --card``) and as one self-contained HTML page with the
run's figures inline (a run artifact, which the MLflow UI displays).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The registry keeps at most this many characters of a description (MLflow's column size).
DESCRIPTION_LIMIT = 5000


@dataclass(frozen=True)
class CardFacts:
    """Everything a card says, already read from the run, the version and the params."""

    model_name: str
    version: str
    run_id: str
    model_family: str
    feature_service: str
    intended_use: str
    data: Mapping[str, str]  # window, rows, hashes, git commit
    training_params: Mapping[str, str]
    holdout_metrics: Mapping[str, float]
    segment_metrics: Sequence[Mapping[str, object]]  # rows of core.segments.segment_metrics
    decision: str  # promoted / rejected / unknown
    reasons: Sequence[str]
    limitations: Sequence[str]
    figures: Mapping[str, bytes] = field(default_factory=dict)  # name -> PNG bytes from the run


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def derived_limitations(facts: CardFacts, *, min_positives: int) -> list[str]:
    """Limitations read off the numbers: thin segments, the weakest segment, calibration."""
    notes = []
    thin = [str(r["segment"]) for r in facts.segment_metrics if int(str(r["positives"])) < min_positives]
    if thin:
        notes.append(
            f"Fewer than {min_positives} frauds in the holdout for {', '.join(thin)}: metrics there are noisy."
        )
    scored = [r for r in facts.segment_metrics if not math.isnan(float(str(r["pr_auc"])))]
    if scored:
        weakest = min(scored, key=lambda r: float(str(r["pr_auc"])))
        notes.append(f"Weakest segment by PR AUC: {weakest['segment']} ({float(str(weakest['pr_auc'])):.4f}).")
    ece = facts.holdout_metrics.get("ece")
    if ece is not None and ece > 0.02:
        notes.append(f"Scores are not well calibrated (ECE {ece:.4f}): do not read them as probabilities.")
    return notes


def _sections(facts: CardFacts, *, min_positives: int) -> list[tuple[str, list[str] | list[list[str]]]]:
    """(title, body): a body is a list of paragraphs, or a table as a list of rows (first row the header)."""
    metrics = [["metric", "value"], *([k, _fmt(v)] for k, v in sorted(facts.holdout_metrics.items()))]
    segment_rows = [["segment", "rows", "frauds", "pr_auc", "roc_auc", "recall@thr", "precision@thr"]]
    for r in facts.segment_metrics:
        segment_rows.append(
            [str(r["segment"]), str(r["rows"]), str(r["positives"])]
            + [_fmt(float(str(r[m]))) for m in ("pr_auc", "roc_auc", "recall_at_threshold", "precision_at_threshold")]
        )
    limitations = [*facts.limitations, *derived_limitations(facts, min_positives=min_positives)]
    return [
        ("Intended use", [facts.intended_use]),
        (
            "Model",
            [
                f"Family: {facts.model_family}. Feature service: {facts.feature_service}. MLflow run: {facts.run_id}.",
            ],
        ),
        ("Data", [["item", "value"], *([k, v] for k, v in facts.data.items())]),
        ("Training parameters", [["parameter", "value"], *([k, v] for k, v in sorted(facts.training_params.items()))]),
        ("Holdout metrics", metrics),
        ("Metrics per segment", segment_rows if len(segment_rows) > 1 else ["No segments declared."]),
        ("Gate decision", [f"{facts.decision}.", *(f"- {reason}" for reason in facts.reasons)]),
        ("Known limitations", [f"- {item}" for item in limitations]),
    ]


def _md_table(rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(rows[0]), line(["---"] * len(rows[0])), *(line(r) for r in rows[1:])]


def markdown(facts: CardFacts, *, min_positives: int = 10, figure_links: Mapping[str, str] | None = None) -> str:
    """The card as Markdown; ``figure_links`` (figure name -> path or URL) adds the figures as images."""
    lines = [f"# Model card: {facts.model_name} v{facts.version}", ""]
    for title, body in _sections(facts, min_positives=min_positives):
        lines += [f"## {title}", ""]
        if body and isinstance(body[0], list):
            lines += _md_table(body)
        else:
            lines += [str(p) for p in body]
        lines.append("")
    if figure_links:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({link})" for name, link in figure_links.items()]
        lines.append("")
    return "\n".join(lines)


def description(facts: CardFacts, *, card_artifact: str, min_positives: int = 10) -> str:
    """The version's registry description: the card without figures, within the registry's size limit."""
    pointer = f"\n\nFull card with figures: run artifact `{card_artifact}`."
    text = markdown(facts, min_positives=min_positives)
    if len(text) + len(pointer) > DESCRIPTION_LIMIT:
        text = text[: DESCRIPTION_LIMIT - len(pointer) - 20].rsplit("\n", 1)[0] + "\n\n(truncated)"
    return text + pointer


def to_html(facts: CardFacts, *, min_positives: int = 10) -> str:
    """One self-contained page: the same sections, and every figure inline as a PNG data URI."""
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>Model card: {html.escape(facts.model_name)} v{html.escape(facts.version)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;} table{border-collapse:collapse;}"
        " td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;} img{max-width:100%;}</style>",
        "</head><body>",
        f"<h1>Model card: {html.escape(facts.model_name)} v{html.escape(facts.version)}</h1>",
    ]
    for title, body in _sections(facts, min_positives=min_positives):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if body and isinstance(body[0], list):
            rows: list[list[str]] = body
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
            parts.append("</table>")
        else:
            parts += [f"<p>{html.escape(str(p))}</p>" for p in body]
    if facts.figures:
        parts.append("<h2>Figures</h2>")
        for name, content in facts.figures.items():
            encoded = base64.b64encode(content).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">')
            parts.append(f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
