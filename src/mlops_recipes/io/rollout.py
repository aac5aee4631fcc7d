"""The rollout record in the model registry: one JSON tag on the registered model, plus the ``candidate`` alias.

The alias points at the latest rollout's version, running or finished (the record's ``status`` says which): it
is moved at each start and never deleted, because deleting an alias needs the registry's delete permission,
which the pipeline's writer account does not have (docs/compose.md). Readers go by the record, not the alias.

One tag is written in one call, so every reader (each worker of each replica, polling) sees a whole record,
never half of one. The record stays after the rollout ends (``status`` promoted or aborted, with the reason)
until the next rollout starts. Promotion moves ``champion`` through :func:`registry.set_champion`, so the old
champion stays the rollback target (``mlops rollback``).
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlops_recipes.core.rollout import (
    CheckResult,
    Mode,
    RolloutError,
    RolloutPlan,
    RolloutState,
    Step,
    evaluate_check,
    failures,
)
from mlops_recipes.io import registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROLLOUT_TAG = "rollout"
CANDIDATE = "candidate"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def read(client: MlflowClient, name: str) -> RolloutState | None:
    """The rollout record of ``name`` (running or the last one finished), or None if there never was one."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as error:
        if getattr(error, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return None
        raise
    text = tags.get(ROLLOUT_TAG)
    return None if not text else RolloutState.from_json(text)


def running(client: MlflowClient, name: str) -> RolloutState:
    """The running rollout, or a :class:`RolloutError` saying there is none."""
    state = read(client, name)
    if state is None or not state.running:
        raise RolloutError(f"no rollout of {name!r} is running (start one: mlops rollout start --version N)")
    return state


def _write(client: MlflowClient, name: str, state: RolloutState) -> RolloutState:
    client.set_registered_model_tag(name, ROLLOUT_TAG, state.to_json())
    return state


def start(
    client: MlflowClient, name: str, *, version: str, mode: Mode, percent: float, force: bool = False, step: str = ""
) -> RolloutState:
    """Start rolling ``version`` out next to the champion.

    Refused while another rollout runs, for the champion itself, and for a version the offline gate rejected
    (unless ``force``: recorded on the record and on the version).
    """
    current = read(client, name)
    if current is not None and current.running:
        raise RolloutError(f"a rollout of v{current.version} is running: promote or abort it first")
    candidate = registry.get_version(client, name, version)
    champion = registry.alias_version(client, name, registry.CHAMPION)
    if champion is None:
        raise RolloutError(f"model {name!r} has no champion: promote a version instead of rolling it out")
    if str(champion.version) == str(version):
        raise RolloutError(f"v{version} is already the champion")
    if candidate.tags.get("gate_decision") == "rejected" and not force:
        raise RolloutError(
            f"v{version} was rejected by the offline gate ({candidate.tags.get('gate_reasons', 'no reasons')}); "
            "pass --force to roll it out anyway (recorded)"
        )
    state = RolloutState(
        version=str(version),
        mode=mode,
        percent=percent,
        salt=secrets.token_hex(8),  # per rollout: each canary samples other customers
        started_at=_now(),
        step=step,
        forced=force,
    )
    if force:
        client.set_model_version_tag(name, str(version), "rollout_forced_at", state.started_at)
    client.set_model_version_tag(name, str(version), "rollout_started_at", state.started_at)
    client.set_registered_model_alias(name, CANDIDATE, str(version))
    return _write(client, name, state)


def begin(
    client: MlflowClient, name: str, *, version: str, mode: Mode, percent: float, step: str, force: bool = False
) -> RolloutState:
    """A plan's first step: start the rollout, or take over one of the same version started by hand."""
    current = read(client, name)
    if current is not None and current.running and current.version == str(version):
        return set_step(client, name, mode=mode, percent=percent, step=step)
    return start(client, name, version=version, mode=mode, percent=percent, force=force, step=step)


def set_step(client: MlflowClient, name: str, *, mode: Mode, percent: float, step: str) -> RolloutState:
    """Move the running rollout to another mode or share; the salt stays, so canary customers keep their variant."""
    return _write(client, name, running(client, name).with_step(mode=mode, percent=percent, step=step))


def promote(client: MlflowClient, name: str, *, reason: str) -> tuple[str | None, RolloutState]:
    """Make the candidate the champion (the old one stays the rollback target). Returns (previous, record)."""
    state = running(client, name)
    previous = registry.set_champion(client, name, state.version, reason=f"rollout: {reason}")
    return previous, _write(client, name, state.finished("promoted", reason=reason, at=_now()))


def abort(client: MlflowClient, name: str, *, reason: str) -> RolloutState:
    """Stop the rollout: the candidate is unloaded everywhere; the reason is tagged on the version."""
    if not reason.strip():
        raise RolloutError("an abort needs a reason (--reason)")
    state = running(client, name)
    at = _now()
    client.set_model_version_tag(name, state.version, "rollout_aborted_at", at)
    client.set_model_version_tag(name, state.version, "rollout_aborted_reason", reason[:4000])
    return _write(client, name, state.finished("aborted", reason=reason, at=at))


# --- Analysis against Prometheus -----------------------------------------------------------------------------


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer (or refused the query): no step passes on missing figures."""


def query_value(prometheus_url: str, expr: str, *, attempts: int = 3, timeout_s: float = 10.0) -> float | None:
    """The value of an instant query: a scalar, or the highest sample of a vector; None when it has none."""
    import httpx

    url = prometheus_url.rstrip("/") + "/api/v1/query"
    for attempt in range(attempts):
        try:
            response = httpx.get(url, params={"query": expr}, timeout=timeout_s)
            if response.status_code == 400:  # a query that does not parse will not parse on a retry either
                raise PrometheusUnavailable(f"Prometheus refused the query {expr!r}: {response.text[:500]}")
            response.raise_for_status()
            break
        except httpx.HTTPError as error:
            if attempt == attempts - 1:
                raise PrometheusUnavailable(f"cannot query Prometheus at {url}: {error}") from error
            time.sleep(1.0 + attempt)
    data: dict[str, Any] = response.json()["data"]
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    values = [float(sample["value"][1]) for sample in data["result"]]
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else None


def analyse(plan: RolloutPlan, step: Step, *, prometheus_url: str, candidate: str, champion: str) -> list[CheckResult]:
    """Evaluate a step's checks now."""
    return [
        evaluate_check(check, query_value(prometheus_url, check.promql(candidate=candidate, champion=champion)))
        for check in plan.checks_of(step)
    ]


def hold_step(
    plan: RolloutPlan,
    step: Step,
    *,
    prometheus_url: str,
    candidate: str,
    champion: str,
    still_running: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[CheckResult]:
    """Hold ``step`` for its duration, evaluating its checks every ``plan.poll_s``; stop at the first failure.

    Returns the last results: with a failure (abort) or, at the end of the duration, without one (go on). Also
    returns early once ``still_running()`` is false (an operator promoted or aborted meanwhile).
    """
    deadline = clock() + step.duration_s
    while True:
        results = analyse(plan, step, prometheus_url=prometheus_url, candidate=candidate, champion=champion)
        remaining = deadline - clock()
        if remaining <= 0 or failures(results, final=False) or not still_running():
            return results
        sleep(min(plan.poll_s, remaining))
