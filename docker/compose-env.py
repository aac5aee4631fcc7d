#!/usr/bin/env python3
"""Write the compose stack's ``.env`` from ``.env.example`` with a fresh random value for every empty secret.

    python docker/compose-env.py [--example .env.example] [--output .env] [--force]   (``make compose-env``)

Every uncommented ``KEY=`` line with an empty value gets 32 hex characters from :mod:`secrets` (letters and
digits only: the values go into connection URLs; MLflow wants 12 or more). Comments and optional settings are
copied as they are. An existing output file is never overwritten without ``--force`` (its secrets are the ones
the stack's volumes were initialised with: docs/compose.md says how to change them). The file is made
readable by its owner only.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

_EMPTY = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=\s*$")


def fill(example: str) -> str:
    """``example`` with every empty ``KEY=`` line given a random value."""
    lines = []
    for line in example.splitlines():
        match = _EMPTY.match(line.strip())
        lines.append(f"{match['key']}={secrets.token_hex(16)}" if match else line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the output file; 1 if it exists and ``--force`` is not given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=Path(".env.example"))
    parser.add_argument("--output", type=Path, default=Path(".env"))
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(  # noqa: T201
            f"{args.output} exists: kept (its secrets are the ones the stack was set up with). "
            "Remove it or pass --force for new ones; see docs/compose.md for changing a secret.",
            file=sys.stderr,
        )
        return 1
    text = fill(args.example.read_text())
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(args.output, 0o600)
    filled = sum(1 for a, b in zip(args.example.read_text().splitlines(), text.splitlines(), strict=False) if a != b)
    print(f"wrote {args.output}: {filled} secret(s) generated", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
