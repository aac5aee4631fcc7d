"""The real service with faults injected into its online store, switched by flag files (service tests only).

``FAULT_DIR`` names a folder; while it holds

- ``store_down``: every online lookup fails as an unreachable store does (``sqlite3.OperationalError``);
- ``delay``: every online lookup first touches ``in_flight`` and sleeps that many seconds (the file's content);
- ``registry_down``: every call of the MLflow client fails as an unreachable tracking server does (``ConnectionError``);
- ``load_down``: only reading a model version's record fails so (the alias still resolves): a transient load error;
- ``predict_fails``: the model call of the versions listed in the file (one per line) raises, warm-up included.

Only the Feast store's ``get_online_features``, the MLflow client's calls and the model call are wrapped;
everything around them (error handling, retries, timeouts, metrics, shutdown) is the service's own code. Two ways
to run it, both on PYTHONPATH (``conftest.service_env``):

- ``python -m fault_apps --port P``: the real launcher (``python -m serving``) with the faults (one worker);
- ``python -m uvicorn fault_apps:create_app --factory``: the app factory under plain uvicorn.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any


def _inject() -> None:
    faults = Path(os.environ["FAULT_DIR"])
    delay = faults / "delay"
    if delay.exists():
        (faults / "in_flight").touch()
        time.sleep(float(delay.read_text()))
    if (faults / "store_down").exists():
        raise sqlite3.OperationalError("unable to open database file (fault injected by the test)")


class _FaultyClient:
    """An MLflow client whose calls fail while ``registry_down`` (or, for one call, ``load_down``) exists."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            faults = Path(os.environ["FAULT_DIR"])
            if (faults / "registry_down").exists() or (name == "get_model_version" and (faults / "load_down").exists()):
                raise ConnectionError("Connection refused (fault injected by the test)")
            return attribute(*args, **kwargs)

        return call


def _install_model_faults() -> None:
    import mlops_recipes.io.models as models

    real_client = models._client
    real_predict = models.LoadedModel.predict

    def client(settings: Any) -> Any:
        return _FaultyClient(real_client(settings))

    def predict(self: Any, matrix: Any) -> Any:
        failing = Path(os.environ["FAULT_DIR"]) / "predict_fails"
        if failing.exists() and self.version in failing.read_text().split():
            raise RuntimeError(f"the model call of version {self.version} failed (fault injected by the test)")
        return real_predict(self, matrix)

    models._client = client  # type: ignore[assignment]
    models.LoadedModel.predict = predict  # type: ignore[method-assign]


def install() -> None:
    """Wrap the online read of every store the service opens, the MLflow client and the model call.

    Imports neither Feast nor prometheus_client (nor MLflow: the launcher must set up metrics first).
    """
    from mlops_recipes.io import feature_store  # the service opens its store through this module

    _install_model_faults()

    real_open = feature_store.open_store

    def open_store(settings: Any) -> Any:
        store = real_open(settings)
        real_read = store.get_online_features

        def get_online_features(*args: Any, **kwargs: Any) -> Any:
            _inject()
            return real_read(*args, **kwargs)

        store.get_online_features = get_online_features
        return store

    feature_store.open_store = open_store


def create_app() -> Any:
    """ASGI factory: ``serving.app.create_app`` with the faults installed."""
    install()
    from serving.app import create_app as real_create_app

    return real_create_app()


if __name__ == "__main__":
    install()
    from serving.__main__ import main

    sys.exit(main())
