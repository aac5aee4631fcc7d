"""register: register the candidate, alias it ``challenger``, and run the gate that may move ``champion``.

Idempotent: a model already registered is found, not registered twice; a champion that already is the
candidate stays. The decision goes to ``reports/promotion.json`` and to tags on the version.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_recipes.contract import LABEL
from mlops_recipes.core import segments
from mlops_recipes.core.gate import GateDecision, SegmentScore, chance_score, check_segments, decide, with_segments
from mlops_recipes.errors import ReportedError
from mlops_recipes.io import holdout as holdouts
from mlops_recipes.io import registry, tracking
from mlops_recipes.io.files import read_json, write_json
from mlops_recipes.io.models import (
    FEATURE_SERVICE_TAG,
    THRESHOLD_TAG,
    LoadedModel,
    MissingFeaturesError,
    ModelLoadError,
    load_version,
)
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient


class GateRejected(ReportedError, RuntimeError):
    """The gate refused the candidate and ``register.fail_on_reject`` is set."""


class RollbackRefused(ReportedError, RuntimeError):
    """The version a rollback would make champion fails the model contract: the champion stays."""


def score_version(settings: Settings, version: str, holdout: pd.DataFrame) -> tuple[LoadedModel, np.ndarray]:
    """A registered version loaded through the model contract and its scores on the holdout."""
    model = load_version(settings, version)
    return model, model.score_frame(holdout)


def _unscorable(error: Exception) -> bool:
    """A champion that cannot read this holdout (another feature set, a failed check), not a store out of reach."""
    return isinstance(error, MissingFeaturesError) or (isinstance(error, ModelLoadError) and not error.transient)


def champion_score(
    client: MlflowClient, settings: Settings, params: Params, holdout: pd.DataFrame
) -> tuple[str | None, float | None, str | None]:
    """The current champion's (version, score on this holdout at its own threshold, note).

    The score is None when there is no champion or it cannot read this holdout (a different feature set).
    """
    current = registry.alias_version(client, settings.model_name, registry.CHAMPION)
    if current is None:
        return None, None, None
    try:
        champion, scores = score_version(settings, str(current.version), holdout)
    except (MissingFeaturesError, ModelLoadError) as error:
        if not _unscorable(error):
            raise
        return str(current.version), None, f"champion v{current.version} cannot be scored on this holdout ({error})"
    metrics = holdouts.metrics(holdout, scores, params.evaluate, threshold=champion.threshold)
    return str(current.version), metrics[params.register_.metric], None


def segment_scores(table: pd.DataFrame, metric: str) -> dict[str, SegmentScore]:
    """Segment key → the gated metric and the frauds behind it, from a segment metrics table."""
    return {
        str(row["segment"]): SegmentScore(float(row[metric]), int(row["positives"])) for row in table.to_dict("records")
    }


def gate_segments(
    decision: GateDecision,
    client: MlflowClient,
    settings: Settings,
    params: Params,
    *,
    holdout: pd.DataFrame,
    candidate_segments: pd.DataFrame,
) -> GateDecision:
    """Add the per-segment checks (``register.segments``) to a global decision; unchanged when none is set.

    The champion is re-scored on the same holdout, and so on the same segments, only for the regression check.
    """
    rules = params.register_.segments
    if not rules.active:
        return decision
    champion = None
    current = registry.alias_version(client, settings.model_name, registry.CHAMPION)
    if rules.max_regression is not None and current is not None:
        try:
            model, scores = score_version(settings, str(current.version), holdout)
        except (MissingFeaturesError, ModelLoadError) as error:
            if not _unscorable(error):
                raise
            model = None  # the global check already reports a champion that cannot read this holdout
        if model is not None:
            table = holdouts.segment_table(settings, params, holdout, scores, threshold=model.threshold)
            champion = segment_scores(table, rules.metric)
    failures, notes = check_segments(
        segment_scores(candidate_segments, rules.metric),
        champion,
        metric=rules.metric,
        min_positives=rules.min_positives,
        floor=rules.floor,
        floors=rules.floors,
        max_regression=rules.max_regression,
    )
    return with_segments(decision, failures, notes)


def gate(
    client: MlflowClient,
    settings: Settings,
    params: Params,
    *,
    version: str,
    candidate_score: float,
    holdout: pd.DataFrame,
    candidate_segments: pd.DataFrame | None = None,
) -> tuple[GateDecision, str | None]:
    """Decide on ``version`` against the current champion on the same holdout. Returns (decision, champion).

    ``candidate_segments`` (the candidate's metrics per segment) adds the per-segment checks.
    """
    rules = params.register_
    champ_version, champ_score, note = champion_score(client, settings, params, holdout)
    if champ_version == str(version):
        return GateDecision(True, ("already champion",), rules.metric, candidate_score, champ_score), champ_version
    decision = decide(
        metric=rules.metric,
        candidate_score=candidate_score,
        floor=rules.floor,
        min_improvement=rules.min_improvement,
        champion_score=champ_score,
        chance=chance_score(rules.metric, base_rate=float(holdout[LABEL].mean()), max_fpr=params.evaluate.max_fpr),
        min_skill=rules.min_skill,
    )
    if note:
        decision = GateDecision(decision.promote, (*decision.reasons, note), *_tail(decision))
    if candidate_segments is not None:
        decision = gate_segments(
            decision, client, settings, params, holdout=holdout, candidate_segments=candidate_segments
        )
    return decision, champ_version


def _tail(decision: GateDecision) -> tuple[str, float, float | None, float | None]:
    return decision.metric, decision.candidate_score, decision.champion_score, decision.chance_score


def apply_decision(client: MlflowClient, settings: Settings, version: str, decision: GateDecision) -> str | None:
    """Record the decision on the version and move ``champion`` if it promotes. Returns the champion before."""
    name = settings.model_name
    client.set_model_version_tag(name, version, "gate_decision", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, version, "gate_reasons", json.dumps(list(decision.reasons))[:4000])
    before = registry.alias_version(client, name, registry.CHAMPION)
    if decision.promote:
        registry.set_champion(client, name, version, reason="; ".join(decision.reasons))
    return str(before.version) if before is not None else None


def write_card(client: MlflowClient, settings: Settings, params: Params, version: str) -> dict[str, str]:
    """Generate the version's model card from its run and tags, and store it (description + run artifacts)."""
    from mlops_recipes.io import card

    facts = card.gather(client, settings.model_name, version, params)
    return card.publish(client, facts, min_positives=params.register_.segments.min_positives)


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Register, alias ``challenger``, gate, maybe promote; write ``reports/promotion.json``."""
    trained = read_json(settings.train_run_file)
    metrics = read_json(settings.holdout_metrics_file)
    holdout = holdouts.read(settings)
    tags = {
        FEATURE_SERVICE_TAG: trained["feature_service"],
        # The threshold the evaluate stage computed these metrics at: the version decides at it wherever it scores.
        THRESHOLD_TAG: str(params.evaluate.threshold),
        "model_family": trained["model_family"],
        **{f"{registry.METRIC_PREFIX}{k}": str(v) for k, v in metrics.items()},
    }
    client = tracking.client(settings)
    with tracking.fluent(settings):  # registering a logged model has no client-only form
        registered = registry.ensure_version(
            client, settings.model_name, model_uri=trained["model_uri"], run_id=trained["run_id"], tags=tags
        )
    version = str(registered.version)
    registry.set_challenger(client, settings.model_name, version)
    decision, _ = gate(
        client,
        settings,
        params,
        version=version,
        candidate_score=float(metrics[params.register_.metric]),
        holdout=holdout,
        candidate_segments=segments.from_document(read_json(settings.segment_metrics_file)),
    )
    before = apply_decision(client, settings, version, decision)
    model_card = write_card(client, settings, params, version)
    after = registry.alias_version(client, settings.model_name, registry.CHAMPION)
    report = {
        "model_name": settings.model_name,
        "candidate_version": version,
        "run_id": trained["run_id"],
        "champion_before": before,
        "champion_after": str(after.version) if after is not None else None,
        "champion": registry.describe(client, after),
        "decision": decision.as_dict(),
        "model_card": model_card,
    }
    write_json(report, settings.path(settings.reports_dir) / "promotion.json")
    if not decision.promote and params.register_.fail_on_reject:
        raise GateRejected(f"gate rejected v{version}: " + "; ".join(decision.reasons))
    return {"stage": "register", **report}


def promote(settings: Settings, params: Params, *, version: str, force: bool) -> dict[str, Any]:
    """Manually promote ``version``: still gated on the current holdout unless ``force``."""
    client = tracking.client(settings)
    registry.get_version(client, settings.model_name, version)
    holdout = holdouts.read(settings)
    model, scores = score_version(settings, version, holdout)
    score = holdouts.metrics(holdout, scores, params.evaluate, threshold=model.threshold)[params.register_.metric]
    if force:
        decision = GateDecision(True, ("forced by operator",), params.register_.metric, score, None)
    else:
        by_segment = holdouts.segment_table(settings, params, holdout, scores, threshold=model.threshold)
        decision, _ = gate(
            client,
            settings,
            params,
            version=version,
            candidate_score=score,
            holdout=holdout,
            candidate_segments=by_segment,
        )
    before = apply_decision(client, settings, version, decision)
    write_card(client, settings, params, version)
    if not decision.promote:
        raise GateRejected(f"gate rejected v{version}: " + "; ".join(decision.reasons) + " (use --force to override)")
    return {"promoted": version, "champion_before": before, "decision": decision.as_dict()}


def rollback(settings: Settings) -> dict[str, str]:
    """Move ``champion`` back to the version it replaced, once that version passes the model contract.

    The target is loaded through the one door every scorer uses (:func:`load_version`: artifacts, signature,
    features the contract provides, feature service and threshold tags, drift reference, warm-up), as a promotion
    loads its candidate. An alias on a version that fails it would leave the service on the old model (it refuses
    the load) and batch scoring failing, at the moment the operator needs a working champion.
    """
    client = tracking.client(settings)
    name = settings.model_name
    champion, target = registry.rollback_target(client, name)
    try:
        load_version(settings, target)
    except ModelLoadError as error:
        hint = (
            "the registry or the artifact store could not be reached: try again"
            if error.transient
            else "promote a working version instead (`mlops promote --version N`)"
        )
        raise RollbackRefused(
            f"refusing to roll {name!r} back from v{champion} to v{target}: {error.args[0]}. "
            f"The champion stays v{champion}; {hint}"
        ) from error
    registry.rollback(client, name, champion=champion, target=target)
    return {"champion_before": champion, "champion_after": target}
