"""Rename the template's names in a project Copier has rendered from this repository (the task in copier.yml).

The repository is its own template: Copier copies every file verbatim, then runs this file, which replaces each of
the template's names (copier.yml's ``template_names``) by the answer to the question of the same key, token-wise,
in the contents and the paths of the files the template wrote, and nowhere else: in ``copier update`` the
destination is the user's project, whose own files, ``.git`` and answers file must stay as they are.

Copier runs it with its own interpreter (``_copier_python``), which has none of the project's dependencies: this
module uses the standard library only and is run as a file, not imported from the package. Its tests import it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# A name is a token: not preceded or followed by a letter or digit (the image name "<distribution>-app" holds the
# distribution name, "<package>2" does not hold the package name). '-', '_', '.', '/' and spaces separate tokens.
_BEFORE = r"(?<![A-Za-z0-9])"
_AFTER = r"(?![A-Za-z0-9])"
# Separators a hand-written variant of a name may use instead of the template's own (an upper-case environment
# variable prefix, a title in prose): what the coverage check looks for on top of the exact tokens. A space counts
# only for names that hold one: the domain's prose ("fraud detection") is no spelling of an identifier.
_VARIANT_SEPARATORS = "[-_.]?"
_VARIANT_SEPARATORS_WITH_SPACE = "[-_. ]?"
SKIPPED_DIRS = frozenset({".git"})


class TemplateError(ValueError):
    """The names or answers cannot drive a rename (the message says which and why)."""


def renames(names: Mapping[str, str], answers: Mapping[str, object]) -> dict[str, str]:
    """Template name -> answer, for every name whose answer differs from it.

    Raises:
        TemplateError: an answer is missing or empty, or two names would be merged into one token list entry.
    """
    mapping: dict[str, str] = {}
    for key, old in names.items():
        if key not in answers:
            raise TemplateError(f"no answer for {key!r}: copier.yml's template_names and questions disagree")
        new = str(answers[key]).strip()
        if not new:
            raise TemplateError(f"the answer for {key!r} is empty")
        if old in mapping and mapping[old] != new:
            raise TemplateError(f"{old!r} is the template's name for two questions with different answers")
        if new != old:
            mapping[old] = new
    return mapping


def token_pattern(tokens: Iterable[str]) -> re.Pattern[str]:
    """One pattern for all tokens, longest first, so that a name holding another one wins."""
    ordered = sorted(set(tokens), key=lambda token: (-len(token), token))
    if not ordered:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile(_BEFORE + "(?:" + "|".join(re.escape(token) for token in ordered) + ")" + _AFTER)


def rename_text(text: str, mapping: Mapping[str, str]) -> str:
    """``text`` with every token of ``mapping`` replaced by its answer, in one pass (no answer is renamed again)."""
    if not mapping:
        return text
    return token_pattern(mapping).sub(lambda match: mapping[match.group(0)], text)


def variant_pattern(name: str) -> re.Pattern[str]:
    """Any spelling of ``name`` as a token: any case, separators '-', '_', '.' (' ' if it has one) or none."""
    separators = _VARIANT_SEPARATORS_WITH_SPACE if " " in name else _VARIANT_SEPARATORS
    words = re.split(r"[-_. ]", name)
    return re.compile(_BEFORE + separators.join(re.escape(word) for word in words) + _AFTER, re.IGNORECASE)


def uncovered(text: str, names: Iterable[str]) -> list[str]:
    """Spellings of the names in ``text`` that the rename would miss (no exact token covers them)."""
    names = list(names)
    covered = [match.span() for match in token_pattern(names).finditer(text)]
    missed = []
    for name in names:
        for match in variant_pattern(name).finditer(text):
            start, end = match.span()
            if not any(lo <= start and end <= hi for lo, hi in covered):
                missed.append(match.group(0))
    return missed


def template_files(template: Path) -> list[Path]:
    """Paths, relative to ``template``, of the files a render writes verbatim (not ``*.jinja``, not in .git)."""
    found = []
    for folder, dirs, files in os.walk(template):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(folder, name).relative_to(template)
            if not name.endswith(".jinja"):
                found.append(path)
    return found


def _remove_empty_parents(path: Path, root: Path) -> None:
    folder = path.parent
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def rename_project(root: Path, files: Iterable[Path], mapping: Mapping[str, str], keep: Iterable[Path] = ()) -> int:
    """Rename the tokens in the contents and paths of ``files`` (relative to ``root``); returns how many changed.

    A renamed path replaces a file already there (``copier update`` renders the template's paths next to the
    project's renamed ones). Files that are not UTF-8 text keep their contents; ``keep`` is left alone.
    """
    kept = set(keep)
    changed = 0
    for relative in files:
        source = root / relative
        if relative in kept or source.is_symlink() or not source.is_file():
            continue
        target = root / Path(*(rename_text(part, mapping) for part in relative.parts))
        data = source.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            renamed = data
        else:
            renamed = rename_text(text, mapping).encode("utf-8")
        if target == source and renamed == data:
            continue
        if target != source:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            _remove_empty_parents(source, root)
        if renamed != data:
            target.write_bytes(renamed)
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    """Command line of the copier.yml task: rename the current directory's template files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--template", type=Path, required=True, help="the template's checkout Copier rendered")
    parser.add_argument("--answers-file", type=Path, required=True, help="left alone (it holds the answers)")
    parser.add_argument("--names", required=True, help="JSON: question key -> the template's name")
    parser.add_argument("--answers", required=True, help="JSON: question key -> answer")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the rendered project (default: here)")
    args = parser.parse_args(argv)
    try:
        mapping = renames(json.loads(args.names), json.loads(args.answers))
    except (TemplateError, json.JSONDecodeError) as error:
        print(f"template rename: {error}", file=sys.stderr)  # noqa: T201 - a command line's message
        return 2
    count = rename_project(args.root, template_files(args.template), mapping, keep=[args.answers_file])
    summary = ", ".join(f"{old} -> {new}" for old, new in mapping.items()) or "nothing to rename"
    print(f"template rename: {summary} ({count} files)", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
