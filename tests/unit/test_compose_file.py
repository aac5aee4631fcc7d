"""The project's own invariants of docker-compose.yml and its secrets: .env.example, ``make compose-env`` and the
entrypoint scripts of docker/.

The compose file: pinned images, a healthcheck on every long-running service, ports published on 127.0.0.1 only,
no privileged or host-namespace service, ``depends_on`` with conditions that can hold. Its secrets: only as
``${VAR:?…}`` from .env, listed (and left empty) in .env.example, never on a command line (compose's or an
entrypoint script's: ``ps`` shows those to every user), and one Postgres role per service, never the superuser.
The compose-spec schema runs on the real file as a pre-commit hook (``make lint``); here it runs, through that
hook's own definition, on an invalid fixture.

Nothing is started. Every invariant is a function that returns the violations it finds, run twice: on the real
files (no violation allowed) and on a bad fixture (the violation must be reported), which proves the check can
fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.container_files import (
    COMPOSE_FILE,
    DOCKER_DIR,
    ENV_EXAMPLE,
    hook_findings,
    image_pin_problem,
    report,
)

pytestmark = pytest.mark.unit


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


def mask_interpolations(value: str) -> tuple[str, Callable[[str], str]]:
    """``value`` with every ``${…}`` reference replaced by a placeholder free of ``:``, ``@`` and spaces, so a URL
    can be split without cutting a reference, and the function that puts the references back into a part."""
    references: list[str] = []

    def mask(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"\x00{len(references) - 1}\x00"

    def unmask(text: str) -> str:
        return re.sub("\x00(\\d+)\x00", lambda match: references[int(match.group(1))], text)

    return _INTERPOLATION.sub(mask, value), unmask


def url_passwords(value: str) -> list[str]:
    """The password part of every URL in ``value``, interpolations kept as written: in
    ``postgresql://${USER:-mlops}:${PASSWORD:?set it in .env}@postgres/db`` it is ``${PASSWORD:?set it in .env}``
    (the ``:`` inside references and the spaces inside their messages do not split anything)."""
    masked, unmask = mask_interpolations(value)
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
    masked, unmask = mask_interpolations(value)
    found = []
    for scheme, userinfo in re.findall(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/\s@]+)@", masked):
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
