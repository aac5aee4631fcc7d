"""Figures to files: PNG images for DVC image plots, the MLflow run and the model card."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_pngs(figures: Mapping[str, Figure], directory: Path) -> dict[str, Path]:
    """Write each figure as ``<directory>/<name>.png`` (stale PNGs of earlier runs removed). Returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.png"):
        if stale.stem not in figures:
            stale.unlink()
    paths = {}
    for name, figure in figures.items():
        path = directory / f"{name}.png"
        figure.savefig(path, format="png", metadata={"Software": None})
        paths[name] = path
    return paths
