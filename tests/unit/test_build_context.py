"""The project's own invariants of the Docker build context: .dockerignore and what the images copy from it.

.dockerignore keeps secrets (.env), the host's venv, data, local stores and caches away from the daemon and
still sends what the images are built from; and every file a compose-built Dockerfile copies or bind-mounts
exists and is sent (an over-broad .dockerignore, or a renamed file, fails the build only when someone runs it).

Nothing is built: .dockerignore rules are applied with the docker SDK's own implementation, Dockerfiles read with
dockerfile-parse (``support.container_files``). Every invariant is a function that returns the violations it
finds, run on the real files (none allowed) and on a bad fixture (it must be reported), which proves it can fail.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.utils.build import exclude_paths
from support.container_files import COMPOSE_FILE, DOCKERIGNORE, is_exec_form, parse_dockerfile, report
from support.project import REPO_ROOT

pytestmark = pytest.mark.unit


def sent_to_daemon(context: Path, ignore_text: str) -> set[str]:
    """What Docker sends of ``context`` given a .dockerignore text (the docker SDK's own implementation of the
    rules: the last matching pattern wins, ``!`` re-includes, a matching directory excludes what is below it)."""
    patterns = [line.strip() for line in ignore_text.splitlines() if line.strip() and not line.startswith("#")]
    sent: set[str] = exclude_paths(str(context), patterns)
    return sent


def dockerignore_excludes(patterns_text: str, path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the build context; need not exist) out of the context."""
    with tempfile.TemporaryDirectory() as directory:
        context = Path(directory)
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).touch()
        return path not in sent_to_daemon(context, patterns_text)


# What must never be sent to the daemon: secrets, the host's venv, data and local stores, caches.
MUST_EXCLUDE = (
    ".env",
    ".venv/bin/python",
    ".tools/bin/uv",
    "data/raw/transactions.parquet",
    "mlflow.db",
    "mlruns/0/meta.yaml",
    "mlartifacts/1/model.pkl",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/content",
    "__pycache__/x.cpython-311.pyc",
    "src/mlops_recipes/__pycache__/cli.cpython-311.pyc",
    ".git/HEAD",
)
# What the images are built from.
MUST_INCLUDE = ("pyproject.toml", "uv.lock", "src/mlops_recipes/cli.py", "serving/__init__.py")


def dockerignore_violations(text: str) -> list[str]:
    return [
        f"{p} is sent to the build context (not excluded)" for p in MUST_EXCLUDE if not dockerignore_excludes(text, p)
    ] + [f"{p} is excluded but the images are built from it" for p in MUST_INCLUDE if dockerignore_excludes(text, p)]


def test_dockerignore_keeps_secrets_data_and_caches_out_of_the_build_context() -> None:
    assert DOCKERIGNORE.exists(), ".dockerignore is missing: the whole directory (.env, .venv, data) goes to the daemon"

    violations = dockerignore_violations(DOCKERIGNORE.read_text())

    assert not violations, f".dockerignore:{report(violations)}"


def build_sources(dockerfile_text: str) -> list[tuple[int, str]]:
    """What a Dockerfile reads from its build context: COPY/ADD sources (not ``--from`` a stage or image) and
    ``RUN --mount=type=bind`` sources, with their line numbers."""
    sources: list[tuple[int, str]] = []
    for instruction in parse_dockerfile(dockerfile_text):
        if instruction.keyword in ("COPY", "ADD"):
            args = instruction.args
            tokens = json.loads(args) if is_exec_form(args) else args.split()
            if any(token.startswith("--from") for token in tokens):
                continue
            paths = [token for token in tokens if not token.startswith(("--", "<<"))]
            sources += [(instruction.line, source) for source in paths[:-1]]
        elif instruction.keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", instruction.args):
                options = {key: value for key, _, value in (option.partition("=") for option in mount.split(","))}
                if options.get("type") == "bind" and "from" not in options:
                    sources.append((instruction.line, options.get("source", options.get("src", "."))))
    return sources


def build_context_violations(compose: dict[str, Any], root: Path) -> list[str]:
    """Every file a compose-built Dockerfile copies exists and is sent to the daemon: an over-broad
    .dockerignore (or a renamed file) fails the build only when someone runs it. BuildKit reads
    ``<Dockerfile>.dockerignore`` when there is one, else ``<context>/.dockerignore``."""
    violations: list[str] = []
    builds = set()
    for service in (compose.get("services") or {}).values():
        build = service.get("build")
        if isinstance(build, str):
            builds.add((build, "Dockerfile"))
        elif isinstance(build, dict):
            builds.add((str(build.get("context", ".")), str(build.get("dockerfile", "Dockerfile"))))
    for context_name, dockerfile_name in sorted(builds):
        context = (root / context_name).resolve()
        dockerfile = context / dockerfile_name
        if not dockerfile.is_file():
            violations.append(f"build {dockerfile_name} (context {context_name}): the Dockerfile does not exist")
            continue
        own_ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        ignore_file = own_ignore if own_ignore.exists() else context / ".dockerignore"
        ignore_text = ignore_file.read_text() if ignore_file.exists() else ""
        sent = sent_to_daemon(context, ignore_text)
        for line, source in build_sources(dockerfile.read_text()):
            relative = source.lstrip("/").removeprefix("./") or "."
            matches = sorted(context.glob(relative)) if any(c in relative for c in "*?[") else [context / relative]
            if not matches or not all(match.exists() for match in matches):
                violations.append(f"{dockerfile_name}:{line}: {source} does not exist in the build context")
            for match in matches:
                name = match.relative_to(context).as_posix()
                if name != "." and match.exists() and name not in sent:
                    violations.append(f"{dockerfile_name}:{line}: {name} is excluded by {ignore_file.name}")
    return violations


def test_every_file_the_images_copy_is_in_the_build_context() -> None:
    assert COMPOSE_FILE.exists(), "docker-compose.yml is missing"
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    assert any("build" in service for service in compose["services"].values()), "compose builds no image"

    violations = build_context_violations(compose, REPO_ROOT)

    assert not violations, f"build contexts of docker-compose.yml:{report(violations)}"


def test_build_context_check_rejects_missing_and_ignored_sources(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("")
    (tmp_path / "uv.lock").write_text("")
    (tmp_path / "docker" / "app.Dockerfile").write_text(
        "FROM python:3.11-slim AS build\n"
        "RUN --mount=type=bind,source=uv.lock,target=uv.lock --mount=type=cache,target=/root/.cache true\n"
        "FROM python:3.11-slim\n"
        "COPY --from=build /opt/venv /opt/venv\n"
        'COPY ["src", "/app/src"]\n'
        "COPY --chown=1:1 README.md docker/*.sh /app/\n"
    )
    compose = {"services": {"app": {"build": {"context": ".", "dockerfile": "docker/app.Dockerfile"}}}}
    (tmp_path / ".dockerignore").write_text("*.lock\n")

    violations = build_context_violations(compose, tmp_path)

    assert violations == [
        "docker/app.Dockerfile:2: uv.lock is excluded by .dockerignore",
        "docker/app.Dockerfile:6: README.md does not exist in the build context",
        "docker/app.Dockerfile:6: docker/*.sh does not exist in the build context",
    ]
    # A Dockerfile's own ignore file takes precedence over the context's.
    (tmp_path / "README.md").write_text("")
    (tmp_path / "docker" / "entrypoint.sh").write_text("")
    (tmp_path / "docker" / "app.Dockerfile.dockerignore").write_text("src\n")
    assert build_context_violations(compose, tmp_path) == [
        "docker/app.Dockerfile:5: src is excluded by app.Dockerfile.dockerignore"
    ]


GOOD_DOCKERIGNORE = """\
# secrets and local state
.env
.venv/
.tools
/data
mlflow.db
mlruns
mlartifacts
.git
**/__pycache__
.*_cache
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD_DOCKERIGNORE, []),
        (GOOD_DOCKERIGNORE.replace(".env\n", ""), [".env is sent"]),
        (GOOD_DOCKERIGNORE.replace("**/__pycache__", "__pycache__"), ["src/mlops_recipes/__pycache__"]),
        (GOOD_DOCKERIGNORE + "!data/raw\n", ["data/raw/transactions.parquet is sent"]),
        (GOOD_DOCKERIGNORE + "*.toml\n", ["pyproject.toml is excluded"]),
        (GOOD_DOCKERIGNORE.replace("/data", "data/*.csv"), ["data/raw/transactions.parquet is sent"]),
    ],
    ids=["good", "env-missing", "nested-pycache", "negation", "over-broad", "too-narrow"],
)
def test_dockerignore_check(text: str, expected: list[str]) -> None:
    violations = dockerignore_violations(text)

    assert [e for e in expected if not any(v.startswith(e) for v in violations)] == [], violations
    if not expected:
        assert violations == []
