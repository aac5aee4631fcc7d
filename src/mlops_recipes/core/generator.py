"""Seeded synthetic card transactions with a learnable fraud signal.

Legitimate spending follows each customer's own habits (amount level, activity rate, daytime hours, mostly
point-of-sale). Fraud arrives as episodes on compromised cards: a burst of transactions minutes apart,
amounts far above the customer's norm, often at risky merchants, online, at night. New accounts are more
likely to be compromised. Legitimate bursts and a little label noise keep the problem from being trivial.
The drift knobs in :class:`~mlops_recipes.params.DriftParams` shift amounts, fraud volume and channel mix.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mlops_recipes.params import DataParams

# The demo's channel values (the demo contract, ``contract.yaml``, declares the same domain).
CHANNELS = ("pos", "online", "atm")
TRANSACTION_COLUMNS = (
    "transaction_id",
    "event_timestamp",
    "customer_id",
    "merchant_id",
    "amount",
    "channel",
    "account_created_at",
    "is_fraud",
)
_SECONDS_PER_DAY = 86_400
# Share of legitimate activity per UTC hour: quiet at night, busy in the day and evening.
_LEGIT_HOURS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5, 5.5, 6, 6.5, 7, 6.5, 5, 4, 3, 2]
)
# Fraud episodes start mostly at night.
_FRAUD_HOURS = np.array([6, 7, 7, 7, 6, 5, 3, 2, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 2, 2, 2.5, 3, 4, 5, 6])


def window_end(params: DataParams, *, today: dt.date | None = None) -> pd.Timestamp:
    """Exclusive end of the generated window: midnight UTC after ``end_date`` (or today)."""
    day = params.end_date or today or dt.datetime.now(dt.UTC).date()
    return pd.Timestamp(day, tz="UTC")


def _hours_to_seconds(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    hours = rng.choice(24, size=size, p=weights / weights.sum())
    return hours * 3600 + rng.integers(0, 3600, size=size)


def generate_transactions(params: DataParams, *, today: dt.date | None = None) -> pd.DataFrame:
    """Generate the raw transaction table described by ``params`` (deterministic for a seed and end date)."""
    rng = np.random.default_rng(params.seed)
    end = window_end(params, today=today)
    start = end - pd.Timedelta(days=params.days)
    start_s = start.value // 1_000_000_000
    window_s = params.days * _SECONDS_PER_DAY
    n_cust, n_merch = params.n_customers, params.n_merchants
    drift = params.drift

    # Customers: account age, spending level, activity rate.
    is_new = rng.random(n_cust) < params.new_account_share
    created_s = np.where(
        is_new,
        start_s + rng.integers(0, max(window_s - _SECONDS_PER_DAY, 1), n_cust),
        start_s - rng.integers(30 * _SECONDS_PER_DAY, 3 * 365 * _SECONDS_PER_DAY, n_cust),
    )
    typical_amount = np.exp(rng.normal(np.log(40.0), 0.6, n_cust))
    daily_rate = rng.gamma(2.0, params.txns_per_customer_day / 2.0, n_cust)

    # Merchants: popularity and a hidden risk flag.
    risky = rng.random(n_merch) < params.risky_merchant_share
    popularity = rng.pareto(1.2, n_merch) + 1.0
    popularity[risky] *= 0.3
    popularity /= popularity.sum()
    risky_ids = np.flatnonzero(risky)
    if risky_ids.size == 0:
        risky_ids = np.array([rng.integers(n_merch)])

    online_p = float(np.clip(0.35 + drift.online_share_shift, 0.0, 0.9))
    legit_channel_p = np.array([0.95 - online_p, online_p, 0.05])

    # Legitimate transactions: Poisson counts per customer over the part of the window the account exists, spread
    # evenly over it, up to and including the last day (the window's end must look like its middle).
    active_from_c = np.maximum(created_s, start_s) - start_s
    counts = rng.poisson(daily_rate * (window_s - active_from_c) / _SECONDS_PER_DAY)
    cust = np.repeat(np.arange(n_cust), counts)
    active_from = active_from_c[cust]
    day = (active_from + rng.random(cust.size) * (window_s - active_from)).astype(np.int64) // _SECONDS_PER_DAY
    legit_t = start_s + day * _SECONDS_PER_DAY + _hours_to_seconds(rng, _LEGIT_HOURS, cust.size)
    legit_t = np.maximum(legit_t, created_s[cust])
    legit_amount = typical_amount[cust] * np.exp(rng.normal(0.0, 0.5, cust.size))
    legit_merchant = rng.choice(n_merch, size=cust.size, p=popularity)
    legit_channel = rng.choice(3, size=cust.size, p=legit_channel_p)

    # Legitimate bursts (a shopping spree) so that bursts alone do not mean fraud.
    # Bursts are drawn in proportion to the time an account exists in the window, then at a uniform time of that
    # life: the burst rate per existing account stays even over the window (late accounts do not pile up at the end).
    exposure = (window_s - active_from_c) / window_s
    spree_cust = np.flatnonzero(rng.random(n_cust) < 0.3 * exposure)
    spree = _bursts(rng, spree_cust, created_s, start_s, window_s, hours=_LEGIT_HOURS, mean_size=2.0)
    spree_amount = typical_amount[spree[0]] * np.exp(rng.normal(0.0, 0.5, spree[0].size))
    spree_merchant = rng.choice(n_merch, size=spree[0].size, p=popularity)
    spree_channel = rng.choice(3, size=spree[0].size, p=legit_channel_p)

    # Fraud episodes on compromised cards; new accounts are three times as likely to be hit.
    weights = np.where(is_new, 3.0, 1.0) * exposure
    n_comp = min(n_cust, round(params.compromised_share * drift.fraud_multiplier * n_cust))
    comp_cust = rng.choice(n_cust, size=n_comp, replace=False, p=weights / weights.sum())
    fraud_cust, fraud_t = _bursts(rng, comp_cust, created_s, start_s, window_s, hours=_FRAUD_HOURS, mean_size=4.0)
    fraud_amount = typical_amount[fraud_cust] * np.exp(rng.normal(np.log(4.0), 0.7, fraud_cust.size))
    fraud_merchant = np.where(
        rng.random(fraud_cust.size) < 0.6,
        rng.choice(risky_ids, size=fraud_cust.size),
        rng.choice(n_merch, size=fraud_cust.size, p=popularity),
    )
    fraud_channel = rng.choice(3, size=fraud_cust.size, p=np.array([0.1, 0.75, 0.15]))

    label = np.concatenate(
        [np.zeros(cust.size + spree[0].size, dtype=np.int64), np.ones(fraud_cust.size, dtype=np.int64)]
    )
    noise = rng.random(label.size) < 0.0005  # a little label noise, as in real chargeback data
    label = np.where(noise, 1 - label, label)

    customer_idx = np.concatenate([cust, spree[0], fraud_cust])
    seconds = np.concatenate([legit_t, spree[1], fraud_t])
    amount = np.concatenate([legit_amount, spree_amount, fraud_amount]) * drift.amount_scale
    frame = pd.DataFrame(
        {
            "event_timestamp": pd.to_datetime(seconds, unit="s", utc=True),
            "customer_id": customer_idx.astype(np.int64) + 1,
            "merchant_id": np.concatenate([legit_merchant, spree_merchant, fraud_merchant]).astype(np.int64) + 1,
            "amount": np.round(np.clip(amount, 0.5, None), 2),
            "channel": np.asarray(CHANNELS)[np.concatenate([legit_channel, spree_channel, fraud_channel])],
            "account_created_at": pd.to_datetime(created_s[customer_idx], unit="s", utc=True),
            "is_fraud": label,
        }
    )
    in_window = (frame["event_timestamp"] >= start) & (frame["event_timestamp"] < end)
    frame = frame.loc[in_window].sort_values(["event_timestamp", "customer_id"], kind="stable")
    frame.insert(0, "transaction_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame.reset_index(drop=True)[list(TRANSACTION_COLUMNS)]


def _bursts(
    rng: np.random.Generator,
    customers: np.ndarray,
    created_s: np.ndarray,
    start_s: int,
    window_s: int,
    *,
    hours: np.ndarray,
    mean_size: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One burst per customer: 2 + Poisson(mean_size - 2) transactions minutes apart.

    A burst starts on any calendar day from the account's first to the window's last; one that runs past the
    end is cut there, as any export of real data cuts it.
    """
    if customers.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    begin = np.maximum(created_s[customers], start_s)
    begin_day = begin - begin % _SECONDS_PER_DAY
    span_days = np.maximum((start_s + window_s - begin_day) // _SECONDS_PER_DAY, 1)
    first_day = (rng.random(customers.size) * span_days).astype(np.int64)
    first = begin_day + first_day * _SECONDS_PER_DAY
    first = np.maximum(first + _hours_to_seconds(rng, hours, customers.size), begin)
    sizes = 2 + rng.poisson(max(mean_size - 2.0, 0.0), customers.size)
    owner = np.repeat(customers, sizes)
    burst_start = np.repeat(first, sizes)
    offsets = rng.exponential(360.0, owner.size).astype(np.int64)
    # Cumulative gaps within each burst (reset at each burst's first transaction).
    position = np.arange(owner.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    offsets[position == 0] = 0
    cumulative = np.cumsum(offsets)
    cumulative -= np.repeat(cumulative[np.cumsum(sizes) - sizes], sizes)
    return owner, burst_start + cumulative
