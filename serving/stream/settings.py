"""Stream scorer settings from the environment (``STREAM_*``); how it scores comes from ``SERVING_*`` as for the API."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_NAME = r"^[A-Za-z0-9_.:{}-]+$"


def _default_consumer() -> str:
    # Unique per process: a restarted scorer is a new consumer, and the old one's pending messages are claimed.
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamSettings(BaseSettings):
    """Where the streams are and how the scorer reads them."""

    model_config = SettingsConfigDict(env_prefix="STREAM_", extra="ignore", frozen=True)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^rediss?://")
    redis_password: SecretStr | None = Field(
        default=None, description="Kept out of the URL so that no log line or process listing shows it."
    )
    input: str = Field(default="transactions", pattern=_NAME, description="The stream of transactions to score.")
    group: str = Field(default="fraud-scorer", pattern=_NAME, description="The consumer group sharing the work.")
    consumer: str = Field(default_factory=_default_consumer, pattern=_NAME)
    output: str = Field(default="decisions", pattern=_NAME, description="The stream decisions are written to.")
    dead_letters: str = Field(default="transactions-dead", pattern=_NAME)
    decided_prefix: str = Field(
        default="decided", pattern=_NAME, description="Prefix of the keys that make decisions idempotent."
    )
    decided_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="How long a decided transaction id is remembered (longer than any retry)."
    )
    output_max_len: int = Field(
        default=1_000_000, ge=1000, description="Approximate length the output stream is trimmed to (XADD MAXLEN ~)."
    )
    start_id: str = Field(
        default="0", pattern=r"^(0|\$|\d+-\d+)$", description="Where a new group starts: 0 (the whole backlog) or $."
    )
    batch_size: int = Field(default=64, ge=1, le=10_000, description="Messages per XREADGROUP: in flight.")
    block_ms: int = Field(default=1000, ge=1, description="How long a read waits for new messages.")
    claim_idle_ms: int = Field(
        default=30_000, ge=100, description="A message pending this long (its consumer died) is claimed by another."
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="A message delivered more often (it kills its scorers) goes to the dead letters."
    )
    backoff_base_s: float = Field(default=0.5, gt=0, description="First wait after Redis or the store failed.")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest wait between such retries.")
    lag_interval_s: float = Field(default=5.0, gt=0, description="How often lag and pending counts are published.")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="/metrics of the scorer; 0: none.")

    @field_validator("redis_password", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value
