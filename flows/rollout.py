"""rollout: run a rollout plan (monitoring/rollout-plan.yaml) for a candidate version, step by step.

Modelled on Argo Rollouts' canary steps with analysis: each step sets the candidate's mode and share in the
registry's rollout record (the services follow within their poll), holds for its duration while its PromQL checks
are evaluated against Prometheus, and a failing check aborts the rollout with the reason recorded. Passing the last
step promotes the candidate; the old champion stays the rollback target. Manual ``mlops rollout promote|abort``
work at any time: the flow stops at its next evaluation when the rollout is no longer running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows._common import markdown_table, project_settings
from mlops_recipes.core.rollout import CheckResult, RolloutPlan, Step, failures, parse_plan, step_label
from mlops_recipes.io import registry, rollout, tracking
from mlops_recipes.settings import Settings


@task
def enter_step(settings: Settings, *, version: str, number: int, step: Step, force: bool) -> dict[str, Any]:
    """Write the step into the rollout record (the first step starts the rollout)."""
    client, label = tracking.client(settings), step_label(number, step)
    if number == 1:
        state = rollout.begin(
            client, settings.model_name, version=version, mode=step.mode, percent=step.percent, step=label, force=force
        )
    else:
        state = rollout.set_step(client, settings.model_name, mode=step.mode, percent=step.percent, step=label)
    champion = registry.alias_version(client, settings.model_name, registry.CHAMPION)
    return {"record": state, "champion": str(champion.version) if champion is not None else ""}


@task
def hold(settings: Settings, plan: RolloutPlan, step: Step, *, candidate: str, champion: str) -> list[CheckResult]:
    """Hold the step, evaluating its checks; returns the last results (with the failure that stopped it, if any)."""
    client = tracking.client(settings)

    def still_running() -> bool:
        current = rollout.read(client, settings.model_name)
        return current is not None and current.running and current.version == candidate

    try:
        return rollout.hold_step(
            plan,
            step,
            prometheus_url=settings.prometheus_url,
            candidate=candidate,
            champion=champion,
            still_running=still_running,
        )
    except rollout.PrometheusUnavailable as error:  # no step passes on missing figures: the safe side is to abort
        return [CheckResult("prometheus", None, False, str(error))]


@task
def conclude(settings: Settings, *, failed: list[CheckResult], label: str) -> dict[str, Any]:
    """Abort on failed checks, promote otherwise; a rollout already ended by hand is left as it is."""
    client = tracking.client(settings)
    current = rollout.read(client, settings.model_name)
    if current is None or not current.running:
        return {"status": current.status if current else "none", "reason": "ended outside the plan"}
    if failed:
        reason = f"step {label}: " + "; ".join(result.detail for result in failed)
        state = rollout.abort(client, settings.model_name, reason=reason)
        return {"status": state.status, "reason": reason}
    previous, state = rollout.promote(client, settings.model_name, reason="every step of the plan passed")
    return {"status": state.status, "reason": state.reason, "champion_before": previous}


@flow(name="rollout")
def rollout_plan(
    version: str,
    plan_file: str = "monitoring/rollout-plan.yaml",
    project_root: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Roll ``version`` out along the plan: promoted if every step's checks pass, aborted at the first failure."""
    settings = project_settings(project_root)
    path = Path(plan_file) if Path(plan_file).is_absolute() else settings.path(Path(plan_file))
    plan = parse_plan(yaml.safe_load(path.read_text(encoding="utf-8")))
    log = get_run_logger()
    steps: dict[str, str] = {}
    failed: list[CheckResult] = []
    label = ""
    for number, step in enumerate(plan.steps, 1):
        label = step_label(number, step)
        entered = enter_step(settings, version=version, number=number, step=step, force=force)
        log.info("step %s: candidate v%s next to champion v%s", label, version, entered["champion"])
        results = hold(settings, plan, step, candidate=version, champion=entered["champion"])
        steps[label] = "; ".join(result.detail for result in results) or "no checks"
        failed = failures(results)
        still = rollout.read(tracking.client(settings), settings.model_name)
        if failed or still is None or not still.running:
            break
    outcome = conclude(settings, failed=failed, label=label)
    log.info("rollout of v%s %s: %s", version, outcome["status"], outcome["reason"])
    create_markdown_artifact(
        key="rollout",
        markdown=f"# Rollout of v{version}: {outcome['status']}\n\n"
        + markdown_table({**steps, "outcome": outcome["reason"]}, header=("step", "checks")),
    )
    return {"version": version, "steps": steps, **outcome}


if __name__ == "__main__":
    import sys

    rollout_plan(version=sys.argv[1])
