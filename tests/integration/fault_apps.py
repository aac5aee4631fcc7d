"""The real service with faults injected into its online store, switched by flag files (service tests only).

``FAULT_DIR`` names a folder; while it holds

- ``store_down``: every online lookup fails as an unreachable store does (``sqlite3.OperationalError``);
- ``delay``: every online lookup first touches ``in_flight`` and sleeps that many seconds (the file's content).

Only the Feast store's ``get_online_features`` is wrapped; everything around it (error handling, timeouts,
metrics, shutdown) is the service's own code. Two ways to run it, both on PYTHONPATH (``conftest.service_env``):

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


def install() -> None:
    """Wrap the online read of every store the service opens. Imports neither Feast nor prometheus_client."""
    import serving.features

    real_open = serving.features.open_store

    def open_store(settings: Any) -> Any:
        store = real_open(settings)
        real_read = store.get_online_features

        def get_online_features(*args: Any, **kwargs: Any) -> Any:
            _inject()
            return real_read(*args, **kwargs)

        store.get_online_features = get_online_features
        return store

    serving.features.open_store = open_store


def create_app() -> Any:
    """ASGI factory: ``serving.app.create_app`` with the faults installed."""
    install()
    from serving.app import create_app as real_create_app

    return real_create_app()


if __name__ == "__main__":
    install()
    from serving.__main__ import main

    sys.exit(main())
