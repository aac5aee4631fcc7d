"""core/card.py: the model card rendered from facts, as Markdown, description and HTML with figures."""

from __future__ import annotations

import base64
import math
import re

import pytest

from mlops_recipes.core.card import DESCRIPTION_LIMIT, CardFacts, derived_limitations, description, markdown, to_html

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n" + b"fake image body"


def facts(**override: object) -> CardFacts:
    base: dict[str, object] = {
        "model_name": "fraud-detector",
        "version": "3",
        "run_id": "abc123",
        "model_family": "hist_gradient_boosting",
        "feature_service": "fraud_model_v1",
        "intended_use": "Flags transactions for review.",
        "data": {"training window (UTC)": "2026-11-01 to 2026-11-20", "training set md5": "f" * 32},
        "training_params": {"train.seed": "42"},
        "holdout_metrics": {"pr_auc": 0.81234, "ece": 0.05},
        "segment_metrics": [
            {
                "segment": "channel/online",
                "rows": 500,
                "positives": 40,
                "pr_auc": 0.9,
                "roc_auc": 0.95,
                "recall_at_threshold": 0.8,
                "precision_at_threshold": 0.7,
            },
            {
                "segment": "channel/atm",
                "rows": 20,
                "positives": 2,
                "pr_auc": math.nan,
                "roc_auc": 0.5,
                "recall_at_threshold": 0.5,
                "precision_at_threshold": math.nan,
            },
            {
                "segment": "account_age/new",
                "rows": 90,
                "positives": 12,
                "pr_auc": 0.4,
                "roc_auc": 0.8,
                "recall_at_threshold": 0.3,
                "precision_at_threshold": 0.6,
            },
        ],
        "decision": "rejected",
        "reasons": ["segment account_age/new pr_auc=0.4000 is below its floor 0.5000"],
        "limitations": ["Synthetic data."],
        "figures": {"roc": PNG, "segments": PNG + b"2"},
    }
    base.update(override)
    return CardFacts(**base)  # type: ignore[arg-type]


def test_markdown_has_every_section_and_the_numbers() -> None:
    text = markdown(facts(), figure_links={"roc": "../figures/roc.png"})

    for section in (
        "Intended use",
        "Model",
        "Data",
        "Training parameters",
        "Holdout metrics",
        "Metrics per segment",
        "Gate decision",
        "Known limitations",
        "Figures",
    ):
        assert f"## {section}" in text
    assert "| pr_auc | 0.8123 |" in text
    assert "| channel/atm | 20 | 2 | n/a |" in text
    assert "- segment account_age/new pr_auc=0.4000 is below its floor 0.5000" in text
    assert "![roc](../figures/roc.png)" in text
    assert "f" * 32 in text


def test_limitations_read_off_the_numbers() -> None:
    notes = " ".join(derived_limitations(facts(), min_positives=10))

    assert "channel/atm" in notes  # 2 frauds
    assert "Weakest segment by PR AUC: account_age/new (0.4000)" in notes
    assert "ECE 0.0500" in notes


def test_html_embeds_the_given_figures_byte_for_byte() -> None:
    page = to_html(facts())

    embedded = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    assert embedded == [PNG, PNG + b"2"]
    assert "<td>channel/online</td>" in page


def test_description_fits_the_registry_and_points_at_the_full_card() -> None:
    huge = facts(training_params={f"train.p{i}": "x" * 50 for i in range(300)})

    text = description(huge, card_artifact="model_card/card.html")

    assert len(text) <= DESCRIPTION_LIMIT
    assert text.endswith("Full card with figures: run artifact `model_card/card.html`.")
    assert "(truncated)" in text
