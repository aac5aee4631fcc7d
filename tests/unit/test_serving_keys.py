"""The service's API keys: each at least 16 characters, and the labels key not the scoring one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.settings import ServingSettings

SCORING_KEY = "scoring-key-0123456789"
LABELS_KEY = "labels-key-0123456789"


def test_the_labels_key_is_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_API_KEY", SCORING_KEY)
    monkeypatch.setenv("SERVING_FEEDBACK_API_KEY", LABELS_KEY)
    settings = ServingSettings()
    assert settings.feedback_api_key is not None
    assert settings.feedback_api_key.get_secret_value() == LABELS_KEY

    monkeypatch.setenv("SERVING_FEEDBACK_API_KEY", SCORING_KEY)
    with pytest.raises(ValidationError, match="SERVING_FEEDBACK_API_KEY must differ from SERVING_API_KEY"):
        ServingSettings()


def test_a_weak_labels_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_FEEDBACK_API_KEY", "short")
    with pytest.raises(ValidationError, match="SERVING_FEEDBACK_API_KEY must be at least 16 characters"):
        ServingSettings()


def test_an_empty_labels_key_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_FEEDBACK_API_KEY", "")  # compose's ${SERVING_FEEDBACK_API_KEY:-}
    assert ServingSettings().feedback_api_key is None
