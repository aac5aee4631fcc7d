"""Copy a project folder that already ran the pipeline, so that tests need not run `dvc repro` again.

A trained project is ~10 MB; copying it takes well under a second where `dvc repro` takes 30 s on an idle
2-core machine (minutes on a loaded one). The stores record absolute paths, though: MLflow's artifact locations
(in mlflow.db and each model's MLmodel file) and Feast's file sources (in its registry). ``copy_trained`` points
every one of them at the copy, so that nothing a test does in the copy reads or writes the original.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

# Left out of a copy: DVC's lock and experiment scratch space (it recreates them; a copied lock names the source).
_NOT_COPIED = shutil.ignore_patterns("tmp", "__pycache__")
# Text files known to hold the project's absolute path (MLflow writes it into each logged model's MLmodel file).
_TEXT_FILES_WITH_PATHS = ("mlruns/**/MLmodel",)
MLFLOW_DB = "mlflow.db"
FEAST_REGISTRY = "data/feast/registry.db"


def copy_trained(source: Path, target: Path) -> None:
    """Copy the project at ``source`` into ``target`` (absent or empty) with every recorded path moved."""
    # copytree copies with copy2: modification times are kept, so DVC sees unchanged files.
    shutil.copytree(source, target, symlinks=True, ignore=_NOT_COPIED, dirs_exist_ok=True)
    old, new = str(source), str(target)
    for pattern in _TEXT_FILES_WITH_PATHS:
        for path in target.glob(pattern):
            text = path.read_text()
            if old in text:
                path.write_text(text.replace(old, new))
    if (target / MLFLOW_DB).exists():
        _relocate_sqlite(target / MLFLOW_DB, old, new)
    if (target / FEAST_REGISTRY).exists():
        _relocate_feast_registry(target / FEAST_REGISTRY, old, new)


def _relocate_sqlite(database: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in every text column of every table (MLflow keeps URIs in several)."""
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, declared = column[1], (column[2] or "").upper()
                if any(kind in declared for kind in ("CHAR", "TEXT", "CLOB")):
                    # Names from the database's own schema, values as parameters.
                    update = f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) WHERE instr("{name}", ?) > 0'  # noqa: S608
                    connection.execute(update, (old, new, old))
    connection.close()


def _relocate_feast_registry(registry: Path, old: str, new: str) -> None:
    """Rewrite the file sources' paths in Feast's file registry (a serialized protobuf message)."""
    registry.write_bytes(_replace_paths(registry.read_bytes(), old.encode(), new.encode()))


def _replace_paths(message: bytes, old: bytes, new: bytes) -> bytes:
    """``message`` (protobuf wire format) with every string that starts with ``old`` starting with ``new``.

    Schema-less, so that no Feast import (seconds) is needed: a length-delimited field holding ``old`` is the path
    itself when it starts with it (an absolute path starts with "/", which no encoded message can: wire type 7),
    else a nested message to rewrite in turn. Anything else raises ValueError rather than corrupt the registry.
    """
    out = bytearray()
    position = 0
    while position < len(message):
        key, after_key = _read_varint(message, position)
        wire_type = key & 7
        if wire_type == 0:
            _, end = _read_varint(message, after_key)
        elif wire_type == 1:
            end = after_key + 8
        elif wire_type == 5:
            end = after_key + 4
        elif wire_type == 2:
            length, start = _read_varint(message, after_key)
            end = start + length
            payload = message[start:end]
            if old in payload:
                payload = new + payload[len(old) :] if payload.startswith(old) else _replace_paths(payload, old, new)
                out += message[position:after_key] + _varint(len(payload)) + payload
                position = end
                continue
        else:
            raise ValueError(f"not a protobuf message (wire type {wire_type} at byte {position})")
        if end > len(message):
            raise ValueError(f"not a protobuf message (field at byte {position} runs past the end)")
        out += message[position:end]
        position = end
    return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("not a protobuf message (truncated varint)")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)
