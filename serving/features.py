"""Online features for scoring: one Feast lookup per request (or batch) through the model's feature service.

The Feast calls are :mod:`mlops_recipes.io.feature_store`'s (the one door to the store, shared with the stages);
this module adds what a long-running service needs around them: one store per process, cached service handles,
and errors turned into 503s that name no host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_recipes.io import feature_store
from mlops_recipes.io.customer_events import CustomerEvent, CustomerKey, CustomerUpdates
from mlops_recipes.io.models import ModelLoadError
from mlops_recipes.settings import Settings

_log = logging.getLogger("serving.features")


class FeatureStoreUnavailable(RuntimeError):
    """The online store could not be read; the request gets 503 and the next one tries again.

    The message is what the client reads (what is wrong, not where); ``detail`` keeps the driver's error, with
    its hosts and ports, for the log only.
    """

    def __init__(self, message: str, *, cause: BaseException) -> None:
        super().__init__(message)
        self.detail = f"{message}: {type(cause).__name__}: {cause}"


class OnlineFeatures:
    """A Feast store opened once per process, read through :func:`feature_store.online_features`.

    Scored transactions are recorded in their customers' rows with :meth:`record_all` (unless ``update_customers``).
    """

    def __init__(self, settings: Settings, *, update_customers: bool = True) -> None:
        self._settings = settings
        self.update_customers = update_customers
        self._store: Any = None
        self._open_lock = threading.Lock()
        self._services: dict[str, Any] = {}
        self._updates: CustomerUpdates | None = None
        self.newest_event_s = float("-inf")  # event time of the newest row this process wrote (record)

    def _open(self) -> Any:
        if self._store is None:
            # Scoring threads and the monitoring timer may both come first: open the store (seconds) once.
            with self._open_lock:
                if self._store is None:
                    self._store = feature_store.open_store(self._settings)
        return self._store

    def lookup(self, service_name: str, entity_rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """Feature values per entity row (None where the store has nothing), keyed by feature name."""
        try:
            store = self._open()
            service = self._services.get(service_name)
            if service is None:
                service = self._services[service_name] = feature_store.feature_service(store, service_name)
            return feature_store.online_features(store, entity_rows, service)
        except Exception as error:
            # Forget cached handles: a store that comes back may need a fresh connection or registry read.
            self._services.clear()
            raise FeatureStoreUnavailable("online feature store unavailable", cause=error) from error

    def record_all(
        self, events: Sequence[CustomerEvent], account_created_ts: Mapping[CustomerKey, float]
    ) -> dict[CustomerKey, int | Exception]:
        """Count a scored batch's transactions (see :meth:`CustomerUpdates.record_all`): one write for the batch."""
        outcomes = self._customer_updates().record_all(events, account_created_ts)
        counted = [e.time_us for e in events if not isinstance(outcomes.get(e.customer_id), Exception)]
        if counted:
            self.newest_event_s = max(self.newest_event_s, max(counted) / 1e6)
        return outcomes

    def row_before(self, customer_id: CustomerKey, time_us: int) -> dict[str, float] | None:
        """The customer's row as of just before ``time_us`` (see :meth:`CustomerUpdates.row_before`)."""
        return self._customer_updates().row_before(customer_id, time_us)

    def _customer_updates(self) -> CustomerUpdates:
        if self._updates is None:
            store = self._open()
            with self._open_lock:
                if self._updates is None:
                    self._updates = CustomerUpdates(store)
        return self._updates

    @property
    def updated_view(self) -> str | None:
        """The feature view :meth:`record_all` writes, once it has been used."""
        return None if self._updates is None else self._updates.writer.view_name

    def materialized_until(self) -> dict[str, float]:
        """Per batch view, the end of its latest materialization (see :func:`feature_store.materialized_until`)."""
        try:
            return feature_store.materialized_until(self._open())
        except Exception as error:
            raise FeatureStoreUnavailable("feature registry unavailable", cause=error) from error

    def check_service(self, service_name: str) -> None:
        """Refuse (:class:`ModelLoadError`) a feature service the registry does not have.

        A store out of reach only logs: the next requests try again, and answer 503 meanwhile.
        """
        try:
            feature_store.feature_service(self._open(), service_name, refresh=True)
        except feature_store.FeatureServiceMissing as error:
            raise ModelLoadError(
                f"the feature_service tag names {service_name!r}, which the feature registry does not have",
                reason="feature_service",
            ) from error
        except Exception as error:
            _log.warning("cannot check feature service %r (will retry on requests): %s", service_name, error)

    def warm_up(self, service_name: str, keys: dict[str, Any]) -> None:
        """Check the feature service, then pay the first-call cost (registry load, connections) before traffic.

        ``keys``: entity keys of no real entity.
        """
        self.check_service(service_name)
        try:
            self.lookup(service_name, [keys])
            if self.update_customers:
                self._customer_updates()
        except Exception as error:
            _log.warning("feature store warm-up failed (will retry on requests): %s", error)
