"""The project's own invariants of the GitHub workflows (.github/workflows/).

The policy: a read-only token by default, write permissions only on a job that runs on a tag, every action
pinned to a full commit SHA, every job with a timeout. The GitHub-workflows schema and zizmor (offline audits)
run on the real files as pre-commit hooks (``make lint``); here they run, through those hooks' own definitions
(``support.container_files``), on bad fixtures, which proves each can fail. The policy itself is a function that
returns the violations it finds, run on the real workflows (none allowed) and on bad ones (they must be reported).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.container_files import hook_findings, report, workflows
from support.project import REPO_ROOT

pytestmark = pytest.mark.unit


def workflow_schema_violations(path: Path) -> list[str]:
    """check-jsonschema against the GitHub-workflows schema, as the ``github-workflows`` hook runs it."""
    return hook_findings("github-workflows", path)


def zizmor_findings(*paths: Path) -> list[str]:
    """zizmor's findings (offline audits), as the ``zizmor`` hook runs it."""
    return hook_findings("zizmor", *paths)


_SHA_PIN = re.compile(r"[^@\s]+@[0-9a-f]{40}")


def workflow_policy_violations(workflow: dict[str, Any]) -> list[str]:
    """Least privilege and bounded runs: read-only token by default, actions pinned to a commit SHA, every job
    with a timeout, write permissions only on a job that runs on a tag."""
    violations = []
    if workflow.get("permissions") != {"contents": "read"}:
        violations.append(f"permissions: {workflow.get('permissions')!r}; the workflow default must be contents: read")
    for name, job in (workflow.get("jobs") or {}).items():
        if "timeout-minutes" not in job:
            violations.append(f"jobs.{name}: no timeout-minutes")
        writes = [scope for scope, level in (job.get("permissions") or {}).items() if level == "write"]
        if writes and "refs/tags/" not in str(job.get("if", "")):
            violations.append(f"jobs.{name}: {writes} write permission on a job that does not run only on tags")
        for index, step in enumerate(job.get("steps") or []):
            uses = step.get("uses")
            if uses and not uses.startswith(("./", "docker://")) and not _SHA_PIN.fullmatch(uses):
                violations.append(f"jobs.{name}.steps[{index}]: uses {uses}; pin the action to a full commit SHA")
    return violations


@pytest.mark.parametrize("path", workflows(), ids=lambda p: p.name)
def test_workflow_policy(path: Path) -> None:
    violations = workflow_policy_violations(yaml.safe_load(path.read_text()))
    assert not violations, f"{path.relative_to(REPO_ROOT)}:{report(violations)}"


BAD_WORKFLOW = """\
name: bad
on:
  pull_request_target:
permissions: write-all
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def test_workflow_checks_reject_a_bad_workflow(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(BAD_WORKFLOW)

    findings = "\n".join(zizmor_findings(path))
    policy = workflow_policy_violations(yaml.safe_load(BAD_WORKFLOW))

    assert "template-injection" in findings, findings
    assert "dangerous-triggers" in findings, findings
    assert any("contents: read" in v for v in policy), policy
    assert any("timeout-minutes" in v for v in policy), policy
    assert any("full commit SHA" in v for v in policy), policy


def test_workflow_schema_check_rejects_an_invalid_workflow(tmp_path: Path) -> None:
    path = tmp_path / "invalid.yml"
    path.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    timeout-minutes: 5\n    stepz: []\n")

    violations = workflow_schema_violations(path)

    assert violations, "check-jsonschema accepted a job with no steps"


def test_write_permission_must_be_limited_to_tag_jobs() -> None:
    workflow = {
        "permissions": {"contents": "read"},
        "jobs": {
            "release": {"timeout-minutes": 5, "permissions": {"packages": "write"}, "steps": []},
            "tagged": {
                "timeout-minutes": 5,
                "if": "startsWith(github.ref, 'refs/tags/v')",
                "permissions": {"packages": "write"},
                "steps": [],
            },
        },
    }

    assert workflow_policy_violations(workflow) == [
        "jobs.release: ['packages'] write permission on a job that does not run only on tags"
    ]
