"""The ``mlops`` command: every pipeline stage plus operator commands. ``main`` is a plain function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_recipes.errors import ReportedError
from mlops_recipes.io.files import read_json
from mlops_recipes.params import json_schema, load_params
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

STAGES = ("ingest", "validate", "features", "dataset", "train", "evaluate", "register")
_log = logging.getLogger("mlops_recipes")


def _stage(name: str) -> Callable[[Settings, Any], dict[str, Any]]:
    # Imported on demand: `mlops status` must not pay for Feast, `mlops ingest` not for MLflow.
    module = import_module(f"mlops_recipes.stages.{name}")
    runner: Callable[[Settings, Any], dict[str, Any]] = module.run
    return runner


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description="mlops-recipes: fraud-model pipeline and registry.")
    parser.add_argument("--params", type=Path, help="parameters file (default: params.yaml in the project root)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        commands.add_parser(stage, help=f"run the {stage} stage")
    commands.add_parser("run", help="run every stage in order, in this process")
    commands.add_parser("summary", help="the last register stage's outcome, from reports/ (no registry call)")
    status = commands.add_parser("status", help="champion and challenger with their holdout metrics")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--card", action="store_true", help="print the model card (Markdown) instead")
    status.add_argument("--version", help="with --card: this version (default: champion, else challenger)")
    status.add_argument("--html", type=Path, help="with --card: also write the card with its figures to this file")
    promote = commands.add_parser("promote", help="promote a model version to champion (gated)")
    promote.add_argument("--version", required=True, help="registry version number")
    promote.add_argument("--force", action="store_true", help="skip the gate")
    commands.add_parser("rollback", help="move champion back to the previous champion")
    compare = commands.add_parser("compare", help="a candidate beside the champion on the same holdout, with figures")
    compare.add_argument("--candidate", help="registry version (default: the challenger)")
    compare.add_argument("--champion", help="registry version (default: the champion)")
    commands.add_parser("stream", help="score the Redis stream of transactions into decisions (docs/streaming.md)")
    _rollout_parser(commands)
    show = commands.add_parser("params", help="validate and print the parameters")
    show.add_argument("--schema", action="store_true", help="print the JSON Schema of params.yaml instead")
    contract = commands.add_parser("contract", help="the data contract: check it, print its schema, draft one")
    actions = contract.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a contract file (default: the project's contract.yaml)")
    check.add_argument("path", nargs="?", type=Path, help="contract file")
    actions.add_parser("schema", help="print the JSON Schema of contract.yaml")
    infer = actions.add_parser("infer", help="draft a contract from a Parquet/CSV file, for review")
    infer.add_argument("path", type=Path, help="your transactions file")
    infer.add_argument("--output", "-o", type=Path, help="write the draft here instead of stdout")
    return parser


def _rollout_parser(commands: Any) -> None:
    rollout = commands.add_parser("rollout", help="shadow or canary a candidate next to the champion; promote or abort")
    actions = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start rolling a version out (the service follows within its poll)")
    start.add_argument("--version", required=True, help="registry version number of the candidate")
    start.add_argument("--mode", choices=("shadow", "canary"), required=True)
    start.add_argument("--percent", type=float, default=100.0, help="share of requests (shadow) or customers (canary)")
    start.add_argument("--force", action="store_true", help="roll out a version the offline gate rejected (recorded)")
    status = actions.add_parser("status", help="the running (or last) rollout")
    status.add_argument("--json", action="store_true", help="print JSON")
    promote = actions.add_parser("promote", help="make the candidate the champion (the old one stays for rollback)")
    promote.add_argument("--reason", default="promoted by operator")
    abort = actions.add_parser("abort", help="unload the candidate everywhere; the reason is tagged on the version")
    abort.add_argument("--reason", required=True)


def _rollout(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_recipes.core.rollout import RolloutError
    from mlops_recipes.io import rollout, tracking

    client, name = tracking.client(settings), settings.model_name
    if args.action == "start":
        if args.mode == "canary" and not 0 < args.percent < 100:
            raise RolloutError("a canary's --percent must lie strictly between 0 and 100")
        started = rollout.start(
            client, name, version=args.version, mode=args.mode, percent=args.percent, force=args.force
        )
        _print(asdict(started))
        return 0
    if args.action == "promote":
        previous, promoted = rollout.promote(client, name, reason=args.reason)
        _print({"champion_before": previous, "champion_after": promoted.version, "rollout": asdict(promoted)})
        return 0
    if args.action == "abort":
        _print(asdict(rollout.abort(client, name, reason=args.reason)))
        return 0
    state = rollout.read(client, name)
    if args.json:
        _print(None if state is None else asdict(state))
    elif state is None:
        print(f"model {name}: no rollout yet")  # noqa: T201 - the CLI's output
    else:
        step = f", step {state.step}" if state.step else ""
        ended = f" at {state.finished_at}: {state.reason}" if not state.running else ""
        print(  # noqa: T201 - the CLI's output
            f"model {name}: v{state.version} {state.mode} {state.percent:g}%{step} - {state.status}{ended}"
            f" (started {state.started_at}{', forced' if state.forced else ''})"
        )
    return 0


def _print(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))  # noqa: T201 - the CLI's output


def _format_version(alias: str, entry: dict[str, Any] | None) -> list[str]:
    if entry is None:
        return [f"{alias}: none"]
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in entry["metrics"].items() if k != "rows")
    return [
        f"{alias}: v{entry['version']} (run {entry['run_id']}, features {entry['feature_service']})",
        f"  holdout: {metrics or 'no metrics'}",
    ]


def _format_status(status: dict[str, Any]) -> str:
    lines = [f"model: {status['model_name']}"]
    for alias in ("champion", "challenger"):
        lines += _format_version(alias, status[alias])
    return "\n".join(lines)


def _format_summary(report: dict[str, Any]) -> str:
    decision = report["decision"]
    verdict = "promoted" if decision["promote"] else "rejected"
    lines = [
        f"model: {report['model_name']}",
        f"candidate v{report['candidate_version']}: {verdict} ({'; '.join(decision['reasons'])})",
        *_format_version("champion", report.get("champion")),
        "(as of the last register stage; `mlops status` asks the registry)",
    ]
    return "\n".join(lines)


def _format_comparison(result: dict[str, Any]) -> str:
    cand, champ = f"candidate v{result['candidate']}", f"champion v{result['champion']}"
    lines = [f"{'metric':<24}{cand:>16}{champ:>16}{'difference':>12}"]
    for metric, row in result["metrics"].items():
        lines.append(f"{metric:<24}{row[cand]:>16.4f}{row[champ]:>16.4f}{row['difference']:>+12.4f}")
    lines.append(f"figures and per-segment metrics: {result['report']}")
    return "\n".join(lines)


def _card_version(client: MlflowClient, name: str) -> str:
    from mlops_recipes.io import registry

    for alias in (registry.CHAMPION, registry.CHALLENGER):
        found = registry.alias_version(client, name, alias)
        if found is not None:
            return str(found.version)
    raise registry.RegistryError(f"model {name!r} has no champion or challenger; pass --version")


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "stream":
        # The scorer is a shell (serving.stream, like the service): the library starts it as a program, in this
        # process' place (same pid, signals and exit status), and never imports it (tests/unit/test_layering.py).
        # Shells are not installed, they live in the project folder: its root goes first on the scorer's path, so
        # `mlops stream` works from any working directory (MLOPS_PROJECT_ROOT), as `mlops`'s other commands do.
        path = os.pathsep.join(filter(None, [str(settings.project_root), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        os.execve(sys.executable, [sys.executable, "-m", "serving.stream"], env)  # noqa: S606 (our own interpreter)
    if args.command == "summary":
        print(_format_summary(read_json(settings.path(settings.reports_dir) / "promotion.json")))  # noqa: T201
        return 0
    if args.command == "params" and args.schema:
        _print(json_schema())
        return 0
    if args.command == "contract":
        return _contract(args, settings)
    if args.command == "rollout":
        return _rollout(args, settings)
    params = load_params(args.params or settings.path(settings.params_file))
    if args.command == "params":
        _print(params.model_dump(mode="json", by_alias=True))
        return 0
    if args.command in STAGES:
        _print(_stage(args.command)(settings, params))
        return 0
    if args.command == "run":
        for stage in STAGES:
            _log.info("stage %s", stage)
            _print(_stage(stage)(settings, params))
        return 0

    from mlops_recipes.io import registry, tracking

    if args.command == "status" and args.card:
        from mlops_recipes.io import card

        client = tracking.client(settings)
        version = args.version or _card_version(client, settings.model_name)
        if args.html:
            args.html.write_text(card.read(client, settings.model_name, version, kind="html"), encoding="utf-8")
        print(card.read(client, settings.model_name, version))  # noqa: T201 - the CLI's output
        return 0
    if args.command == "status":
        status = registry.status(tracking.client(settings), settings.model_name)
        print(json.dumps(status, indent=2) if args.json else _format_status(status))  # noqa: T201
        return 0
    if args.command == "promote":
        from mlops_recipes.stages.register import promote

        _print(promote(settings, params, version=args.version, force=args.force))
        return 0
    if args.command == "compare":
        from mlops_recipes.stages import compare

        result = compare.run(settings, params, candidate=args.candidate, champion=args.champion)
        print(_format_comparison(result))  # noqa: T201 - the CLI's output
        return 0
    if args.command == "rollback":
        from mlops_recipes.stages.register import rollback

        _print(rollback(settings))
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def _contract(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_recipes import contract

    if args.action == "schema":
        _print(contract.json_schema())
        return 0
    if args.action == "check":
        path = args.path or settings.contract_path
        checked = contract.load_contract(path)
        print(f"{path}: valid contract ({contract.describe(checked)})")  # noqa: T201 - the CLI's output
        return 0
    from mlops_recipes.core.infer import draft_contract
    from mlops_recipes.io.files import read_table

    text = draft_contract(read_table(args.path))
    if args.output is None:
        print(text, end="")  # noqa: T201 - the CLI's output
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"draft contract written to {args.output}: review the roles, then `mlops contract check {args.output}`")  # noqa: T201
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 a reported error, 2 a usage error)."""
    args = _parser().parse_args(argv)
    # Libraries (Feast, MLflow) stay at WARNING; our own progress lines at INFO.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    _log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return _dispatch(args, Settings())
    except ReportedError as error:  # anything else is a bug: it surfaces with its traceback
        # args[0], not str(): a reported KeyError would print its message in quotes.
        message = error.args[0] if error.args else error
        print(f"error: {message}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
