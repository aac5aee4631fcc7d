"""The container and CI files of the repository and the pre-commit hooks that lint them, for their unit tests.

Shared by the unit tests of the Dockerfiles (``tests/unit/test_dockerfiles.py``), of docker-compose.yml and its
secrets (``test_compose_file.py``), of the build context (``test_build_context.py``) and of the GitHub workflows
(``test_workflows.py``): one definition of where those files are, of how a hook is run on a file as pre-commit
runs it, and of how a Dockerfile is read (dockerfile-parse) and an image reference judged pinned, which more than
one of those modules needs.

The linters and schema validators (hadolint, zizmor, check-jsonschema's vendored compose-spec and
github-workflows schemas, offline) run on the real files as pre-commit hooks (``.pre-commit-config.yaml``,
``make lint``); the tests run them here through those hooks' own definitions (``hook_findings``), only on bad
fixtures, which proves each hook can fail.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from support.project import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
HOOKS_FILE = REPO_ROOT / ".pre-commit-config.yaml"


def hooks() -> dict[str, dict[str, Any]]:
    """The pre-commit hooks by id (all ``repo: local``: they call the locked tools)."""
    config = yaml.safe_load(HOOKS_FILE.read_text())
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def hook_findings(hook_id: str, *paths: Path) -> list[str]:
    """What hook ``hook_id`` reports on ``paths``, run as pre-commit runs it (its entry, then the file names)."""
    entry = shlex.split(hooks()[hook_id]["entry"])
    executable = REPO_ROOT / entry[0]
    if not executable.exists():
        pytest.fail(f"{entry[0]} not found: run `make install` (the hooks call the locked tools)", pytrace=False)
    result = run(str(executable), *entry[1:], *map(str, paths))
    if result.returncode == 0:
        return []
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()] or [
        f"{hook_id} exited {result.returncode}"
    ]


def hook_covers(hook_id: str, path: Path) -> bool:
    """Whether pre-commit runs hook ``hook_id`` on ``path`` (its ``files`` and ``exclude`` patterns)."""
    hook = hooks()[hook_id]
    name = path.relative_to(REPO_ROOT).as_posix()
    return bool(re.search(hook.get("files", ""), name)) and not re.search(hook.get("exclude", "^$"), name)


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def report(violations: Iterable[str]) -> str:
    return "\n  " + "\n  ".join(violations)


def dockerfiles() -> list[Path]:
    """Every Dockerfile under docker/: ``Dockerfile``, ``Dockerfile.*``, ``*.Dockerfile``, at any depth."""
    found = {
        path
        for pattern in ("**/Dockerfile", "**/Dockerfile.*", "**/*.Dockerfile", "**/*.dockerfile")
        for path in DOCKER_DIR.glob(pattern)
        if path.is_file() and not path.name.endswith(".dockerignore")
    }
    return sorted(found)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with continuation lines joined; ``line`` is where it starts (1-based)."""

    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions as dockerfile-parse reads them: continuations joined, comments dropped."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    return [
        Instruction(item["startline"] + 1, item["instruction"], item["value"])
        for item in parser.structure
        if item["instruction"] != "COMMENT"
    ]


def image_pin_problem(reference: str) -> str | None:
    """Why an image reference is not pinned (None if it is): it needs a tag other than ``latest``, or a digest."""
    if "$" in reference:
        return f"{reference!r} has a variable without a default: its tag cannot be checked"
    if "@sha256:" in reference:
        return None
    name = reference.rsplit("/", 1)[-1]
    if ":" not in name:
        return f"{reference!r} has no tag (it means :latest)"
    tag = name.split(":", 1)[1]
    if tag in ("", "latest"):
        return f"{reference!r} is tagged latest"
    return None


def is_exec_form(args: str) -> bool:
    """Whether ENTRYPOINT/CMD/COPY arguments are a JSON array of strings (exec form) rather than a shell string."""
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError:
        return False
    return isinstance(parsed, list) and bool(parsed) and all(isinstance(item, str) for item in parsed)


def workflows() -> list[Path]:
    """Every GitHub workflow of the repository (``.github/workflows/*.yml``, ``*.yaml``)."""
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])
