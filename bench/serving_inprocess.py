"""The in-process parts of ``bench/serving.py``: the model call and the online lookup next to their baselines,
and the scoring call with and without the per-transaction customer update.

``bench/serving.py`` runs this file in a child process of the benchmarked project, with ``python -P`` and the
project folder as ``PYTHONPATH``, so that ``serving`` is that project's (a clone of the commit measured) while
this code is the working tree's. Each command prints one JSON document (medians in microseconds) on stdout:

    python -P bench/serving_inprocess.py micro '{"transaction": {...}, "alias": "champion", "iterations": 2000}'
    python -P bench/serving_inprocess.py updates '{"alias": "champion", "iterations": 2000}'
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import sqlite3
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Libraries are imported inside the commands (from the project folder the caller puts on the path).
MICRO, UPDATES = "micro", "updates"  # the commands, as bench/serving.py calls them


def medians_us(functions: dict[str, Callable[[], object]], iterations: int, blocks: int = 5) -> dict[str, float]:
    """Median microseconds per call of each function, measured in interleaved blocks after a warm-up.

    Interleaved, so that a slow spell of the machine hits every contender alike.
    """
    for fn in functions.values():
        for _ in range(max(20, iterations // 20)):
            fn()
    samples: dict[str, list[int]] = {name: [] for name in functions}
    per_block = max(1, iterations // blocks)
    for _ in range(blocks):
        for name, fn in functions.items():
            record = samples[name].append
            for _ in range(per_block):
                started = time.perf_counter_ns()
                fn()
                record(time.perf_counter_ns() - started)
    return {name: statistics.median(values) / 1e3 for name, values in samples.items()}


class SqliteOnlineStore:
    """The rows of one entity per feature view read straight from Feast's SQLite online store.

    Feast's layout (feast/infra/online_stores/sqlite.py): one table "<project>_<feature view>" per view, one row
    per (entity_key, feature_name), values as serialized ValueProtos.
    """

    def __init__(self, store: Any, service_name: str, entity_row: dict[str, Any]) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._value = Value
        service = store.get_feature_service(service_name)
        db_path = Path(store.config.online_store.path)
        if not db_path.is_absolute():
            db_path = Path(store.repo_path) / db_path
        self._connection = sqlite3.connect(str(db_path), check_same_thread=False)
        key_version = store.config.entity_key_serialization_version

        def entity_key(join_key: str, entity_id: int) -> bytes:
            key = EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=entity_id)])
            encoded: bytes = serialize_entity_key(key, entity_key_serialization_version=key_version)
            return encoded

        self._entity_key = entity_key
        self._reads: list[tuple[str, str, int]] = []
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            (join_key,) = [column.name for column in view.entity_columns]
            table = f"{store.project}_{projection.name}".replace('"', '""')
            sql = f'SELECT feature_name, value FROM "{table}" WHERE entity_key = ?'  # noqa: S608 (Feast's own names)
            self._reads.append((sql, join_key, entity_row[join_key]))
        self._keys = [entity_key(join_key, entity_id) for _, join_key, entity_id in self._reads]

    def read(self) -> dict[str, Any]:
        """Keys encoded, SELECTs, values decoded: what a lookup needs at the least."""
        values: dict[str, Any] = {}
        for sql, join_key, entity_id in self._reads:
            for name, blob in self._connection.execute(sql, (self._entity_key(join_key, entity_id),)):
                value = self._value()
                value.ParseFromString(blob)
                kind = value.WhichOneof("val")
                values[name] = None if kind is None else getattr(value, kind)
        return values

    def select_only(self) -> list[list[Any]]:
        """The SELECTs alone, on keys encoded beforehand."""
        reads = zip(self._reads, self._keys, strict=True)
        return [self._connection.execute(sql, (key,)).fetchall() for (sql, _, _), key in reads]


def micro(args: dict[str, Any]) -> dict[str, Any]:
    """The service's model call vs raw ``predict_proba`` (and pyfunc), its lookup vs a direct SQLite read."""
    import mlflow
    import numpy as np
    import pandas as pd

    from mlops_recipes.io.feature_store import open_store
    from mlops_recipes.io.models import load_version
    from mlops_recipes.settings import Settings
    from serving.features import OnlineFeatures
    from serving.schemas import transaction_model
    from serving.scoring import model_matrix

    settings = Settings()
    client = mlflow.MlflowClient(settings.resolved_tracking_uri, settings.resolved_registry_uri)
    version = str(client.get_model_version_by_alias(settings.model_name, args["alias"]).version)
    model = load_version(settings, version)
    features = OnlineFeatures(settings)
    contract = settings.contract()
    features.warm_up(model.feature_service, contract.placeholder_keys())

    transaction = transaction_model(contract)(**args["transaction"])
    assert transaction.event_timestamp is not None  # noqa: S101 (the benchmark sets a fixed time)
    entity_rows = [{key: getattr(transaction, key) for key in contract.entity_keys}]
    stored = features.lookup(model.feature_service, entity_rows)
    missing = sorted(name for name, values in stored.items() if values[0] is None and name not in entity_rows[0])
    matrix = model_matrix(stored, [transaction], model.features, contract, now=transaction.event_timestamp.timestamp())
    probability = float(model.predict(matrix)[0])

    sqlite_store = SqliteOnlineStore(open_store(settings), model.feature_service, entity_rows[0])
    direct = sqlite_store.read()
    disagree = sorted(n for n, v in direct.items() if n in stored and not math.isclose(float(v), float(stored[n][0])))
    disagree += sorted(set(direct) ^ (set(stored) - set(entity_rows[0])))  # read by only one of the two
    lookup = medians_us(
        {
            "service_lookup": lambda: features.lookup(model.feature_service, entity_rows),
            "sqlite_direct": sqlite_store.read,
            "sqlite_select_only": sqlite_store.select_only,
        },
        args["iterations"],
    )

    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    frame = pd.DataFrame(matrix, columns=list(model.features))
    pyfunc_output = np.asarray(pyfunc.predict(frame)).tolist()
    calls = medians_us(
        {
            "service_predict": lambda: model.predict(matrix),
            "raw_predict_proba": lambda: model.estimator.predict_proba(matrix),
        },
        args["iterations"],
    )
    calls |= medians_us({"pyfunc_predict": lambda: pyfunc.predict(frame)}, max(50, args["iterations"] // 10))
    return {
        "version": version,
        "feature_service": model.feature_service,
        "estimator": type(model.estimator).__name__,
        "steps": [type(step).__name__ for step in getattr(model.estimator, "named_steps", {}).values()],
        "columns": list(model.features),
        "row": [None if math.isnan(v) else v for v in matrix[0].tolist()],
        "probability": probability,
        "pyfunc_output": pyfunc_output,
        "missing_features": missing,
        "sqlite_disagrees_on": disagree,
        "iterations": args["iterations"],
        "model_us": calls,
        "lookup_us": lookup,
    }


def call_summary(values: Sequence[int]) -> dict[str, float]:
    """Mean, median and p99 in microseconds of call durations in nanoseconds."""
    ordered = sorted(values)
    return {
        "mean_us": statistics.fmean(values) / 1e3,
        "median_us": statistics.median(values) / 1e3,
        "p99_us": ordered[int(0.99 * (len(ordered) - 1))] / 1e3,
        "calls": len(values),
    }


def updates(args: dict[str, Any]) -> dict[str, Any]:
    """The service's scoring call with and without the per-transaction customer update, interleaved blocks.

    Same process, same model and store. Each call scores one transaction of a different customer (cycling
    through the data's customers) with its own id and time, as live traffic would.
    """
    import pandas as pd

    from mlops_recipes.io.models import load_alias
    from mlops_recipes.settings import Settings
    from serving.features import OnlineFeatures
    from serving.metrics import ServiceMetrics
    from serving.schemas import Transaction, transaction_model
    from serving.scoring import score

    settings = Settings()
    contract = settings.contract()
    transaction_type = transaction_model(contract)
    model = load_alias(settings, args["alias"])
    metrics = ServiceMetrics.create()
    paths = {
        "with_update": OnlineFeatures(settings),
        "without_update": OnlineFeatures(settings, update_customers=False),
    }
    for features in paths.values():
        features.warm_up(model.feature_service, contract.placeholder_keys())
    customers = sorted(
        pd.read_parquet(settings.validated_transactions, columns=["customer_id"])["customer_id"].unique()
    )
    start = dt.datetime.now(dt.UTC)
    counter = itertools.count(1)

    def transaction() -> Transaction:
        n = next(counter)
        return transaction_type.model_validate(
            {
                "transaction_id": f"bench-{start.timestamp():.0f}-{n}",
                "customer_id": int(customers[n % len(customers)]),
                "merchant_id": 1,
                "amount": 25.0,
                "channel": "online",
                "event_timestamp": start + dt.timedelta(milliseconds=n),
            }
        )

    samples: dict[str, list[int]] = {name: [] for name in paths}
    for features in paths.values():  # warm-up
        for _ in range(50):
            score([transaction()], model=model, features=features, contract=contract, metrics=metrics)
    blocks, per_block = 10, max(1, args["iterations"] // 10)
    for _ in range(blocks):
        for name, features in paths.items():
            record = samples[name].append
            for _ in range(per_block):
                t = transaction()
                began = time.perf_counter_ns()
                score([t], model=model, features=features, contract=contract, metrics=metrics)
                record(time.perf_counter_ns() - began)
    return {name: call_summary(values) for name, values in samples.items()}


def main(argv: Sequence[str]) -> int:
    """``micro|updates JSON-ARGS``: run one command, print its figures as one JSON line."""
    command, arguments = argv
    # The service calls the estimator on NumPy rows in signature order, as serving.lifespan silences too.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    figures = {MICRO: micro, UPDATES: updates}[command](json.loads(arguments))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
