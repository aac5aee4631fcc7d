r"""Live-like traffic for the scoring service, optionally shifted with the generator's drift knobs.

The drift demo and the drift tests use it. Traffic replays the project's own recent transactions (the last days
of ``data/validated/``: customers and merchants the online store knows, with their real habits), re-timed to
today at their time of day, and applies the knobs of :class:`~mlops_recipes.params.DriftParams` the way the
generator does: amounts scaled, a share of transactions moved to (or from) the second value of the contract's
first categorical field (the demo: the online channel), fraud over- or under-sampled. Request bodies follow the
data contract (id types, request fields). Requests go to ``/predict/batch``; with ``--labels`` the known
outcomes follow on ``/feedback``, as confirmed labels would days later, so live precision and recall move too.
With ``--stream NAME`` the same bodies are appended to a Redis stream for the stream scorer instead, with ids new
to each run (the scorer decides a transaction id once): docs/streaming.md; ``STREAM_REDIS_URL`` and
``STREAM_REDIS_PASSWORD`` say where.

    python -m mlops_recipes.monitoring.traffic --rows 3000                      # like the training data
    python -m mlops_recipes.monitoring.traffic --rows 3000 --amount-scale 4 \
        --online-share-shift 0.4 --labels                                        # shifted: drift alerts fire
    python -m mlops_recipes.monitoring.traffic --rows 3000 --stream transactions # to the stream scorer
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_recipes.contract import AMOUNT, CUSTOMER, EVENT_TIME, LABEL, MERCHANT, TRANSACTION_ID, Contract
from mlops_recipes.observability import FEEDBACK, PREDICT_BATCH
from mlops_recipes.params import DriftParams
from mlops_recipes.settings import Settings

_SECONDS_PER_DAY = 86_400
_GIVE_UP_AFTER = 3  # failed first requests before concluding that nothing listens at the URL


@dataclass(frozen=True)
class TrafficSummary:
    """What was sent and how the service answered."""

    sent: int
    failed_requests: int
    flagged: int
    labels_matched: int


def recent_transactions(settings: Settings, contract: Contract, *, days: int = 7) -> pd.DataFrame:
    """The last ``days`` of the project's validated transactions (run the pipeline first)."""
    path = settings.validated_transactions
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the pipeline first (make run)")
    frame = pd.read_parquet(path, columns=[CUSTOMER, MERCHANT, *contract.request_fields, LABEL])
    latest = frame[EVENT_TIME].max()
    recent: pd.DataFrame = frame[frame[EVENT_TIME] > latest - pd.Timedelta(days=days)]
    return recent.reset_index(drop=True)


def live_transactions(
    recent: pd.DataFrame, drift: DriftParams, contract: Contract, *, rows: int, seed: int, id_prefix: str = "live"
) -> list[dict[str, Any]]:
    """``rows`` request bodies (plus their label outcome) drawn from ``recent`` under ``drift``."""
    if recent.empty:
        raise ValueError("no recent transactions to replay")
    rng = np.random.default_rng(seed)
    is_fraud = recent[LABEL].to_numpy(dtype=bool)
    weights = np.where(is_fraud, drift.fraud_multiplier, 1.0)
    if weights.sum() == 0:
        raise ValueError("fraud_multiplier=0 leaves nothing to replay: the recent window has only fraud")
    picked = recent.iloc[rng.choice(len(recent), size=rows, p=weights / weights.sum())].reset_index(drop=True)

    categories = {name: picked[name].to_numpy(dtype=object).copy() for name in contract.categorical}
    if contract.categorical:  # the share shift acts on the first categorical field: towards its second value
        name, spec = next(iter(contract.categorical.items()))
        _shift_share(categories[name], drift.online_share_shift, spec.values[1], spec.values[0], rng)
    amount = np.minimum(picked[AMOUNT].to_numpy(dtype=float) * drift.amount_scale, contract.columns.amount.max)

    keys = {column: _keys(picked[column], contract.id_type(column)) for column in (CUSTOMER, MERCHANT)}
    outcomes = picked[LABEL].to_numpy(dtype=bool)
    now = time.time()
    today = pd.Timestamp(now, unit="s", tz="UTC").normalize().timestamp()
    seconds = picked[EVENT_TIME].astype("int64").to_numpy() // 1_000_000_000
    # The latest past moment at the transaction's time of day (today, or yesterday for a time still to come): the
    # service refuses events more than a few minutes in the future (SERVING_MAX_CLOCK_SKEW_S).
    event_time = today + np.mod(seconds, _SECONDS_PER_DAY)
    event_time = np.where(event_time > now, event_time - _SECONDS_PER_DAY, event_time)
    bodies = []
    for i in range(rows):
        body: dict[str, Any] = {
            TRANSACTION_ID: f"{id_prefix}-{i}",
            **{column: values[i] for column, values in keys.items()},
            AMOUNT: round(float(amount[i]), 2),
            **{name: str(values[i]) for name, values in categories.items()},
            EVENT_TIME: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(event_time[i]))),
        }
        for name in contract.numeric:
            value = float(picked[name].iloc[i])
            if not np.isnan(value):
                body[name] = value
        body[LABEL] = bool(outcomes[i])
        bodies.append(body)
    return bodies


def _keys(values: pd.Series, kind: str) -> list[Any]:
    return [int(v) for v in values.tolist()] if kind == "int" else [str(v) for v in values.tolist()]


def _shift_share(values: np.ndarray, shift: float, towards: str, away: str, rng: np.random.Generator) -> None:
    """Move about ``shift`` of the rows to ``towards`` (or, negative, from it to ``away``), in place."""
    hit = values == towards
    if shift > 0 and (~hit).any():
        move = ~hit & (rng.random(values.size) < min(1.0, shift / max((~hit).mean(), 1e-9)))
        values[move] = towards
    elif shift < 0 and hit.any():
        move = hit & (rng.random(values.size) < min(1.0, -shift / max(hit.mean(), 1e-9)))
        values[move] = away


def _post(url: str, body: dict[str, Any], *, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must be http(s), got {url!r}")
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")  # noqa: S310 - checked above
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
        result: dict[str, Any] = json.load(response)
        return result


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def send(
    url: str,
    transactions: list[dict[str, Any]],
    *,
    batch: int = 50,
    rate: float | None = None,
    labels: bool = False,
    api_key: str | None = None,
    feedback_api_key: str | None = None,
    timeout: float = 10.0,
) -> TrafficSummary:
    """Score ``transactions`` in batches (at most ``rate`` rows/s), then send their labels if asked.

    Labels go with ``feedback_api_key`` (the service's SERVING_FEEDBACK_API_KEY), else with ``api_key``.
    """
    base = url.rstrip("/")
    failed = flagged = matched = 0
    scored: list[dict[str, Any]] = []
    for chunk in _chunks(transactions, batch):
        started = time.monotonic()
        body = {"transactions": [{k: v for k, v in t.items() if k != LABEL} for t in chunk]}
        try:
            result = _post(f"{base}{PREDICT_BATCH}", body, api_key=api_key, timeout=timeout)
        except (urllib.error.URLError, TimeoutError) as error:
            failed += 1
            print(f"request failed: {error}", file=sys.stderr)  # noqa: T201 - a command-line tool
            if not scored and failed >= _GIVE_UP_AFTER:
                raise ConnectionError(f"{base} does not answer ({error}); is the service running?") from error
            continue
        flagged += sum(p[LABEL] for p in result["predictions"])
        scored += chunk
        if rate:
            time.sleep(max(0.0, len(chunk) / rate - (time.monotonic() - started)))
    if labels:
        for chunk in _chunks(scored, batch):
            body = {"labels": [{TRANSACTION_ID: t[TRANSACTION_ID], LABEL: t[LABEL]} for t in chunk]}
            labels_key = feedback_api_key or api_key
            matched += _post(f"{base}{FEEDBACK}", body, api_key=labels_key, timeout=timeout)["matched"]
    return TrafficSummary(sent=len(scored), failed_requests=failed, flagged=flagged, labels_matched=matched)


def publish(client: Any, stream: str, transactions: list[dict[str, Any]], *, batch: int = 500) -> list[str]:
    """Append ``transactions`` (labels left out) to ``stream`` for the stream scorer; returns their entry ids."""
    from mlops_recipes.core.stream import message_fields

    ids: list[str] = []
    for chunk in _chunks(transactions, batch):
        with client.pipeline(transaction=False) as pipe:
            for transaction in chunk:
                pipe.xadd(stream, message_fields({k: v for k, v in transaction.items() if k != LABEL}))
            ids += [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()]
    return ids


def _redis_client() -> Any:
    import os

    import redis

    url = os.environ.get("STREAM_REDIS_URL", "redis://127.0.0.1:6379/0")
    return redis.Redis.from_url(url, password=os.environ.get("STREAM_REDIS_PASSWORD") or None)


def main(argv: list[str] | None = None) -> int:
    """Command line: send (optionally shifted) traffic to a running service."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50, help="transactions per /predict/batch call")
    parser.add_argument("--rate", type=float, default=None, help="rows per second (default: as fast as answered)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=7, help="replay the last DAYS of the validated data")
    parser.add_argument("--amount-scale", type=float, default=1.0, help="drift: multiply amounts")
    parser.add_argument("--online-share-shift", type=float, default=0.0, help="drift: more (or fewer) online")
    parser.add_argument("--fraud-multiplier", type=float, default=1.0, help="drift: more (or less) fraud")
    parser.add_argument("--labels", action="store_true", help="then send the generated outcomes to /feedback")
    parser.add_argument("--api-key", default=None, help="X-API-Key, if the service requires one")
    parser.add_argument("--feedback-api-key", default=None, help="X-API-Key for /feedback, if it has its own")
    parser.add_argument("--stream", default=None, help="append to this Redis stream instead (the stream scorer's)")
    args = parser.parse_args(argv)
    if args.stream and args.labels:
        parser.error("--labels goes to the service's /feedback: not with --stream")

    drift = DriftParams(
        amount_scale=args.amount_scale,
        online_share_shift=args.online_share_shift,
        fraud_multiplier=args.fraud_multiplier,
    )
    settings = Settings()
    contract = settings.contract()
    recent = recent_transactions(settings, contract, days=args.days)
    # On a stream, a transaction id is decided once (idempotency): ids new to each run, or a rerun decides nothing.
    prefix = time.strftime("stream-%Y%m%dT%H%M%S") if args.stream else "live"
    transactions = live_transactions(recent, drift, contract, rows=args.rows, seed=args.seed, id_prefix=prefix)
    if args.stream:
        ids = publish(_redis_client(), args.stream, transactions)
        print(f"appended {len(ids)} transactions to stream {args.stream}")  # noqa: T201 - a command-line tool
        return 0
    summary = send(
        args.url,
        transactions,
        batch=args.batch,
        rate=args.rate,
        labels=args.labels,
        api_key=args.api_key,
        feedback_api_key=args.feedback_api_key,
    )
    print(  # noqa: T201 - a command-line tool
        f"sent {summary.sent} transactions ({summary.flagged} flagged as fraud), "
        f"{summary.failed_requests} failed requests, {summary.labels_matched} labels matched"
    )
    return 1 if summary.failed_requests else 0


if __name__ == "__main__":
    raise SystemExit(main())
