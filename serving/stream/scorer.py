"""The stream scorer's loop: read a batch through the consumer group, score it as ``/predict`` does, write, ack.

Delivery is at least once, effects are idempotent:

* a message is acknowledged only in the same Redis script that writes its decision (atomic: both or neither);
  the script writes no decision for a transaction already decided (its ``decided:<transaction_id>`` key), so a
  redelivered message, or a transaction published twice, gets one decision;
* its customer update goes through the customer event log, which refuses a ``transaction_id`` it already holds,
  and a redelivered transaction is scored on the row as of just before it (``as_of_each_event``): the same score;
* a consumer that dies leaves its messages pending; after ``STREAM_CLAIM_IDLE_MS`` another one claims them
  (XAUTOCLAIM), and a message delivered more than ``STREAM_MAX_DELIVERIES`` times goes to the dead letters;
* a message that cannot be scored (not JSON, fails the request schema, no ``transaction_id``) goes to the dead
  letters at once, with the error; it is never retried;
* Redis out of reach: every operation is retried with exponential backoff, the group re-created if Redis came
  back empty; the online store down or no model yet: the batch is held (its messages kept claimed) and retried;
* SIGTERM/SIGINT: the batch in hand is finished and acknowledged, then the process exits 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from prometheus_client import start_http_server
from pydantic import ValidationError

from mlops_recipes.contract import CUSTOMER, EVENT_TIME
from mlops_recipes.core.stream import (
    PoisonMessage,
    backoff_s,
    dead_letter_fields,
    decision_fields,
    decision_key,
    decode_body,
    disjoint_batches,
    entry_time_s,
)
from mlops_recipes.settings import Settings
from serving import logs
from serving.deps import ScoringParts
from serving.features import FeatureStoreUnavailable
from serving.lifespan import freeze_heap
from serving.metrics import ServiceMetrics
from serving.model import LoadedModel, ModelNotReady
from serving.schemas import Prediction, Transaction, transaction_model
from serving.scoring import score
from serving.settings import ServingSettings
from serving.stream.metrics import StreamMetrics
from serving.stream.settings import StreamSettings
from serving.validation import event_time_errors

_log = logging.getLogger("serving.stream")
T = TypeVar("T")

# KEYS: output stream, input stream, then one decided-key per decision. ARGV: group, ttl ms, max length, then per
# decision its source entry id, its number of field/value items and the items. Returns 1 (written) or 0 (the
# transaction was decided before) per decision. One script: the decision and the acknowledgement are atomic.
_WRITE_AND_ACK = """
local group, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3]
local i, outcomes = 4, {}
for d = 3, #KEYS do
  local source, count = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  if redis.call('EXISTS', KEYS[d]) == 0 then
    local fields = {}
    for f = 0, count - 1 do fields[f + 1] = ARGV[i + f] end
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    redis.call('SET', KEYS[d], id, 'PX', ttl)
    outcomes[#outcomes + 1] = 1
  else
    outcomes[#outcomes + 1] = 0
  end
  i = i + count
  redis.call('XACK', KEYS[2], group, source)
end
return outcomes
"""

_LAG_COUNT_CAP = 10_000  # Redis < 7 has no group lag: count undelivered entries, up to this many


class _Stopping(Exception):
    """A stop was requested while waiting (Redis down, a store down): leave what is held pending, exit."""


@dataclass
class _Message:
    entry_id: str
    fields: dict[bytes, bytes]
    deliveries: int
    transaction: Transaction | None = None
    event_time_s: float = 0.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _errors_text(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}" for e in error.errors(include_url=False)
    )


class StreamScorer:
    """One consumer of the group: the loop of :meth:`run` until :meth:`stop`."""

    def __init__(
        self, settings: Settings, serving: ServingSettings, stream: StreamSettings, *, client: Any | None = None
    ) -> None:
        import redis

        self.settings, self.serving, self.stream = settings, serving, stream
        self.contract = settings.contract()
        self.metrics = ServiceMetrics.create()
        self.stream_metrics = StreamMetrics.create(self.metrics.registry)
        parts = ScoringParts.create(settings, serving, self.metrics)  # as the service builds them
        self.models, self.features, self.monitor = parts.models, parts.features, parts.monitor
        self._transaction_model = transaction_model(self.contract)
        password = stream.redis_password.get_secret_value() if stream.redis_password else None
        timeout = stream.block_ms / 1000 + 5.0  # a blocking read must not time out on the client side
        self.redis: Any = client or redis.Redis.from_url(
            stream.redis_url, password=password, socket_timeout=timeout, socket_connect_timeout=5.0
        )
        self._write_and_ack = self.redis.register_script(_WRITE_AND_ACK)
        self._stop = threading.Event()
        self._group_missing = True
        self._claim_cursor = "0-0"
        self._next: dict[str, float] = {"claim": 0.0, "model": 0.0, "lag": 0.0, "drift": 0.0}

    # --- life cycle ---------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return."""
        self._stop.set()

    def run(self) -> int:
        """Score until stopped; returns the exit status (0: a requested stop)."""
        _log.info(
            "stream scorer starting",
            extra={"stream": self.stream.input, "group": self.stream.group, "consumer": self.stream.consumer},
        )
        # The model is called on NumPy rows in signature order, as in the service: no warning per call.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        try:
            self._wait_for_model()
            while not self._stop.is_set():
                self._housekeeping()
                messages = self._claim() if time.monotonic() >= self._next["claim"] else []
                if not messages:
                    messages = self._read()
                if messages:
                    self._handle(messages)
        except _Stopping:
            _log.warning("stopped while waiting for a store: unacknowledged messages stay pending for the group")
        _log.info("stream scorer stopped", extra={"consumer": self.stream.consumer})
        return 0

    def _wait_for_model(self) -> None:
        attempt = 0
        while self._refresh_model() is None:
            attempt += 1
            if self._stop.wait(backoff_s(attempt, base_s=1.0, max_s=self.serving.poll_interval_s)):
                raise _Stopping

    def _refresh_model(self) -> LoadedModel | None:
        def warm_up(model: LoadedModel) -> None:
            self.features.warm_up(model.feature_service, self.contract.placeholder_keys())

        previous = self.models.current
        if self.models.refresh(warm_up):
            freeze_heap(collect=previous is not None)  # as the service: no full GC pass over the libraries
        self._next["model"] = time.monotonic() + self.serving.poll_interval_s
        return self.models.current

    def _housekeeping(self) -> None:
        """Timers: the registry alias (hot swap), lag and pending counts, drift."""
        now = time.monotonic()
        if now >= self._next["model"]:
            self._refresh_model()
        if now >= self._next["lag"]:
            self._publish_lag()
            self._next["lag"] = now + self.stream.lag_interval_s
        if now >= self._next["drift"]:
            self.monitor.publish_drift()
            self._next["drift"] = now + self.serving.monitor_interval_s

    # --- Redis, with retries --------------------------------------------------------------------------------------
    def _redis(self, call: Callable[[], T]) -> T:
        """``call()``; Redis out of reach → wait with backoff and try again (until stopped)."""
        import redis

        attempt = 0
        while True:
            try:
                if self._group_missing:
                    self._create_group()
                return call()
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                _log.warning("consumer group %r missing (Redis restarted empty?): creating it", self.stream.group)
                self._group_missing = True
            except (redis.ConnectionError, redis.TimeoutError) as error:
                attempt += 1
                self.stream_metrics.redis_errors.inc()
                delay = backoff_s(attempt, base_s=self.stream.backoff_base_s, max_s=self.stream.backoff_max_s)
                _log.warning("Redis out of reach (attempt %d, retrying in %.1f s): %s", attempt, delay, error)
                if self._stop.wait(delay):
                    raise _Stopping from error

    def _create_group(self) -> None:
        import redis

        try:
            self.redis.xgroup_create(self.stream.input, self.stream.group, id=self.stream.start_id, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_missing = False

    def _publish_lag(self) -> None:
        def read() -> tuple[int, int] | None:
            for group in self.redis.xinfo_groups(self.stream.input):
                if _text(group["name"]) != self.stream.group:
                    continue
                lag = group.get("lag")
                if lag is None:  # Redis < 7 (or a lag it cannot compute): count what follows the last delivered
                    last = _text(group["last-delivered-id"])
                    lag = len(self.redis.xrange(self.stream.input, min=f"({last}", max="+", count=_LAG_COUNT_CAP))
                return int(lag), int(group["pending"])
            return None

        counts = self._redis(read)
        if counts is not None:
            self.stream_metrics.lag.labels(self.stream.input, self.stream.group).set(counts[0])
            self.stream_metrics.pending.labels(self.stream.input, self.stream.group).set(counts[1])

    # --- reading ----------------------------------------------------------------------------------------------
    def _read(self) -> list[_Message]:
        response = self._redis(
            lambda: self.redis.xreadgroup(
                self.stream.group,
                self.stream.consumer,
                {self.stream.input: ">"},
                count=self.stream.batch_size,
                block=self.stream.block_ms,
            )
        )
        return [_Message(_text(i), f, 1) for _, entries in response or [] for i, f in entries]

    def _claim(self) -> list[_Message]:
        """Messages pending longer than the idle timeout (their consumer died), with their delivery counts."""
        response = self._redis(
            lambda: self.redis.xautoclaim(
                self.stream.input,
                self.stream.group,
                self.stream.consumer,
                min_idle_time=self.stream.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self.stream.batch_size,
            )
        )
        self._claim_cursor = _text(response[0])
        if self._claim_cursor == "0-0":  # a full pass over the pending entries: the next one after a pause
            self._next["claim"] = time.monotonic() + max(self.stream.claim_idle_ms / 2000, 0.1)
        entries = [(_text(i), f) for i, f in response[1] if i is not None]
        gone = [i for i, f in entries if not f]  # deleted from the stream (trimmed) while pending: nothing to score
        if gone:
            self._redis(lambda: self.redis.xack(self.stream.input, self.stream.group, *gone))
        entries = [(i, f) for i, f in entries if f]
        if not entries:
            return []
        pending = self._redis(
            lambda: self.redis.xpending_range(
                self.stream.input,
                self.stream.group,
                min=entries[0][0],
                max=entries[-1][0],
                count=len(entries) * 2,
                consumername=self.stream.consumer,
            )
        )
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        self.stream_metrics.redeliveries.inc(len(entries))
        _log.info("claimed %d messages pending longer than %d ms", len(entries), self.stream.claim_idle_ms)
        return [_Message(i, f, deliveries.get(i, 2)) for i, f in entries]

    # --- handling ---------------------------------------------------------------------------------------------
    def _handle(self, messages: list[_Message]) -> None:
        self.stream_metrics.in_flight.set(len(messages))
        try:
            valid = []
            for message in messages:
                error = self._check(message)
                if error is not None:
                    self._dead_letter(message, *error)
                else:
                    valid.append(message)
            for batch in disjoint_batches(valid, lambda m: getattr(m.transaction, CUSTOMER)):
                self._score_and_write(batch)
        finally:
            self.stream_metrics.in_flight.set(0)

    def _check(self, message: _Message) -> tuple[str, str] | None:
        """(reason, error) if the message goes to the dead letters; else it is parsed in place."""
        if message.deliveries > self.stream.max_deliveries:
            return "deliveries", f"delivered {message.deliveries} times without being acknowledged (does it crash us?)"
        try:
            body = decode_body(message.fields)
            transaction = self._transaction_model.model_validate(body)
        except PoisonMessage as error:
            return "schema", str(error)
        except ValidationError as error:
            return "schema", _errors_text(error)
        if transaction.transaction_id is None:
            return "schema", "transaction_id: required on the stream (it makes redelivered decisions idempotent)"
        errors = event_time_errors(
            [((EVENT_TIME,), transaction.event_timestamp)],
            now=dt.datetime.now(dt.UTC),
            max_future_s=self.serving.max_clock_skew_s,
            max_age_s=self.serving.max_event_age_s,
        )
        if errors:
            return "schema", f"{EVENT_TIME}: {errors[0]['msg']}"
        message.transaction = transaction
        stamp = transaction.event_timestamp
        message.event_time_s = entry_time_s(message.entry_id) if stamp is None else stamp.timestamp()
        return None

    def _score_and_write(self, batch: Sequence[_Message]) -> None:
        try:
            predictions = self._score(batch)
        except _Stopping:
            raise
        except Exception as error:  # not transient: find the message it fails on, score the others
            if len(batch) > 1:
                _log.warning("batch failed (%s: %s): scoring its messages one by one", type(error).__name__, error)
                for message in batch:
                    self._score_and_write([message])
                return
            _log.exception("scoring failed on message %s", batch[0].entry_id)
            self._dead_letter(batch[0], "scoring", f"{type(error).__name__}: {error}")
            return
        self._write(batch, predictions)

    def _score(self, batch: Sequence[_Message]) -> list[Prediction]:
        """``score`` as ``/predict`` calls it; a missing model or store holds the batch (kept claimed) and retries."""
        attempt = 0
        while True:
            try:
                return score(
                    [m.transaction for m in batch if m.transaction is not None],
                    model=self.models.require(),  # read once: the batch uses one model even if a swap happens now
                    features=self.features,
                    contract=self.contract,
                    metrics=self.metrics,
                    monitor=self.monitor,
                )
            except (ModelNotReady, FeatureStoreUnavailable) as error:
                attempt += 1
                reason = "no_model" if isinstance(error, ModelNotReady) else "feature_store"
                if reason == "feature_store":
                    self.metrics.store_errors.inc()
                self.stream_metrics.scoring_retries.labels(reason).inc()
                delay = backoff_s(attempt, base_s=self.stream.backoff_base_s, max_s=self.stream.backoff_max_s)
                _log.warning("cannot score (%s, retrying in %.1f s): %s", reason, delay, error)
                if self._stop.wait(delay):
                    raise _Stopping from error
                self._keep_claimed(batch)
                if reason == "no_model":
                    self._refresh_model()

    def _keep_claimed(self, batch: Sequence[_Message]) -> None:
        """Reset the messages' idle time (no delivery counted): other consumers must not claim a held batch."""
        self._redis(
            lambda: self.redis.xclaim(
                self.stream.input,
                self.stream.group,
                self.stream.consumer,
                min_idle_time=0,
                message_ids=[m.entry_id for m in batch],
                justid=True,
            )
        )

    def _write(self, batch: Sequence[_Message], predictions: Sequence[Prediction]) -> None:
        decided_at = time.time()
        keys: list[str] = [self.stream.output, self.stream.input]
        args: list[Any] = [self.stream.group, self.stream.decided_ttl_s * 1000, self.stream.output_max_len]
        for message, prediction in zip(batch, predictions, strict=True):
            keys.append(decision_key(self.stream.decided_prefix, str(prediction.transaction_id)))  # never None here
            fields = decision_fields(
                prediction.model_dump(mode="json"),
                source_id=message.entry_id,
                consumer=self.stream.consumer,
                event_time_s=message.event_time_s,
                decided_at_s=decided_at,
            )
            items = [item for pair in fields.items() for item in pair]
            args.extend([message.entry_id, len(items), *items])
        outcomes = self._redis(lambda: self._write_and_ack(keys=keys, args=args))
        written_at = time.time()
        for message, written in zip(batch, outcomes, strict=True):
            if written:
                self.stream_metrics.messages.labels("decided").inc()
                self.stream_metrics.decision_latency.observe(max(written_at - message.event_time_s, 0.0))
            else:
                self.stream_metrics.messages.labels("duplicate").inc()

    def _dead_letter(self, message: _Message, reason: str, error: str) -> None:
        fields = dead_letter_fields(
            message.fields, source_id=message.entry_id, error=error, reason=reason, deliveries=message.deliveries
        )

        def move() -> None:
            with self.redis.pipeline(transaction=True) as pipe:  # MULTI: the dead letter and the ack, or neither
                pipe.xadd(self.stream.dead_letters, fields, maxlen=self.stream.output_max_len, approximate=True)
                pipe.xack(self.stream.input, self.stream.group, message.entry_id)
                pipe.execute()

        self._redis(move)
        self.stream_metrics.dead_letters.labels(reason).inc()
        self.stream_metrics.messages.labels("dead_letter").inc()
        _log.warning("message %s to the dead letters (%s): %s", message.entry_id, reason, error)


def run(settings: Settings | None = None, serving: ServingSettings | None = None) -> int:
    """Build the scorer from the environment, serve its /metrics, score until SIGTERM/SIGINT."""
    serving = serving or ServingSettings()
    stream = StreamSettings()
    logs.configure(serving.log_level, json_logs=serving.json_logs)
    scorer = StreamScorer(settings or Settings(), serving, stream)

    def stopped(signum: int, frame: FrameType | None) -> None:
        _log.info("signal %d: finishing the batch in hand", signum)
        scorer.stop()

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    server = None
    if stream.metrics_port:
        server, _ = start_http_server(stream.metrics_port, stream.metrics_host, registry=scorer.metrics.registry)
    try:
        return scorer.run()
    finally:
        if server is not None:
            server.shutdown()
