#!/usr/bin/env python3
"""The MLflow accounts of the compose stack, made idempotently through the basic-auth admin REST API.

Run by docker/mlflow-entrypoint.sh once the server answers, at every start (stdlib only):

- ``writer`` (the train job and the Prefect worker): EDIT on every experiment and registered model: log runs
  and models, register versions, move aliases. No delete, no permission management.
- ``reader`` (the scoring service): READ on every experiment and registered model: resolve ``champion``,
  download the model. Creating a run, a version or moving an alias answers 403.
- the admin (``MLFLOW_AUTH_ADMIN_USERNAME``): made by MLflow itself on the first start, used only here.
- any other account gets nothing (``default_permission = NO_PERMISSIONS`` in the server's auth config).

The experiment and the registered model the pipeline uses are created here, by the admin, before any other
account can log in: no account can take their names first and become their manager.

At every start the writer's and reader's passwords are set to the ones in the environment, so rotating them is
"change .env, `up -d`" (docs/compose.md). The admin password is MLflow's: this script only checks it.
On success it writes the reader's credentials to ``MLFLOW_PROBE_AUTH_FILE`` (mode 600) for the healthcheck.

Environment: MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_WRITER_USERNAME (writer),
MLFLOW_WRITER_PASSWORD, MLFLOW_READER_USERNAME (reader), MLFLOW_READER_PASSWORD, MLFLOW_EXPERIMENT_NAME
(fraud-detection), MLFLOW_MODEL_NAME (fraud-detector), MLFLOW_PROBE_AUTH_FILE, MLFLOW_ACCOUNTS_URL
(http://127.0.0.1:5000), MLFLOW_ACCOUNTS_WAIT_S (180).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

# Resource types granted on, with the writer's and the reader's permission on every resource of the type.
GRANTS = {"experiment": ("EDIT", "READ"), "registered_model": ("EDIT", "READ")}


class AccountError(RuntimeError):
    """The accounts could not be made; the message says why and what to do."""


class Api:
    """The MLflow REST API as the admin."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Status and JSON body of one call (a GET sends ``body`` as the query string)."""
        url = self.base_url + path
        data = None
        if body is not None and method == "GET":
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local server
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                return error.code, json.loads(text)
            except json.JSONDecodeError:
                return error.code, {"message": text}

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON body of a call that must succeed."""
        status, payload = self.call(method, path, body)
        if status != 200:
            raise AccountError(f"{method} {path}: HTTP {status}: {payload.get('message', payload)}")
        return payload


def wait_for_server(base_url: str, timeout: float) -> None:
    """Until ``/health`` answers 200 (it needs no credentials)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AccountError(f"the MLflow server did not answer {base_url}/health within {timeout:.0f} s")
        time.sleep(1)


def ensure_user(api: Api, username: str, password: str) -> None:
    """Create the user, or set its password to ``password`` if it exists; never an admin."""
    status, payload = api.call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
    if status == 200:
        print(f"mlflow-accounts: created {username}", file=sys.stderr)  # noqa: T201
    elif payload.get("error_code") == "RESOURCE_ALREADY_EXISTS":
        api.ok("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
    else:
        raise AccountError(f"creating {username}: HTTP {status}: {payload.get('message', payload)}")
    api.ok("PATCH", "/api/2.0/mlflow/users/update-admin", {"username": username, "is_admin": False})


def ensure_grant(api: Api, username: str, resource_type: str, permission: str) -> None:
    """``permission`` on every resource of ``resource_type`` (pattern ``*``), replacing another level."""
    grant = {"username": username, "resource_type": resource_type, "resource_id": "*", "permission": permission}
    target = {key: grant[key] for key in ("username", "resource_type", "resource_id")}
    status, payload = api.call("POST", "/api/3.0/mlflow/users/permissions/grant", grant)
    if status != 200 and payload.get("error_code") == "RESOURCE_ALREADY_EXISTS":
        if api.ok("GET", "/api/3.0/mlflow/users/permissions/get", target).get("permission") == permission:
            return
        api.ok("POST", "/api/3.0/mlflow/users/permissions/revoke", target)
        status, payload = api.call("POST", "/api/3.0/mlflow/users/permissions/grant", grant)
    if status != 200:
        raise AccountError(f"granting {permission} on {resource_type} to {username}: HTTP {status}: {payload}")


def ensure_resources(api: Api, experiment: str, model: str) -> None:
    """The pipeline's experiment and registered model exist, made by the admin (nobody else manages them)."""
    status, _ = api.call("GET", "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": experiment})
    if status == 404:
        api.ok("POST", "/api/2.0/mlflow/experiments/create", {"name": experiment})
    status, _ = api.call("GET", "/api/2.0/mlflow/registered-models/get", {"name": model})
    if status == 404:
        api.ok("POST", "/api/2.0/mlflow/registered-models/create", {"name": model})


def required(name: str) -> str:
    """A non-empty environment variable."""
    value = os.environ.get(name, "")
    if not value:
        raise AccountError(f"{name} is not set")
    return value


def main() -> int:
    """Make the accounts; 1 with a message on stderr if that fails."""
    try:
        base_url = os.environ.get("MLFLOW_ACCOUNTS_URL", "http://127.0.0.1:5000")
        admin = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
        accounts = {
            os.environ.get("MLFLOW_WRITER_USERNAME") or "writer": (required("MLFLOW_WRITER_PASSWORD"), 0),
            os.environ.get("MLFLOW_READER_USERNAME") or "reader": (required("MLFLOW_READER_PASSWORD"), 1),
        }
        if admin in accounts or len(accounts) != 2:
            raise AccountError("the admin, writer and reader accounts need three different names")
        api = Api(base_url, admin, required("MLFLOW_AUTH_ADMIN_PASSWORD"))
        wait_for_server(base_url, float(os.environ.get("MLFLOW_ACCOUNTS_WAIT_S", "180")))
        status, _ = api.call("GET", "/api/2.0/mlflow/users/get", {"username": admin})
        if status == 401:
            raise AccountError(
                f"MLFLOW_AUTH_ADMIN_PASSWORD is not the password of {admin!r} stored in the auth database (MLflow "
                "uses it only on the very first start): set the stored one in .env, or change it first with "
                "PATCH /api/2.0/mlflow/users/update-password (docs/compose.md, rotating a secret)"
            )
        if status != 200:
            raise AccountError(f"checking the admin account: HTTP {status}")
        for username, (password, role) in accounts.items():
            ensure_user(api, username, password)
            for resource_type, permissions in GRANTS.items():
                ensure_grant(api, username, resource_type, permissions[role])
        ensure_resources(
            api,
            os.environ.get("MLFLOW_EXPERIMENT_NAME") or "fraud-detection",
            os.environ.get("MLFLOW_MODEL_NAME") or "fraud-detector",
        )
        probe_file = os.environ.get("MLFLOW_PROBE_AUTH_FILE")
        if probe_file:
            reader = next(name for name, (_, role) in accounts.items() if role == 1)
            path = Path(probe_file)
            path.unlink(missing_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(f"{reader}:{accounts[reader][0]}\n")
    except AccountError as error:
        print(f"mlflow-accounts: {error}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"mlflow-accounts: {', '.join(accounts)} ready", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
