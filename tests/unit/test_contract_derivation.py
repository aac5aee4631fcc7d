"""Grep-level check: only the contract and the demo generator name the demo's source columns or channel values.

Every other module takes columns by role from :mod:`mlops_recipes.contract` and categorical values from the
contract file, so a user's data with other names, types and values needs no code edit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_recipes.contract import demo_contract

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the demo's names may appear: the contract module (internal names, the demo contract) and the generator.
ALLOWED = {
    Path("src/mlops_recipes/contract.py"),
    Path("src/mlops_recipes/core/generator.py"),
}
CODE = ("src", "serving", "feature_repo", "flows")


def _demo_names() -> set[str]:
    demo = demo_contract()
    names = set(demo.source_columns().values())
    for spec in demo.categorical.values():
        names |= set(spec.values)
    return names


def _modules() -> list[Path]:
    return sorted(p.relative_to(REPO_ROOT) for top in CODE for p in (REPO_ROOT / top).rglob("*.py"))


def test_the_check_sees_the_code() -> None:
    modules = _modules()
    assert Path("serving/scoring.py") in modules
    assert Path("feature_repo/features.py") in modules
    assert len(modules) > 40
    assert {"customer_id", "channel", "online"} <= _demo_names()


def test_no_module_outside_the_contract_names_the_demo_columns_or_values() -> None:
    names = "|".join(map(re.escape, sorted(_demo_names())))
    literal = re.compile(r"""(?<![\w.])(['"])(?P<name>""" + names + r""")\1""")
    offenders = []
    for path in _modules():
        if path in ALLOWED:
            continue
        for number, line in enumerate((REPO_ROOT / path).read_text().splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("#"):
                continue
            for match in literal.finditer(line):
                offenders.append(f"{path}:{number}: {match.group('name')!r}: {stripped}")
    assert not offenders, "demo column names or values outside the contract:\n" + "\n".join(offenders)
