"""The data contract: ``contract.yaml``, one declarative file that says what the transactions look like.

A user adopting the template edits this file (and ``params.yaml``), not code. It maps each *role* (transaction
id, event time, customer and merchant keys, amount, label, account creation time) to a column of the source
file with its type, declares the request-time categorical and numeric fields with their domains and encoding,
and lists the columns to ignore. Everything else derives from it:

* ingest renames the source columns to the internal names below, reads CSV with explicit types and parses
  timestamps (:mod:`mlops_recipes.core.conform`);
* the pandera schema (:mod:`mlops_recipes.core.schema`), the Feast entities' key types and the feature views
  (``feature_repo/features.py``), the request-time features and the model inputs
  (:mod:`mlops_recipes.core.request_features`), the service's request model (``serving/schemas.py``), batch
  scoring and the traffic tool all read it.

Optional roles and what follows when they are absent:

* ``columns.transaction_id: null``: a deterministic id is computed from a hash of the row's source values;
* ``columns.account_created: null``: the features that need an account-creation date (``account_age_days``
  and the stored ``cust_account_created_ts``) are left out of the feature view, the feature service, the model
  inputs, the drift reference and the API.

Internal column names are fixed here, once: every module that needs a column by role imports it from here.
The demo contract (the synthetic generator's columns) is the repository's ``contract.yaml`` and
:func:`demo_contract`.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_recipes.errors import ReportedError

# Internal column names (after ingest): the feature tables, the Feast join keys and the API use these.
TRANSACTION_ID = "transaction_id"
EVENT_TIME = "event_timestamp"
CUSTOMER = "customer_id"
MERCHANT = "merchant_id"
AMOUNT = "amount"
LABEL = "is_fraud"
ACCOUNT_CREATED = "account_created_at"
ROLE_COLUMNS = {
    "transaction_id": TRANSACTION_ID,
    "event_time": EVENT_TIME,
    "customer": CUSTOMER,
    "merchant": MERCHANT,
    "amount": AMOUNT,
    "label": LABEL,
    "account_created": ACCOUNT_CREATED,
}
DEFAULT_MAX_AMOUNT = 1_000_000.0

FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
CategoryValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]
SourceColumn = Annotated[str, Field(min_length=1, max_length=200)]


class ContractError(ReportedError, ValueError):
    """``contract.yaml`` is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdColumn(_Strict):
    """An identifier column: integers, or strings kept exactly as written (``0742`` keeps its zero)."""

    source: SourceColumn = Field(description="Column name in your file.")
    type: Literal["int", "string"] = "int"

    def placeholder(self) -> int | str:
        """A key of the right type that no real entity is expected to have (warm-up lookups)."""
        return 0 if self.type == "int" else "__warm_up__"


class TimeColumn(_Strict):
    """A timestamp column and how to read it."""

    source: SourceColumn
    format: str | None = Field(
        default=None,
        description="None: Parquet timestamps or pandas' parser; 'ISO8601'; 'epoch_s' or 'epoch_ms'; or a "
        "strftime pattern such as '%d/%m/%Y %H:%M'.",
    )
    timezone: str = Field(default="UTC", description="IANA zone of values written without an offset.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'Europe/Paris')"
            ) from None
        return value


class AmountColumn(_Strict):
    """The transaction amount (a positive number)."""

    source: SourceColumn
    max: Annotated[float, Field(gt=0)] = DEFAULT_MAX_AMOUNT


class LabelColumn(_Strict):
    """The fraud label: 0/1 (or true/false)."""

    source: SourceColumn


class Columns(_Strict):
    """Where each role is in the source file. ``null`` for an optional role means the file does not have it."""

    transaction_id: IdColumn | None = Field(
        description="null: a deterministic id from a hash of the row's source values."
    )
    event_time: TimeColumn
    customer: IdColumn
    merchant: IdColumn
    amount: AmountColumn
    label: LabelColumn
    account_created: TimeColumn | None = Field(
        description="null: features that need the account-creation date are left out everywhere."
    )


class Categorical(_Strict):
    """A categorical field known at request time, and how the model consumes it."""

    source: SourceColumn | None = Field(default=None, description="Column in your file; default: the field name.")
    values: list[CategoryValue] = Field(min_length=2, description="The domain; the first value is the reference.")
    encoding: Literal["indicators", "category"] = Field(
        default="indicators",
        description="indicators: one 0/1 input per value but the first (<field>_<value>); category: one input "
        "holding the value's position, treated as categorical inside the model's Pipeline.",
    )
    open: bool = Field(
        default=False,
        description="false: values outside the domain fail validation and the API; true: accepted and encoded "
        "as unseen (no indicator set, a missing category), and counted by the service.",
    )

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        duplicated = sorted({v for v in values if values.count(v) > 1})
        if duplicated:
            raise ValueError(f"values must be unique, repeated: {duplicated}")
        return values


class Numeric(_Strict):
    """A numeric field known at request time that becomes a model input as it is."""

    source: SourceColumn | None = Field(default=None, description="Column in your file; default: the field name.")
    min: float | None = None
    max: float | None = None
    optional: bool = Field(default=False, description="May be missing (NaN in training, omitted in requests).")


class Contract(_Strict):
    """Everything in ``contract.yaml``."""

    version: Literal[1] = 1
    columns: Columns
    categorical: dict[FieldName, Categorical] = Field(default_factory=dict)
    numeric: dict[FieldName, Numeric] = Field(default_factory=dict)
    ignore: list[SourceColumn] = Field(default_factory=list, description="Source columns dropped on ingest.")

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        internal = set(ROLE_COLUMNS.values())
        for kind, fields in (("categorical", self.categorical), ("numeric", self.numeric)):
            for name in fields:
                if name in internal:
                    raise ValueError(f"{kind}.{name}: the name is taken by a role column; choose another name")
        both = sorted(set(self.categorical) & set(self.numeric))
        if both:
            raise ValueError(f"fields declared both categorical and numeric: {both}")
        seen: dict[str, str] = {}
        for key, source in self.source_columns().items():
            if source in seen:
                raise ValueError(f"source column {source!r} is mapped twice: {seen[source]} and {key}")
            seen[source] = key
        overlap = sorted(set(self.ignore) & set(seen))
        if overlap:
            raise ValueError(f"ignore lists columns that are also mapped: {overlap}")
        return self

    def source_columns(self) -> dict[str, str]:
        """Contract key (``columns.customer``, ``categorical.channel``…) → source column, for present fields."""
        out = {f"columns.{role}": spec.source for role, spec in self._roles().items()}
        out |= {f"categorical.{n}": c.source or n for n, c in self.categorical.items()}
        out |= {f"numeric.{n}": f.source or n for n, f in self.numeric.items()}
        return out

    def internal_columns(self) -> dict[str, str]:
        """Contract key → internal column name, for present fields."""
        out = {f"columns.{role}": ROLE_COLUMNS[role] for role in self._roles()}
        out |= {f"categorical.{n}": n for n in self.categorical}
        out |= {f"numeric.{n}": n for n in self.numeric}
        return out

    def key_of(self, internal: str) -> str:
        """The contract key that declares an internal column (for messages)."""
        return {column: key for key, column in self.internal_columns().items()}.get(internal, internal)

    def _roles(self) -> dict[str, Any]:
        roles = {role: getattr(self.columns, role) for role in ROLE_COLUMNS}
        return {role: spec for role, spec in roles.items() if spec is not None}

    @property
    def has_account_created(self) -> bool:
        """Whether the data has an account-creation date (account-age features exist)."""
        return self.columns.account_created is not None

    @property
    def request_fields(self) -> tuple[str, ...]:
        """Internal names of the fields a request (or a raw event at training time) carries besides the keys."""
        return (AMOUNT, *self.categorical, *self.numeric, EVENT_TIME)

    @property
    def entity_keys(self) -> tuple[str, str]:
        """The join keys of the feature store, customer first."""
        return CUSTOMER, MERCHANT

    def placeholder_keys(self) -> dict[str, int | str]:
        """Entity keys of the right types that no real entity is expected to have (warm-up lookups)."""
        return {CUSTOMER: self.columns.customer.placeholder(), MERCHANT: self.columns.merchant.placeholder()}

    def id_type(self, column: str) -> Literal["int", "string"]:
        """``int`` or ``string`` for an id column (the transaction id is a string when it is generated)."""
        if column == CUSTOMER:
            return self.columns.customer.type
        if column == MERCHANT:
            return self.columns.merchant.type
        if column == TRANSACTION_ID:
            return "string" if self.columns.transaction_id is None else self.columns.transaction_id.type
        raise KeyError(column)


def describe(contract: Contract) -> str:
    """One line: what the contract maps, and what it leaves out."""
    parts = [f"{len(contract.source_columns())} mapped column(s)"]
    if contract.categorical:
        parts.append(f"categorical {sorted(contract.categorical)}")
    if contract.numeric:
        parts.append(f"numeric {sorted(contract.numeric)}")
    if contract.ignore:
        parts.append(f"{len(contract.ignore)} ignored")
    if contract.columns.transaction_id is None:
        parts.append("transaction id derived from a row hash")
    if not contract.has_account_created:
        parts.append("no account-creation date: account-age features left out")
    return "; ".join(parts)


def demo_contract() -> Contract:
    """The contract of the synthetic generator's data (``core/generator.py``): the repository's default."""
    return Contract(
        columns=Columns(
            transaction_id=IdColumn(source="transaction_id", type="int"),
            event_time=TimeColumn(source="event_timestamp"),
            customer=IdColumn(source="customer_id", type="int"),
            merchant=IdColumn(source="merchant_id", type="int"),
            amount=AmountColumn(source="amount"),
            label=LabelColumn(source="is_fraud"),
            account_created=TimeColumn(source="account_created_at"),
        ),
        categorical={"channel": Categorical(source="channel", values=["pos", "online", "atm"])},
    )


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "missing":
            lines.append(f"  {key}: required (write `null` for an optional role the data does not have)")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_contract(raw: object, *, source: str = "contract") -> Contract:
    """Validate an already-loaded mapping; raise :class:`ContractError` naming every bad key."""
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Contract.model_validate(raw)
    except ValidationError as error:
        raise ContractError(f"{source} is invalid:\n{_format_errors(error)}") from None


def load_contract(path: Path) -> Contract:
    """Read and validate ``contract.yaml``."""
    from mlops_recipes.io.files import read_yaml

    return parse_contract(read_yaml(path, error=ContractError, what="data contract"), source=str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``contract.yaml`` (``mlops contract schema``)."""
    return Contract.model_json_schema()


def dump_contract(contract: Contract) -> dict[str, Any]:
    """A YAML-ready mapping that :func:`parse_contract` reads back to an equal contract."""
    return contract.model_dump(mode="json", exclude_defaults=False)
