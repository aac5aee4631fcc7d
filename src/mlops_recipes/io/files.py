"""Reading and writing the tables, small JSON documents and YAML configs the project exchanges."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_recipes.errors import MissingInputError

if TYPE_CHECKING:  # pandas costs ~1 s to import; `mlops summary` reads JSON only
    import pandas as pd


def read_table(path: Path) -> pd.DataFrame:
    """Read a user's Parquet or CSV file as stored; CSV cells are read as text, never guessed.

    Types come from the data contract afterwards (:func:`mlops_recipes.core.conform.conform`): pandas' guesses
    would turn an id like ``0742`` into 742 and a code column into floats.
    """
    import pandas as pd

    if not path.is_file():
        raise MissingInputError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    if suffix in {".csv", ".gz"}:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    raise ValueError(f"unsupported data file type {suffix!r} ({path}); use Parquet or CSV")


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a table an earlier stage wrote, or explain which stage to run."""
    import pandas as pd

    if not path.is_file():
        raise MissingInputError(f"{path} not found; run the stage that writes it first (dvc repro)")
    return pd.read_parquet(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` atomically (a half-written file never replaces a good one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)
    return path


def write_json(document: Any, path: Path) -> Path:
    """Write a JSON document (sorted keys, so DVC sees no change when nothing changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def read_json(path: Path) -> Any:
    """Read a JSON document written by an earlier stage, or explain which stage to run."""
    if not path.is_file():
        raise MissingInputError(f"{path} not found; run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text(encoding="utf-8"))


def file_digest(path: Path) -> str:
    """MD5 of a file, the hash DVC uses too, for lineage tags."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_yaml(path: Path, *, error: type[Exception], what: str) -> Any:
    """Parse a YAML config; a missing file or bad YAML raises ``error`` with the path and what went wrong."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise error(f"{path}: not valid YAML: {problem}") from None
