"""core/figures.py and io/figures.py: every figure drawn headless from arrays, written as valid PNGs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mlops_recipes.core.figures import FIGURE_NAMES, holdout_figures, precision_recall_figure
from mlops_recipes.io.figures import write_pngs

pytestmark = pytest.mark.unit


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(int)
    return y, np.clip(0.55 * y + 0.5 * rng.random(400), 0, 1)


def test_every_figure_is_written_as_a_png(scored: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    y, s = scored
    figures = holdout_figures(y, {"model": s}, threshold=0.5, max_fpr=0.01, bins=10)

    paths = write_pngs(figures, tmp_path)

    assert set(paths) == set(FIGURE_NAMES)
    for path in paths.values():
        content = path.read_bytes()
        assert content[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", content[16:24])
        assert width > 300
        assert height > 300


def test_stale_pngs_are_removed(scored: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    y, s = scored
    (tmp_path / "old_figure.png").write_bytes(b"x")

    write_pngs(holdout_figures(y, {"model": s}, threshold=0.5, max_fpr=0.01, bins=5), tmp_path)

    assert not (tmp_path / "old_figure.png").exists()


def test_operating_point_sits_at_the_threshold(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    figure = precision_recall_figure(y, {"model": s}, threshold=0.5)

    marker = next(line for line in figure.axes[0].get_lines() if line.get_marker() == "o" and len(line.get_xdata()))
    hit = s >= 0.5
    assert marker.get_xdata()[0] == pytest.approx((hit & (y == 1)).sum() / (y == 1).sum())
    assert marker.get_ydata()[0] == pytest.approx((hit & (y == 1)).sum() / hit.sum())


def test_two_models_share_one_figure(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    figures = holdout_figures(y, {"candidate": s, "champion": s[::-1]}, threshold=0.5, max_fpr=0.01, bins=10)

    legend = [t.get_text() for t in figures["roc"].axes[0].get_legend().get_texts()]
    assert any(t.startswith("candidate") for t in legend)
    assert any(t.startswith("champion") for t in legend)
    assert len(figures["confusion"].axes) == 2


def test_no_pyplot_state_is_touched(scored: tuple[np.ndarray, np.ndarray]) -> None:
    import sys

    y, s = scored
    holdout_figures(y, {"model": s}, threshold=0.5, max_fpr=0.01, bins=10)

    assert "matplotlib.pyplot" not in sys.modules
