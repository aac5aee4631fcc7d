"""Draft a data contract from a user's table: the first step of bringing your own data (``mlops contract infer``).

Each column's type is inferred from its content (integers, numbers, timestamps and their format, text), roles
are proposed from names and content (a unique column named like an id, a 0/1 column named like a label…),
text columns with a small domain become categorical fields with their values by count, and everything left
over goes to ``ignore``. The draft is YAML with comments giving the evidence, for a person to review.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops_recipes.contract import ROLE_COLUMNS, parse_contract

# The contract's role keys (columns.<role>), in the order the contract file lists them.
_TXN, _TIME, _CUSTOMER, _MERCHANT, _AMOUNT, _LABEL, _CREATED = ROLE_COLUMNS

_SAMPLE = 20_000
_MAX_CATEGORIES = 50
_INDICATOR_MAX = 6
_ROLE_NAMES = {
    _TXN: r"(^|_)(txn|trans|transaction|tx|payment|event)s?_?(id|key|ref)$|^id$",
    _TIME: r"(time|date|ts|timestamp|datetime|at)$|^(ts|time|date)",
    _CREATED: r"(creat|open|signup|sign_up|since|registered|onboard)",
    _CUSTOMER: r"(customer|cust|card|client|user|account|acct|holder|pan)",
    _MERCHANT: r"(merchant|merch|shop|store|vendor|retailer|terminal|payee)",
    _AMOUNT: r"(amount|amt|value|price|total|sum)",
    _LABEL: r"(fraud|label|target|chargeback|is_bad|class|^y$)",
}
# Integer columns are numbers unless their name says they are codes (a merchant category code, a country code).
_CODE_NAMES = r"(code|mcc|category|categ|type|kind|country|region|segment)"
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


@dataclass
class ColumnProfile:
    """What the content of one column looks like."""

    name: str
    kind: str  # int, string_id, number, timestamp, boolean, text
    unique_share: float
    distinct: int
    time_format: str | None = None
    top: list[tuple[str, int]] = field(default_factory=list)
    note: str = ""


def profile(column: pd.Series) -> ColumnProfile:
    """Infer the kind of one column from (a sample of) its values."""
    values = column.dropna()
    if len(values) > _SAMPLE:
        values = values.sample(_SAMPLE, random_state=0)
    name = str(column.name)
    distinct = int(values.nunique())
    unique = distinct / max(len(values), 1)
    counts = column.astype(str).value_counts()
    top = [(str(k), int(v)) for k, v in counts.head(_MAX_CATEGORIES).items()]
    base = ColumnProfile(name, "text", unique, distinct, top=top)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        base.kind, base.time_format = "timestamp", None
        return base
    if pd.api.types.is_bool_dtype(column.dtype):
        base.kind = "boolean"
        return base
    text = values.astype(str).str.strip()
    if text.empty:
        return base
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        zero_padded = text.str.match(r"^0\d").any()
        integral = bool((numbers % 1 == 0).all())
        if set(numbers.unique()) <= {0, 1}:
            base.kind = "boolean"
        elif zero_padded:
            base.kind, base.note = "string_id", "leading zeros: read as text to keep them"
        elif integral and 1e9 <= numbers.median() < 1e10 * 2 and _ROLE_MATCH(_TIME, name):
            base.kind, base.time_format = "timestamp", "epoch_s"
        elif integral and 1e12 <= numbers.median() < 1e13 * 2 and _ROLE_MATCH(_TIME, name):
            base.kind, base.time_format = "timestamp", "epoch_ms"
        else:
            base.kind = "int" if integral else "number"
        return base
    if text.str.match(_ISO).mean() > 0.95:
        base.kind, base.time_format = "timestamp", "ISO8601"
        return base
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    if parsed.notna().mean() > 0.95:
        base.kind, base.time_format, base.note = "timestamp", None, "parsed by pandas: give a format if ambiguous"
        return base
    if text.str.lower().isin(["true", "false", "yes", "no"]).all():
        base.kind = "boolean"
        return base
    base.kind = "string_id" if unique > 0.5 or distinct > _MAX_CATEGORIES else "text"
    return base


def _ROLE_MATCH(role: str, name: str) -> bool:
    return re.search(_ROLE_NAMES[role], name.lower()) is not None


def propose_roles(profiles: list[ColumnProfile]) -> dict[str, tuple[str, str]]:
    """Role → (column, evidence), for the roles some column fits; each column gets at most one role."""
    taken: set[str] = set()
    roles: dict[str, tuple[str, str]] = {}

    def pick(role: str, fits: Any, why: str) -> None:
        named = [p for p in profiles if p.name not in taken and fits(p) and _ROLE_MATCH(role, p.name)]
        if named:
            roles[role] = (named[0].name, f"{why}; name matches")
            taken.add(named[0].name)

    pick(_LABEL, lambda p: p.kind == "boolean", "0/1 values")
    pick(_CREATED, lambda p: p.kind == "timestamp", "timestamps")
    pick(_TIME, lambda p: p.kind == "timestamp", "timestamps")
    if _TIME not in roles:
        stamps = [p for p in profiles if p.kind == "timestamp" and p.name not in taken]
        if stamps:
            roles[_TIME] = (stamps[0].name, "the first timestamp column")
            taken.add(stamps[0].name)
    pick(_TXN, lambda p: p.unique_share == 1.0 and p.kind in {"int", "string_id"}, "unique values")
    pick(_CUSTOMER, lambda p: p.kind in {"int", "string_id", "text"} and p.unique_share < 1.0, "repeated ids")
    pick(_MERCHANT, lambda p: p.kind in {"int", "string_id", "text"} and p.unique_share < 1.0, "repeated ids")
    pick(_AMOUNT, lambda p: p.kind in {"number", "int"}, "numbers")
    return roles


def draft_contract(frame: pd.DataFrame) -> str:
    """A commented YAML draft of the contract for ``frame``, to review before use."""
    profiles = [profile(frame[column]) for column in frame.columns]
    by_name = {p.name: p for p in profiles}
    roles = propose_roles(profiles)
    used = {column for column, _ in roles.values()}
    lines = [
        "# Draft data contract inferred by `mlops contract infer` from a table of "
        f"{len(frame)} rows and {len(frame.columns)} columns.",
        "# Review every role (the evidence is in the comments), then `mlops contract check` this file.",
        "version: 1",
        "columns:",
    ]
    for role in ROLE_COLUMNS:
        if role not in roles:
            optional = role in {_TXN, _CREATED}
            hint = "optional: null is fine" if optional else "REQUIRED: which column is it?"
            lines.append(f"  {role}: null  # no candidate found ({hint})")
            continue
        column, why = roles[role]
        info = by_name[column]
        lines.append(f"  {role}:  # {why}; {info.distinct} distinct value(s){'; ' + info.note if info.note else ''}")
        lines.append(f"    source: {_quote(column)}")
        if role in {_TXN, _CUSTOMER, _MERCHANT}:
            lines.append(f"    type: {'int' if info.kind == 'int' else 'string'}")
        if role in {_TIME, _CREATED}:
            lines.append(f"    format: {info.time_format or 'null'}")
            lines.append("    timezone: UTC  # the zone of values written without an offset")
    categorical = [
        p
        for p in profiles
        if p.name not in used
        and 2 <= p.distinct <= _MAX_CATEGORIES
        and (p.kind == "text" or (p.kind == "int" and re.search(_CODE_NAMES, p.name.lower())))
    ]
    lines.append("categorical:" if categorical else "categorical: {}")
    for info in categorical:
        values = [value for value, _ in info.top]
        counts = ", ".join(f"{value}: {count}" for value, count in info.top[:10])
        encoding = "indicators" if info.distinct <= _INDICATOR_MAX else "category"
        lines.append(f"  {_field_name(info.name)}:  # counts: {counts}{', …' if len(info.top) > 10 else ''}")
        lines.append(f"    source: {_quote(info.name)}")
        lines.append(f"    values: [{', '.join(_quote(v) for v in values)}]")
        lines.append(f"    encoding: {encoding}")
        lines.append("    open: false  # true: values outside this list are accepted as unseen")
        used.add(info.name)
    lines.append("numeric: {}  # request-time numbers to use as model inputs: name: {source: column}")
    ignored = [p for p in profiles if p.name not in used]
    lines.append("ignore:" if ignored else "ignore: []")
    for info in ignored:
        lines.append(f"  - {_quote(info.name)}  # {info.kind}, {info.distinct} distinct value(s)")
    text = "\n".join(lines) + "\n"
    _check_draft(text)
    return text


def _check_draft(text: str) -> None:
    """A draft that has every required role must parse as a contract (the draft is the format's own test)."""
    import yaml

    raw = yaml.safe_load(text)
    required = (_TIME, _CUSTOMER, _MERCHANT, _AMOUNT, _LABEL)
    if all(raw["columns"].get(role) for role in required):
        parse_contract(raw, source="inferred draft")


def _field_name(column: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", column.lower()).strip("_") or "field"
    return name if name[0].isalpha() else f"f_{name}"


def _quote(value: str) -> str:
    return (
        value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and value.lower() not in _YAML_WORDS else f"'{value}'"
    )


_YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"}
