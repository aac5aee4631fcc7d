"""Controlled rollouts, the pure parts: the rollout record, variant assignment, the plan and a step's verdict.

A rollout puts a candidate model version next to the champion in the running service, in one of two modes:

- ``shadow``: the candidate also scores a share of requests, off the response path; only metrics see it;
- ``canary``: a sticky share of customers (``hash(salt, customer)``) is scored by the candidate.

A plan (``monitoring/rollout-plan.yaml``) is a list of steps modelled on Argo Rollouts' canary steps with
analysis: each step sets the mode and share, holds for its duration, then evaluates PromQL checks against
thresholds; a failing check aborts the rollout, and passing the last step promotes the candidate.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_recipes.errors import ReportedError

Mode = Literal["shadow", "canary"]
Variant = Literal["champion", "candidate"]
Status = Literal["running", "promoted", "aborted"]
MODES: tuple[Mode, ...] = ("shadow", "canary")
CHAMPION_VARIANT: Variant = "champion"
CANDIDATE_VARIANT: Variant = "candidate"
# Shares are resolved in basis points: 0.01 % steps, and a 5 % canary is exactly 500 of 10,000 buckets.
_BUCKETS = 10_000


class RolloutError(ReportedError, ValueError):
    """A rollout request or plan that cannot be carried out (bad values, nothing running, a gate refusal)."""


@dataclass(frozen=True)
class RolloutState:
    """The rollout record every worker and replica reads from the registry (one JSON tag on the model)."""

    version: str
    mode: Mode
    percent: float
    salt: str
    started_at: str
    step: str = ""
    forced: bool = False
    # A finished rollout stays in the record (what happened last, and why) until the next one starts.
    status: Status = "running"
    reason: str = ""
    finished_at: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("running", "promoted", "aborted"):
            raise RolloutError(f"unknown rollout status {self.status!r}")
        if self.mode not in MODES:
            raise RolloutError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (isinstance(self.percent, int | float) and 0 <= self.percent <= 100) or math.isnan(self.percent):
            raise RolloutError(f"percent must lie in [0, 100], got {self.percent!r}")
        if not self.version.isdigit():
            raise RolloutError(f"version must be a registry version number, got {self.version!r}")

    def to_json(self) -> str:
        """The tag's value."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        """Read a tag written by :meth:`to_json`; a damaged record is a :class:`RolloutError`, not a crash."""
        try:
            data = json.loads(text)
            return cls(**{**data, "percent": float(data["percent"]), "version": str(data["version"])})
        except (ValueError, TypeError, KeyError) as error:
            raise RolloutError(f"unreadable rollout record {text[:200]!r}: {error}") from error

    @property
    def running(self) -> bool:
        """Whether the candidate is in service (shadow or canary) now."""
        return self.status == "running"

    def with_step(self, *, mode: Mode, percent: float, step: str) -> RolloutState:
        """The same rollout (same candidate, same salt: customers keep their variant) at another step."""
        return replace(self, mode=mode, percent=percent, step=step)

    def finished(self, status: Status, *, reason: str, at: str) -> RolloutState:
        """The record once the rollout ended (promoted or aborted)."""
        return replace(self, status=status, reason=reason[:2000], finished_at=at)


def bucket(customer: object, salt: str) -> int:
    """The customer's bucket in [0, 10000) for this rollout: stable for a salt, independent across salts."""
    digest = hashlib.blake2b(f"{salt}\0{customer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def assign_variant(customer: object, *, salt: str, percent: float) -> Variant:
    """The variant that scores ``customer`` in a canary of ``percent`` %: sticky while the salt stays.

    Raising the share only adds customers to the candidate (bucket < share): nobody moves back and forth.
    """
    return CANDIDATE_VARIANT if bucket(customer, salt) < round(percent * _BUCKETS / 100) else CHAMPION_VARIANT


# --- The plan ----------------------------------------------------------------------------------------------------


class Check(BaseModel):
    """One PromQL check: its value must stay at or under ``max`` (or at or over ``min``).

    ``query`` may use ``$candidate`` and ``$champion`` (their version numbers). A query that returns no sample
    (no traffic yet, no labels yet) is *inconclusive*: it fails the step only when ``required``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    query: str = Field(min_length=1)
    max: float | None = None
    min: float | None = None
    required: bool = False

    @model_validator(mode="after")
    def _one_bound(self) -> Check:
        if (self.max is None) == (self.min is None):
            raise ValueError(f"check {self.name!r}: give exactly one of max or min")
        try:
            string.Template(self.query).substitute(candidate="1", champion="1")
        except (KeyError, ValueError) as error:
            raise ValueError(f"check {self.name!r}: unknown placeholder in query ({error})") from error
        return self

    def promql(self, *, candidate: str, champion: str) -> str:
        """The query with the versions filled in."""
        return string.Template(self.query).substitute(candidate=candidate, champion=champion)


class Step(BaseModel):
    """One step: run the candidate in ``mode`` at ``percent`` for ``duration_s``, then evaluate ``checks``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode
    percent: float = Field(gt=0, le=100)
    duration_s: float = Field(gt=0, le=7 * 86400)
    checks: tuple[str, ...] = ()


class RolloutPlan(BaseModel):
    """Steps in order, and the checks they name. Passing the last step promotes the candidate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: tuple[Check, ...] = ()
    steps: tuple[Step, ...] = Field(min_length=1)
    poll_s: float = Field(default=15.0, gt=0, description="How often checks are evaluated while a step holds.")

    @model_validator(mode="after")
    def _checks_exist(self) -> RolloutPlan:
        names = [check.name for check in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique")
        for number, step in enumerate(self.steps, 1):
            unknown = sorted(set(step.checks) - set(names))
            if unknown:
                raise ValueError(f"step {number} names checks that are not defined: {unknown}")
        return self

    def checks_of(self, step: Step) -> list[Check]:
        """The checks a step names, in its order."""
        by_name = {check.name: check for check in self.checks}
        return [by_name[name] for name in step.checks]


def parse_plan(document: Mapping[str, Any] | None) -> RolloutPlan:
    """Validate a plan read from YAML; every problem is one :class:`RolloutError` that names the field."""
    from pydantic import ValidationError

    try:
        return RolloutPlan.model_validate(document or {})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in error.errors())
        raise RolloutError(f"invalid rollout plan: {problems}") from None


def step_label(number: int, step: Step) -> str:
    """How the record, the dashboard and the logs name a step: ``2: canary 25%``."""
    return f"{number}: {step.mode} {step.percent:g}%"


# --- A step's verdict --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """A check evaluated: its value (None: the query returned nothing) and whether it passed."""

    name: str
    value: float | None
    passed: bool | None  # None: inconclusive
    detail: str
    required: bool = False


def evaluate_check(check: Check, value: float | None) -> CheckResult:
    """Compare one value with the check's bound. NaN (0/0: no traffic in the window) counts as no value."""
    if value is None or math.isnan(value):
        passed = False if check.required else None
        detail = f"{check.name}: no data" + (" (required)" if check.required else "")
        return CheckResult(check.name, None, passed, detail, check.required)
    if check.max is not None:
        ok = value <= check.max
        detail = f"{check.name} = {value:.4g} ({'<=' if ok else '>'} {check.max:g})"
    else:
        assert check.min is not None  # noqa: S101 - the validator guarantees one bound
        ok = value >= check.min
        detail = f"{check.name} = {value:.4g} ({'>=' if ok else '<'} {check.min:g})"
    return CheckResult(check.name, value, ok, detail, check.required)


def failures(results: Sequence[CheckResult], *, final: bool = True) -> list[CheckResult]:
    """The results that fail a step (inconclusive ones do not).

    While a step holds (``final`` false), required checks do not fail it yet: they say what the step must have
    reached by its end (traffic on the candidate, enough labels), and the candidate may still be loading.
    """
    return [r for r in results if r.passed is False and (final or not r.required)]
