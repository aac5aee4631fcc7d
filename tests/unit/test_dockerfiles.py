"""The project's own invariants of its Dockerfiles (docker/), and that the lint hooks cover every container and CI file.

Every Dockerfile: no ``# syntax=`` line (BuildKit would pull a frontend image, which fails offline), no heredoc
(the checks could not read it), every ``FROM`` pinned to a tag or digest. The images that run a service (app,
MLflow server) also need, in their final stage, a non-root ``USER``, a ``HEALTHCHECK`` and exec-form
``ENTRYPOINT``/``CMD`` (shell form makes /bin/sh PID 1, which does not forward SIGTERM). hadolint runs on the real
files as a pre-commit hook (``make lint``); here it runs, through that hook's own definition, on a bad fixture.

Nothing is built. Dockerfiles are read with dockerfile-parse (``support.container_files``). Every invariant is a
function that returns the violations it finds, run twice: on the real files (no violation allowed) and on a bad
fixture in ``tmp_path`` (the violation must be reported), which proves the check can fail.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from support.container_files import (
    COMPOSE_FILE,
    DOCKER_DIR,
    DOCKERIGNORE,
    Instruction,
    dockerfiles,
    hook_covers,
    hook_findings,
    image_pin_problem,
    is_exec_form,
    parse_dockerfile,
    report,
    workflows,
)
from support.project import REPO_ROOT

pytestmark = pytest.mark.unit


STANDINS_DIR = DOCKER_DIR / "base-images"
BARE_MACHINE_DIR = DOCKER_DIR / "bare-machine"  # the README's bare Debian, for CI (not a service)


def service_dockerfiles() -> list[Path]:
    """The images the project ships and runs (app, MLflow server): every Dockerfile under docker/ except the
    base-image stand-ins in docker/base-images/. Those replace official base images (``python:3.11-slim``,
    ``postgres``…) on machines that cannot pull them, so they mimic those images (root user, no healthcheck)
    and only get the generic checks; so does the bare Debian of docker/bare-machine/, a test machine."""
    return [path for path in dockerfiles() if not {STANDINS_DIR, BARE_MACHINE_DIR} & set(path.parents)]


def stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[list[Instruction]]]:
    """The instructions before the first FROM (global ARGs) and the build stages, each starting with its FROM."""
    preamble: list[Instruction] = []
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([instruction])
        elif result:
            result[-1].append(instruction)
        else:
            preamble.append(instruction)
    return preamble, result


# dockerfile-parse reads a heredoc's body as instructions; hadolint parses heredocs, the checks here cannot.
_HEREDOC = re.compile(r"<<-?\s*[\"']?[A-Za-z_][A-Za-z0-9_]*")


def dockerfile_generic_violations(path: Path) -> list[str]:
    """Checks for every Dockerfile: no ``# syntax=`` directive, every FROM pinned to a tag."""
    text = path.read_text()
    violations = [
        f"{path.name}:{number}: `{line.strip()}`: a syntax directive makes BuildKit pull a frontend image "
        "(fails offline); leave it out"
        for number, line in enumerate(text.splitlines(), 1)
        if re.match(r"\s*#\s*syntax\s*=", line, re.IGNORECASE)
    ]
    instructions = parse_dockerfile(text)
    violations += [
        f"{path.name}:{i.line}: {i.keyword} with a heredoc: the checks read Dockerfiles with dockerfile-parse, which "
        "takes a heredoc's body for instructions; put the script in a file and COPY it"
        for i in instructions
        if i.keyword in ("RUN", "COPY", "ADD") and _HEREDOC.search(i.args)
    ]
    froms = [i for i in instructions if i.keyword == "FROM"]
    if not froms:
        return [*violations, f"{path.name}: no FROM instruction"]
    # The images with the ARG defaults substituted ('' where a variable has none), one per FROM.
    images = DockerfileParser(fileobj=io.BytesIO(text.encode())).parent_images
    aliases: set[str] = set()
    for instruction, image in zip(froms, images, strict=False):
        tokens = [token for token in instruction.args.split() if not token.startswith("--")]
        if not tokens:
            violations.append(f"{path.name}:{instruction.line}: FROM without an image")
            continue
        reference = image or tokens[0]
        if len(tokens) >= 3 and tokens[1].upper() == "AS":
            aliases.add(tokens[2].lower())
        if reference.lower() in aliases or reference == "scratch":
            continue
        problem = image_pin_problem(reference)
        if problem:
            violations.append(f"{path.name}:{instruction.line}: FROM {problem}; pin a version tag")
    return violations


def dockerfile_runtime_violations(path: Path) -> list[str]:
    """Checks for an image that runs a service: in the final stage a non-root USER and a HEALTHCHECK, and every
    ENTRYPOINT/CMD in exec form (shell form makes /bin/sh PID 1, which does not forward SIGTERM)."""
    instructions = parse_dockerfile(path.read_text())
    _, build_stages = stages(instructions)
    if not build_stages:
        return [f"{path.name}: no FROM instruction"]
    final = build_stages[-1]
    violations = [
        f"{path.name}:{i.line}: {i.keyword} {i.args} is in shell form; use the exec form "
        f'{i.keyword} ["executable", "arg", …] so the process is PID 1 and receives SIGTERM'
        for i in instructions
        if i.keyword in ("ENTRYPOINT", "CMD") and not is_exec_form(i.args)
    ]
    if not any(i.keyword in ("ENTRYPOINT", "CMD") for i in final):
        violations.append(f"{path.name}: the final stage sets neither ENTRYPOINT nor CMD")
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        violations.append(f"{path.name}: the final stage has no USER instruction: the container runs as root")
    else:
        user = users[-1].args.split(":", 1)[0].strip()
        if user in ("root", "0", ""):
            violations.append(f"{path.name}:{users[-1].line}: the final stage runs as USER {users[-1].args} (root)")
    healthchecks = [i for i in final if i.keyword == "HEALTHCHECK"]
    if not healthchecks:
        violations.append(f"{path.name}: the final stage has no HEALTHCHECK")
    elif healthchecks[-1].args.strip().upper() == "NONE":
        violations.append(f"{path.name}:{healthchecks[-1].line}: HEALTHCHECK NONE disables the health check")
    return violations


def hadolint_violations(path: Path) -> list[str]:
    """hadolint's findings at every level, as the ``hadolint`` hook runs it."""
    return hook_findings("hadolint", path)


def test_docker_dir_has_the_app_and_mlflow_images() -> None:
    names = [str(path.relative_to(REPO_ROOT)) for path in service_dockerfiles()]
    assert len(names) >= 2, f"expected the app and MLflow server Dockerfiles under docker/, found {names}"


def test_the_hooks_lint_every_container_and_ci_file() -> None:
    # hadolint, check-jsonschema and zizmor run on the real files as hooks (make lint): each must cover them all.
    uncovered = [
        f"{hook_id}: {path.relative_to(REPO_ROOT)}"
        for hook_id, paths in {
            "hadolint": dockerfiles(),
            "compose-spec": [COMPOSE_FILE],
            "github-workflows": workflows(),
            "zizmor": workflows(),
        }.items()
        for path in paths
        if not hook_covers(hook_id, path)
    ]
    assert dockerfiles(), "no Dockerfile found"
    assert workflows(), "no workflow found"
    assert not uncovered, f"files a hook's `files` pattern misses:{report(uncovered)}"
    assert not hook_covers("hadolint", DOCKERIGNORE)


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(DOCKER_DIR)))
def test_dockerfile_has_no_syntax_line_and_pinned_bases(path: Path) -> None:
    violations = dockerfile_generic_violations(path)
    assert not violations, f"{path.relative_to(REPO_ROOT)}:{report(violations)}"


@pytest.mark.parametrize("path", service_dockerfiles(), ids=lambda p: str(p.relative_to(DOCKER_DIR)))
def test_service_dockerfile_runs_unprivileged_with_healthcheck_and_exec_form(path: Path) -> None:
    violations = dockerfile_runtime_violations(path)
    assert not violations, f"{path.relative_to(REPO_ROOT)}:{report(violations)}"


GOOD_DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
RUN python -m venv /opt/venv
# A comment between instructions, and a continuation:
FROM python:3.11-slim@sha256:0000000000000000000000000000000000000000000000000000000000000000
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 app \\
    # a comment inside a continuation
    && mkdir /data
USER 10001:10001
HEALTHCHECK --interval=10s CMD ["python", "-c", "print(1)"]
ENTRYPOINT ["python", "-m", "serving"]
CMD ["--port", "8000"]
"""


def test_a_good_dockerfile_passes_every_check(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(GOOD_DOCKERFILE)

    assert dockerfile_generic_violations(path) == []
    assert dockerfile_runtime_violations(path) == []
    assert hadolint_violations(path) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# syntax=docker/dockerfile:1\n" + GOOD_DOCKERFILE, "syntax directive"),
        (GOOD_DOCKERFILE.replace("FROM python:3.11-slim@sha256:" + "0" * 64, "FROM python"), "has no tag"),
        (GOOD_DOCKERFILE.replace("@sha256:" + "0" * 64, "").replace(":3.11-slim\nCOPY", ":latest\nCOPY"), "latest"),
        (GOOD_DOCKERFILE.replace("ARG PYTHON_IMAGE=python:3.11-slim", "ARG PYTHON_IMAGE=python"), "has no tag"),
        (GOOD_DOCKERFILE.replace("ARG PYTHON_IMAGE=python:3.11-slim", "ARG PYTHON_IMAGE"), "variable"),
    ],
    ids=["syntax-line", "untagged", "latest", "untagged-via-arg", "unresolvable-arg"],
)
def test_generic_check_rejects(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "app.Dockerfile"
    path.write_text(text)

    violations = dockerfile_generic_violations(path)

    assert any(expected in v for v in violations), violations


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER 10001:10001\n", "", "no USER"),
        ("USER 10001:10001\n", "USER root\n", "(root)"),
        ("USER 10001:10001\n", "USER 0:0\n", "(root)"),
        ('HEALTHCHECK --interval=10s CMD ["python", "-c", "print(1)"]\n', "", "no HEALTHCHECK"),
        ('HEALTHCHECK --interval=10s CMD ["python", "-c", "print(1)"]\n', "HEALTHCHECK NONE\n", "disables"),
        ('ENTRYPOINT ["python", "-m", "serving"]', "ENTRYPOINT python -m serving", "shell form"),
        ('CMD ["--port", "8000"]', "CMD exec python -m serving", "shell form"),
        ('ENTRYPOINT ["python", "-m", "serving"]\nCMD ["--port", "8000"]\n', "", "neither ENTRYPOINT nor CMD"),
    ],
    ids=["no-user", "root", "uid-0", "no-healthcheck", "healthcheck-none", "shell-entrypoint", "shell-cmd", "no-cmd"],
)
def test_runtime_check_rejects(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD_DOCKERFILE
    path = tmp_path / "Dockerfile"
    path.write_text(GOOD_DOCKERFILE.replace(old, new))

    violations = dockerfile_runtime_violations(path)

    assert any(expected in v for v in violations), violations


def test_runtime_checks_look_at_the_final_stage_only(tmp_path: Path) -> None:
    # USER and HEALTHCHECK in a build stage do not carry over to the image that runs.
    path = tmp_path / "Dockerfile"
    path.write_text(
        'FROM python:3.11-slim AS build\nUSER app\nHEALTHCHECK CMD ["true"]\nFROM python:3.11-slim\nCMD ["python"]\n'
    )

    violations = dockerfile_runtime_violations(path)

    assert any("no USER" in v for v in violations), violations
    assert any("no HEALTHCHECK" in v for v in violations), violations


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\nCMD python -m x\n")

    violations = hadolint_violations(path)

    assert any("DL3025" in v for v in violations), violations  # CMD not in JSON notation
    assert any("DL3015" in v for v in violations), violations  # no --no-install-recommends


def test_a_heredoc_is_reported_not_misread(tmp_path: Path) -> None:
    # Its body would be read as instructions (a USER root in a script would pass for the image's user).
    path = tmp_path / "Dockerfile"
    path.write_text('FROM python:3.11-slim\nRUN <<EOF\nUSER root\nCMD bad\nEOF\nCMD ["x"]\n')

    violations = dockerfile_generic_violations(path)

    assert any(":2: RUN with a heredoc" in v for v in violations), violations
