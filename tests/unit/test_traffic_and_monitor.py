"""The drift demo's traffic (knobs applied as the generator does) and the monitor flow's pure parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.monitor import PrometheusUnavailable, cooldown_key, firing_retrain_alerts
from mlops_recipes.contract import demo_contract
from mlops_recipes.monitoring.traffic import live_transactions
from mlops_recipes.params import DriftParams

pytestmark = pytest.mark.unit

DEMO = demo_contract()  # the demo's columns and channel values


@pytest.fixture
def recent() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 4_000
    return pd.DataFrame(
        {
            "customer_id": rng.integers(1, 50, n),
            "merchant_id": rng.integers(1, 10, n),
            "amount": rng.lognormal(3, 1, n),
            "channel": rng.choice(["pos", "online", "atm"], n, p=[0.55, 0.35, 0.10]),
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400 * 7, n), "s"),
            "is_fraud": rng.random(n) < 0.02,
        }
    )


def _shares(rows: list[dict[str, object]]) -> tuple[float, float, float]:
    online = np.mean([r["channel"] == "online" for r in rows])
    fraud = np.mean([r["is_fraud"] for r in rows])
    amount = float(np.median([r["amount"] for r in rows]))  # type: ignore[type-var]
    return float(online), float(fraud), amount


def test_unshifted_traffic_keeps_the_mix_and_is_timed_within_the_last_day(recent: pd.DataFrame) -> None:
    rows = live_transactions(recent, DriftParams(), DEMO, rows=3_000, seed=1)
    online, fraud, amount = _shares(rows)
    assert online == pytest.approx(0.35, abs=0.03)
    assert fraud == pytest.approx(0.02, abs=0.01)
    assert amount == pytest.approx(float(recent["amount"].median()), rel=0.1)
    now = pd.Timestamp.now(tz="UTC")
    stamps = pd.to_datetime([r["event_timestamp"] for r in rows], utc=True)
    assert (stamps <= now).all()  # the service refuses events from the future (beyond its clock skew)
    assert (stamps > now - pd.Timedelta(days=1)).all()
    assert len({stamp.hour for stamp in stamps}) > 12  # at the transactions' times of day, spread over the day
    assert len({r["transaction_id"] for r in rows}) == len(rows)
    assert all("is_fraud" in r for r in rows)


def test_drift_knobs_shift_amounts_channel_and_fraud(recent: pd.DataFrame) -> None:
    rows = live_transactions(
        recent, DriftParams(amount_scale=3.0, online_share_shift=0.3, fraud_multiplier=5.0), DEMO, rows=3_000, seed=1
    )
    online, fraud, amount = _shares(rows)
    assert online == pytest.approx(0.65, abs=0.04)
    assert fraud == pytest.approx(5 * 0.02 / (1 + 4 * 0.02), abs=0.03)
    assert amount == pytest.approx(3 * float(recent["amount"].median()), rel=0.15)
    fewer_online, _, _ = _shares(
        live_transactions(recent, DriftParams(online_share_shift=-0.3), DEMO, rows=3_000, seed=1)
    )
    assert fewer_online == pytest.approx(0.05, abs=0.03)


def test_nothing_to_replay_is_a_clear_error(recent: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no recent transactions"):
        live_transactions(recent.iloc[:0], DriftParams(), DEMO, rows=10, seed=1)


def test_one_retrain_per_cooldown_period() -> None:
    hour = 3600.0
    assert cooldown_key("retrain/x", 24, now=1 * hour) == cooldown_key("retrain/x", 24, now=23 * hour)
    assert cooldown_key("retrain/x", 24, now=23 * hour) != cooldown_key("retrain/x", 24, now=25 * hour)
    assert cooldown_key("retrain/x", 24, now=hour) != cooldown_key("retrain/y", 24, now=hour)


def test_prometheus_down_is_an_error_not_a_quiet_no() -> None:
    with pytest.raises(PrometheusUnavailable, match="cannot read alerts"):
        firing_retrain_alerts.fn("http://127.0.0.1:9")  # discard port: nothing listens
