"""The project's own invariants of the container and CI files: Dockerfiles, docker-compose.yml, .dockerignore,
.env.example and the GitHub workflows.

Nothing is built or started here. The linters and schema validators (hadolint, zizmor, check-jsonschema's vendored
compose-spec and github-workflows schemas, offline) run on the real files as pre-commit hooks
(``.pre-commit-config.yaml``, ``make lint``); here they only run, through those hooks' own definitions, on bad
fixtures, which proves each hook can fail. Dockerfiles are read with dockerfile-parse and .dockerignore rules
applied with the docker SDK's implementation. Every invariant is a function that returns the violations it
finds, so each one is run twice: on the real files (no violation allowed) and on a bad fixture in ``tmp_path``
(the violation must be reported), which proves the check can fail.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
HOOKS_FILE = REPO_ROOT / ".pre-commit-config.yaml"
STANDINS_DIR = DOCKER_DIR / "base-images"
BARE_MACHINE_DIR = DOCKER_DIR / "bare-machine"  # the README's bare Debian, for CI (not a service)


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


# --------------------------------------------------------------------------------------------------------------
# Dockerfiles
# --------------------------------------------------------------------------------------------------------------


def dockerfiles() -> list[Path]:
    """Every Dockerfile under docker/: ``Dockerfile``, ``Dockerfile.*``, ``*.Dockerfile``, at any depth."""
    found = {
        path
        for pattern in ("**/Dockerfile", "**/Dockerfile.*", "**/*.Dockerfile", "**/*.dockerfile")
        for path in DOCKER_DIR.glob(pattern)
        if path.is_file() and not path.name.endswith(".dockerignore")
    }
    return sorted(found)


def service_dockerfiles() -> list[Path]:
    """The images the project ships and runs (app, MLflow server): every Dockerfile under docker/ except the
    base-image stand-ins in docker/base-images/. Those replace official base images (``python:3.11-slim``,
    ``postgres``…) on machines that cannot pull them, so they mimic those images (root user, no healthcheck)
    and only get the generic checks; so does the bare Debian of docker/bare-machine/, a test machine."""
    return [path for path in dockerfiles() if not {STANDINS_DIR, BARE_MACHINE_DIR} & set(path.parents)]


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


def _is_exec_form(args: str) -> bool:
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError:
        return False
    return isinstance(parsed, list) and bool(parsed) and all(isinstance(item, str) for item in parsed)


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
        if i.keyword in ("ENTRYPOINT", "CMD") and not _is_exec_form(i.args)
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


# --------------------------------------------------------------------------------------------------------------
# docker-compose.yml and .env.example
# --------------------------------------------------------------------------------------------------------------

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+x}; $$ escapes a $.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_REQUIRED_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")
# An optional secret (an API key that turns authentication on) may default to empty, never to a value.
_OPTIONAL_EMPTY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-\}")
# Environment variables that hold a secret, by name (REDISCLI_AUTH, PREFECT_API_AUTH_STRING too).
_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|AUTH_STRING|_AUTH$", re.IGNORECASE
)
# A secret's value in compose: required from .env, optionally after a literal user name (``prefect:${P:?…}``).
_REQUIRED_SECRET = re.compile(r"(?:[A-Za-z0-9_.-]+:)?\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")
# ``password=…`` in a connection string that is not a URL (Feast's Redis ``host:port,password=…``).
_KEY_VALUE_PASSWORD = re.compile(r"\bpassword=((?:\$\{[^}]*\}|[^,;\s])+)", re.IGNORECASE)
# A shell reference in a command (``$NAME``, ``${NAME}``; ``$$`` in compose is a literal ``$``).
_SHELL_REFERENCE = re.compile(r"\$\$?\{?([A-Za-z_][A-Za-z0-9_]*)")
# user:password@ of a PostgreSQL URL, interpolations kept as written.
_POSTGRES_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[a-z0-9]+)?$")
# The user information of a URL (scheme://user:password@host), once interpolations are masked.
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/\s@]+)@")


def url_passwords(value: str) -> list[str]:
    """The password part of every URL in ``value``, interpolations kept as written: in
    ``postgresql://${USER:-mlops}:${PASSWORD:?set it in .env}@postgres/db`` it is ``${PASSWORD:?set it in .env}``
    (the ``:`` inside references and the spaces inside their messages do not split anything)."""
    references: list[str] = []

    def mask(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"\x00{len(references) - 1}\x00"

    def unmask(text: str) -> str:
        return re.sub("\x00(\\d+)\x00", lambda match: references[int(match.group(1))], text)

    masked = _INTERPOLATION.sub(mask, value)
    return [unmask(userinfo.split(":", 1)[1]) for userinfo in _URL_USERINFO.findall(masked) if ":" in userinfo]


def resolve_defaults(value: str) -> str:
    """Interpolate as Compose would with no variable set: ``${X:-d}`` → d; other references are kept."""

    def replace(match: re.Match[str]) -> str:
        operator, word = match.group(2), match.group(3)
        return word if operator in (":-", "-") else match.group(0)

    return _INTERPOLATION.sub(replace, value)


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a YAML document (keys too), with a dotted location."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(str(key), f"{path}.{key}(key)")
            yield from strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path.lstrip("."), node


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {key: value for key, _, value in (str(item).partition("=") for item in env)}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def is_one_shot(service: dict[str, Any]) -> bool:
    """The rule for services that need no healthcheck: a one-shot job (init, migration, seeding) is declared
    with ``restart: "no"`` or ``restart: on-failure[:N]`` — it runs to completion and is waited for with
    ``condition: service_completed_successfully``. Everything else (``unless-stopped``, ``always`` or no
    restart policy at all) is a long-running service and must have a healthcheck, whatever its profile."""
    restart = str(service.get("restart", "")).strip()
    return restart == "no" or restart.startswith("on-failure")


def has_healthcheck(service: dict[str, Any]) -> bool:
    healthcheck = service.get("healthcheck")
    return isinstance(healthcheck, dict) and not healthcheck.get("disable") and bool(healthcheck.get("test"))


def _port_violations(name: str, ports: list[Any]) -> list[str]:
    violations = []
    for port in ports:
        if isinstance(port, dict):
            host_ip = resolve_defaults(str(port.get("host_ip", "")))
            if "published" in port and host_ip != "127.0.0.1":
                violations.append(f"services.{name}.ports: {port} publishes on {host_ip or 'every interface'}")
            continue
        spec = resolve_defaults(str(port))
        if not spec.startswith("127.0.0.1:"):
            violations.append(
                f"services.{name}.ports: {str(port)!r} is not bound to 127.0.0.1 "
                "(write '127.0.0.1:HOST:CONTAINER' or '${BIND_ADDRESS:-127.0.0.1}:HOST:CONTAINER')"
            )
    return violations


def compose_violations(compose: dict[str, Any], env_example: set[str]) -> list[str]:
    """The invariants of docker-compose.yml (schema validity is checked separately)."""
    violations: list[str] = []
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    for name, service in services.items():
        where = f"services.{name}"
        if service.get("privileged"):
            violations.append(f"{where}: privileged: true")
        for key in ("network_mode", "pid", "ipc"):
            if str(service.get(key, "")) == "host":
                violations.append(f"{where}: {key}: host shares the host's namespace")
        if "image" in service:
            problem = image_pin_problem(resolve_defaults(str(service["image"])))
            if problem:
                violations.append(f"{where}.image: {problem}")
        if not is_one_shot(service) and not has_healthcheck(service):
            violations.append(
                f'{where}: a long-running service without a healthcheck (one-shot jobs declare restart: "no")'
            )
        violations += _port_violations(name, service.get("ports") or [])
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            violations.append(
                f"{where}.depends_on: {depends_on} is the short form; give each dependency a condition "
                "(service_healthy, service_completed_successfully)"
            )
            depends_on = {}
        for dependency, spec in depends_on.items():
            condition = (spec or {}).get("condition")
            target = services.get(dependency, {})
            if condition not in ("service_healthy", "service_completed_successfully"):
                violations.append(
                    f"{where}.depends_on.{dependency}: condition is {condition!r}; "
                    "use service_healthy or service_completed_successfully"
                )
            elif condition == "service_healthy" and not has_healthcheck(target):
                violations.append(f"{where}.depends_on.{dependency}: service_healthy on a service with no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(target):
                violations.append(
                    f"{where}.depends_on.{dependency}: service_completed_successfully on a long-running service"
                )
        for key, value in environment(service).items():
            if (
                _SECRET_NAME.search(key)
                and not key.endswith("_FILE")
                and not _REQUIRED_SECRET.fullmatch(value)
                and not _OPTIONAL_EMPTY.fullmatch(value)
            ):
                violations.append(
                    f"{where}.environment.{key}: a secret must come from .env as ${{VAR:?message}} "
                    f"(or ${{VAR:-}} if optional), not {value!r}"
                )
    for location, value in strings(compose):
        for password in url_passwords(value):
            if not _REQUIRED_ONLY.fullmatch(password):
                violations.append(f"{location}: a password written in a URL ({password!r}); use ${{VAR:?message}}")
        for match in _KEY_VALUE_PASSWORD.finditer(value):
            if not _REQUIRED_ONLY.fullmatch(match.group(1)):
                violations.append(f"{location}: a password written in a connection string ({match.group(1)!r})")
        for match in _INTERPOLATION.finditer(value):
            if match.group(2) in (":?", "?") and match.group(1) not in env_example:
                violations.append(f"{location}: ${{{match.group(1)}:?…}} is required but missing from .env.example")
    return violations + command_line_secret_violations(compose) + postgres_role_violations(compose)


def secret_variables(service: dict[str, Any]) -> set[str]:
    """The names a secret is reachable by in a service: its secret-named environment variables, every other
    variable whose value interpolates a secret (a connection URL), and the .env variables behind them."""
    names: set[str] = set()
    for key, value in environment(service).items():
        referenced = {match.group(1) for match in _INTERPOLATION.finditer(value)}
        secret_refs = {name for name in referenced if _SECRET_NAME.search(name)}
        if _SECRET_NAME.search(key) or secret_refs or url_passwords(value):
            names.add(key)
        names |= secret_refs
    return names


def command_line_strings(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every string that becomes a process's arguments: ``command``, ``entrypoint``, ``healthcheck.test``."""
    healthcheck = service.get("healthcheck") if isinstance(service.get("healthcheck"), dict) else {}
    for key, node in (("command", service.get("command")), ("entrypoint", service.get("entrypoint")),
                      ("healthcheck.test", (healthcheck or {}).get("test"))):  # fmt: skip
        for location, value in strings(node):
            yield f"{key}{location and '.' + location}", value


def command_line_secret_violations(compose: dict[str, Any]) -> list[str]:
    """No secret on a command line (``ps``, ``/proc/*/cmdline`` and ``docker inspect`` show it to everyone):
    a command, entrypoint or healthcheck neither interpolates a secret (``${DB_PASSWORD}``) nor expands one in
    a shell (``$$DB_PASSWORD``, ``$$DATABASE_URL``), nor writes one in a URL or ``password=``. Processes read
    their secrets from the environment or from a file."""
    violations = []
    for name, service in (compose.get("services") or {}).items():
        secret_names = secret_variables(service)
        for location, value in command_line_strings(service):
            where = f"services.{name}.{location}"
            referenced = {m.group(1) for m in _INTERPOLATION.finditer(value)} | {
                m.group(1) for m in _SHELL_REFERENCE.finditer(value)
            }
            leaked = sorted(n for n in referenced if n in secret_names or _SECRET_NAME.search(n))
            if leaked:
                violations.append(f"{where}: {', '.join(leaked)} on a command line; read it from the environment")
            if url_passwords(value) or _KEY_VALUE_PASSWORD.search(value):
                violations.append(f"{where}: a password on a command line; read it from the environment")
    return violations


def postgres_urls(value: str) -> list[tuple[str, str]]:
    """(user, password) of every PostgreSQL URL in ``value``, interpolations kept as written."""
    references: list[str] = []

    def mask(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"\x00{len(references) - 1}\x00"

    def unmask(text: str) -> str:
        return re.sub("\x00(\\d+)\x00", lambda match: references[int(match.group(1))], text)

    found = []
    for scheme, userinfo in re.findall(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/\s@]+)@", _INTERPOLATION.sub(mask, value)):
        if _POSTGRES_SCHEME.match(scheme.lower()):
            user, _, password = userinfo.partition(":")
            found.append((unmask(user), unmask(password)))
    return found


def postgres_role_violations(compose: dict[str, Any]) -> list[str]:
    """Least privilege on the database: the superuser (``POSTGRES_USER``/``POSTGRES_PASSWORD`` of the postgres
    service) is used by no other service; every URL names a role of its own (a literal name), each role has one
    password variable, and no two roles share one."""
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    superuser_refs: set[str] = set()
    for service in services.values():
        if str(service.get("image", "")).split("/")[-1].startswith("postgres"):
            env = environment(service)
            for key in ("POSTGRES_USER", "POSTGRES_PASSWORD"):
                superuser_refs |= {m.group(1) for m in _INTERPOLATION.finditer(env.get(key, ""))}
            superuser_refs |= {key for key in ("POSTGRES_USER", "POSTGRES_PASSWORD") if key in env}
    violations = []
    role_passwords: dict[str, set[str]] = {}
    password_roles: dict[str, set[str]] = {}
    for name, service in services.items():
        if str(service.get("image", "")).split("/")[-1].startswith("postgres"):
            continue
        for location, value in strings(service):
            for user, password in postgres_urls(value):
                where = f"services.{name}.{location}"
                used = {m.group(1) for m in _INTERPOLATION.finditer(user + password)}
                if used & superuser_refs or user in ("postgres", ""):
                    violations.append(f"{where}: connects as the Postgres superuser; give the service a role")
                    continue
                if _INTERPOLATION.search(user):
                    violations.append(f"{where}: role {user!r} is a variable; name the service's role")
                    continue
                password_vars = {m.group(1) for m in _INTERPOLATION.finditer(password)} or {password}
                role_passwords.setdefault(user, set()).update(password_vars)
                for variable in password_vars:
                    password_roles.setdefault(variable, set()).add(user)
    violations += [
        f"role {role!r} has several password variables: {sorted(variables)}"
        for role, variables in sorted(role_passwords.items())
        if len(variables) > 1
    ]
    violations += [
        f"{variable} is the password of several roles: {sorted(roles)}"
        for variable, roles in sorted(password_roles.items())
        if len(roles) > 1
    ]
    return violations


def env_example_violations(text: str) -> list[str]:
    """.env.example holds no secret: every secret-named setting is empty, so a copy that nobody fills in stops
    ``up`` at the ``${VAR:?…}`` check instead of running with a published placeholder password."""
    violations = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = stripped.removeprefix("export ").partition("=")
        if _SECRET_NAME.search(key.strip()) and value.strip().strip("\"'"):
            violations.append(f".env.example:{number}: {key.strip()} has a value; leave secrets empty")
    return violations


def env_example_keys(text: str) -> set[str]:
    keys = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            keys.add(stripped.removeprefix("export ").split("=", 1)[0].strip())
    return keys


def compose_schema_violations(path: Path) -> list[str]:
    """check-jsonschema against the compose-spec, as the ``compose-spec`` hook runs it."""
    return hook_findings("compose-spec", path)


def test_env_example_has_no_secret() -> None:
    violations = env_example_violations(ENV_EXAMPLE.read_text())
    assert not violations, report(violations)


def test_env_example_check_rejects_a_placeholder() -> None:
    assert env_example_violations("# ok\nPOSTGRES_PASSWORD=\nLOG_LEVEL=info\n# API_KEY=x\n") == []
    assert env_example_violations("POSTGRES_PASSWORD=change-me\nexport API_TOKEN='x'\nGRAFANA_PASSWORD=\"\"\n") == [
        ".env.example:1: POSTGRES_PASSWORD has a value; leave secrets empty",
        ".env.example:2: API_TOKEN has a value; leave secrets empty",
    ]


def compose_env_module() -> Any:
    """docker/compose-env.py (``make compose-env``), imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compose_env", DOCKER_DIR / "compose-env.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_compose_env_fills_every_required_variable(tmp_path: Path) -> None:
    required = {
        match.group(1)
        for _, value in strings(yaml.safe_load(COMPOSE_FILE.read_text()))
        for match in _INTERPOLATION.finditer(value)
        if match.group(2) in (":?", "?")
    }
    module = compose_env_module()
    output = tmp_path / ".env"

    assert module.main(["--example", str(ENV_EXAMPLE), "--output", str(output)]) == 0
    values = dict(line.split("=", 1) for line in output.read_text().splitlines() if line and not line.startswith("#"))
    first = dict(values)
    assert module.main(["--example", str(ENV_EXAMPLE), "--output", str(output)]) == 1  # never overwrites
    module.main(["--example", str(ENV_EXAMPLE), "--output", str(output), "--force"])
    again = dict(line.split("=", 1) for line in output.read_text().splitlines() if line and not line.startswith("#"))

    assert sorted(k for k in required if not values.get(k)) == []
    assert all(re.fullmatch(r"[0-9a-f]{32}", values[k]) for k in required if _SECRET_NAME.search(k))
    assert all(first[k] != again[k] for k in required if _SECRET_NAME.search(k))
    assert output.stat().st_mode & 0o077 == 0


def test_compose_file_invariants() -> None:
    assert COMPOSE_FILE.exists(), "docker-compose.yml is missing"
    assert ENV_EXAMPLE.exists(), ".env.example is missing (it lists the variables docker-compose.yml requires)"
    compose = yaml.safe_load(COMPOSE_FILE.read_text())

    violations = compose_violations(compose, env_example_keys(ENV_EXAMPLE.read_text()))

    assert not violations, f"docker-compose.yml:{report(violations)}"


GOOD_COMPOSE: dict[str, Any] = {
    "name": "demo",
    "services": {
        "postgres": {
            "image": "postgres:16",
            "restart": "unless-stopped",
            "environment": {
                "POSTGRES_USER": "${POSTGRES_USER:-mlops}",
                "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?set it in .env}",
                "APP_DB_PASSWORD": "${APP_DB_PASSWORD:?set it in .env}",
            },
            "healthcheck": {"test": ["CMD", "pg_isready"], "interval": "5s"},
            "ports": ["${BIND_ADDRESS:-127.0.0.1}:5432:5432"],
        },
        "migrate": {
            "image": "ghcr.io/acme/app:${APP_TAG:-0.1.0}",
            "restart": "no",
            "command": ["migrate", "--database-url-from", "DB_URL"],
            "environment": {"DB_URL": "postgresql://app:${APP_DB_PASSWORD:?set it in .env}@postgres/db"},
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        },
        "app": {
            "build": {"context": ".", "dockerfile": "docker/app.Dockerfile"},
            "healthcheck": {"test": ["CMD", "true"]},
            "ports": [{"target": 8000, "published": 8000, "host_ip": "127.0.0.1"}, "127.0.0.1:9000:9000"],
            "environment": [
                "API_TOKEN=${API_TOKEN:?set it in .env}",
                "LOG_LEVEL=info",
                "CACHE=redis:6379,password=${REDIS_PASSWORD:?set it in .env}",
                "QUEUE_AUTH_STRING=app:${QUEUE_PASSWORD:?set it in .env}",
                "READER_URL=postgresql+psycopg://app_reader:${APP_READER_DB_PASSWORD:?set it}@postgres/db",
            ],
            "depends_on": {
                "postgres": {"condition": "service_healthy"},
                "migrate": {"condition": "service_completed_successfully"},
            },
        },
    },
}
GOOD_ENV_EXAMPLE = (
    "# secrets\nPOSTGRES_PASSWORD=\nAPI_TOKEN=\nAPP_DB_PASSWORD=\nAPP_READER_DB_PASSWORD=\nREDIS_PASSWORD=\n"
    "QUEUE_PASSWORD=\n"
)


def compose_with(tmp_path: Path, patch: dict[str, Any]) -> dict[str, Any]:
    """GOOD_COMPOSE with ``patch`` deep-merged into its services (a None value deletes the key)."""

    def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    compose = merge(GOOD_COMPOSE, {"services": patch})
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
    return compose


def test_a_good_compose_file_passes(tmp_path: Path) -> None:
    compose = compose_with(tmp_path, {})

    assert compose_violations(compose, env_example_keys(GOOD_ENV_EXAMPLE)) == []
    assert compose_schema_violations(tmp_path / "docker-compose.yml") == []


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"app": {"privileged": True}}, "privileged"),
        ({"app": {"network_mode": "host", "ports": None}}, "network_mode: host"),
        ({"postgres": {"image": "postgres"}}, "has no tag"),
        ({"postgres": {"image": "postgres:latest"}}, "latest"),
        ({"migrate": {"image": "ghcr.io/acme/app:${APP_TAG}"}}, "variable without a default"),
        ({"postgres": {"healthcheck": None}}, "without a healthcheck"),
        ({"postgres": {"healthcheck": {"disable": True}}}, "without a healthcheck"),
        ({"migrate": {"restart": None}}, "without a healthcheck"),
        ({"postgres": {"ports": ["5432:5432"]}}, "not bound to 127.0.0.1"),
        ({"postgres": {"ports": ["0.0.0.0:5432:5432"]}}, "not bound to 127.0.0.1"),
        ({"postgres": {"ports": ["${BIND_ADDRESS:-0.0.0.0}:5432:5432"]}}, "not bound to 127.0.0.1"),
        ({"app": {"ports": [{"target": 8000, "published": 8000}]}}, "every interface"),
        ({"postgres": {"environment": {"POSTGRES_PASSWORD": "postgres"}}}, "a secret must come from .env"),
        ({"postgres": {"environment": {"POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-postgres}"}}}, "from .env"),
        ({"app": {"environment": ["API_TOKEN=abc123"]}}, "a secret must come from .env"),
        ({"migrate": {"command": ["migrate", "postgresql://mlops:hunter2@postgres/db"]}}, "password written in"),
        ({"migrate": {"command": ["m", "postgresql://${U:-mlops}:${P:-hunter2}@postgres/db"]}}, "password written in"),
        ({"migrate": {"environment": {"DB_URL": "redis://:hunter2@redis:6379/0"}}}, "password written in"),
        ({"app": {"environment": ["API_TOKEN=${MISSING_TOKEN:?set it}"]}}, "missing from .env.example"),
        ({"app": {"depends_on": ["postgres"]}}, "short form"),
        ({"app": {"depends_on": {"postgres": {"condition": "service_started"}}}}, "condition is 'service_started'"),
        ({"migrate": {"depends_on": {"app": {"condition": "service_completed_successfully"}}}}, "long-running"),
        ({"migrate": {"command": ["m", "--password", "${APP_DB_PASSWORD:?x}"]}}, "APP_DB_PASSWORD on a command line"),
        ({"migrate": {"entrypoint": ["sh", "-c", 'exec m --url "$$DB_URL"']}}, "DB_URL on a command line"),
        ({"postgres": {"healthcheck": {"test": ["CMD-SHELL", "redis-cli -a $$REDIS_PASSWORD ping"]}}},
         "REDIS_PASSWORD on a command line"),
        ({"migrate": {"command": ["m", "redis:6379,password=${REDIS_PASSWORD:?x}"]}}, "on a command line"),
        ({"migrate": {"environment": {"DB_URL": "postgresql://app:${POSTGRES_PASSWORD:?x}@postgres/db"}}},
         "superuser"),
        ({"migrate": {"environment": {"DB_URL": "postgresql://${POSTGRES_USER:-m}:${APP_DB_PASSWORD:?x}@p/db"}}},
         "superuser"),
        ({"migrate": {"environment": {"DB_URL": "postgresql://${ROLE:-app}:${APP_DB_PASSWORD:?x}@postgres/db"}}},
         "is a variable"),
        ({"migrate": {"environment": {"X_URL": "postgresql://app_reader:${APP_DB_PASSWORD:?x}@postgres/db"}}},
         "APP_DB_PASSWORD is the password of several roles"),
        ({"migrate": {"environment": {"DB_URL": "postgresql://app:${APP_READER_DB_PASSWORD:?x}@postgres/db"}}},
         "APP_READER_DB_PASSWORD is the password of several roles"),
        ({"migrate": {"environment": {"OTHER_URL": "postgresql://app:${QUEUE_PASSWORD:?x}@postgres/db"}}},
         "role 'app' has several password variables"),
        ({"migrate": {"environment": {"CACHE": "redis:6379,password=hunter2"}}}, "in a connection string"),
        ({"migrate": {"environment": {"CACHE": "redis:6379,password=${R:-hunter2}"}}}, "in a connection string"),
        ({"app": {"environment": ["QUEUE_AUTH_STRING=app:hunter2"]}}, "a secret must come from .env"),
        ({"app": {"environment": ["REDISCLI_AUTH=hunter2"]}}, "a secret must come from .env"),
    ],
    ids=[
        "privileged", "network-host", "untagged-image", "latest-image", "unresolvable-tag", "no-healthcheck",
        "healthcheck-disabled", "no-restart-policy-is-long-running", "port-all-interfaces", "port-0.0.0.0",
        "port-default-0.0.0.0", "long-port-no-host-ip", "literal-password", "default-password", "literal-token",
        "password-in-url", "default-password-in-url", "password-only-url",
        "required-var-not-in-env-example", "depends-on-list", "depends-on-started",
        "completed-on-long-running", "secret-interpolated-in-command", "secret-in-shell-entrypoint",
        "secret-in-healthcheck", "key-value-password-in-command", "superuser-password-in-url",
        "superuser-name-in-url", "role-is-a-variable", "two-roles-one-password", "reader-password-as-owner",
        "role-two-passwords", "literal-key-value-password", "default-key-value-password", "literal-auth-string",
        "literal-cli-auth",
    ],
)  # fmt: skip
def test_compose_check_rejects(tmp_path: Path, patch: dict[str, Any], expected: str) -> None:
    compose = compose_with(tmp_path, patch)

    violations = compose_violations(compose, env_example_keys(GOOD_ENV_EXAMPLE))

    assert any(expected in v for v in violations), violations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgresql+psycopg://${U:-mlops}:${P:?set P in .env (cp it)}@db:5432/x", ["${P:?set P in .env (cp it)}"]),
        ("postgresql://mlops:s3cret@db/x and http://user@host/ and http://host:80/", ["s3cret"]),
        ("redis://:${REDIS_PASSWORD:?}@redis:6379", ["${REDIS_PASSWORD:?}"]),
        ("http://mlflow:5000", []),
    ],
    ids=["interpolated", "literal", "password-only", "no-userinfo"],
)  # fmt: skip
def test_url_passwords(value: str, expected: list[str]) -> None:
    assert url_passwords(value) == expected


# A shell line that may name a secret without putting it on a command line: a `:` or `[ ]` test, an export or
# assignment, and printf (a shell builtin, usually writing it to a file).
_SAFE_SECRET_LINE = re.compile(r"^(?::\s|\[\s|export\s|[A-Za-z_][A-Za-z0-9_]*=|printf\s)")
_HEREDOC_START = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")


def script_secret_violations(name: str, text: str, secret_names: set[str]) -> list[str]:
    """No secret on a command line in an entrypoint script either: a line that expands a secret-bearing
    variable as an argument of a program (``mlflow server --backend-store-uri "$URI"``, ``psql -v pw="$PW"``)
    is reported; heredoc bodies (stdin) and the safe forms above are not."""
    violations = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        referenced = {match.group(1) for match in _SHELL_REFERENCE.finditer(line.split(" #", 1)[0])}
        leaked = sorted(n for n in referenced if n in secret_names or _SECRET_NAME.search(n))
        if leaked and not _SAFE_SECRET_LINE.match(line):
            violations.append(f"{name}:{index}: {', '.join(leaked)} on a command line: `{line}`")
        for delimiter in _HEREDOC_START.findall(line):
            while index < len(lines) and lines[index].strip() != delimiter:
                index += 1
            index += 1
    return violations


def compose_secret_names(compose: dict[str, Any]) -> set[str]:
    return {name for service in (compose.get("services") or {}).values() for name in secret_variables(service)}


def shell_scripts() -> list[Path]:
    return sorted(path for path in DOCKER_DIR.rglob("*.sh") if path.is_file())


def test_no_script_puts_a_secret_on_a_command_line() -> None:
    secret_names = compose_secret_names(yaml.safe_load(COMPOSE_FILE.read_text()))
    assert {"MLFLOW_BACKEND_STORE_URI", "REDIS_PASSWORD", "FEAST_REGISTRY_URL"} <= secret_names, secret_names
    violations = [
        v for path in shell_scripts() for v in script_secret_violations(path.name, path.read_text(), secret_names)
    ]
    assert not violations, report(violations)


def test_script_secret_check_rejects_a_secret_argument() -> None:
    script = (
        "#!/bin/sh\n"
        ': "${DB_URI:?set it}"\n'
        '[ -z "${API_TOKEN:-}" ] || export API_TOKEN\n'
        "printf '%s' \"$REDIS_PASSWORD\" > /tmp/pw\n"
        "exec redis-server - <<CONF\nrequirepass $REDIS_PASSWORD\nCONF\n"
        'exec mlflow server \\\n  --backend-store-uri "$DB_URI" \\\n  --port 5000\n'
        'psql -v pw="$APP_DB_PASSWORD" -c "select 1"  # a comment naming $SECRET\n'
    )

    violations = script_secret_violations("entrypoint.sh", script, {"DB_URI"})

    assert [v.split(":", 2)[:2] for v in violations] == [["entrypoint.sh", "9"], ["entrypoint.sh", "11"]], violations


def test_compose_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    compose_with(tmp_path, {"app": {"healthcheck": {"test": ["CMD", "true"], "intervall": "5s"}}})

    violations = compose_schema_violations(tmp_path / "docker-compose.yml")

    assert any("intervall" in v for v in violations), violations


# --------------------------------------------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------------------------------------------


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
            tokens = json.loads(args) if _is_exec_form(args) else args.split()
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


# --------------------------------------------------------------------------------------------------------------
# GitHub workflows
# --------------------------------------------------------------------------------------------------------------


def workflows() -> list[Path]:
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])


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
