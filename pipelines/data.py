"""The embedded default dataset: a realistic, deterministic customer-churn table.

Generated, not downloaded (no network at run time): numeric, categorical, boolean and
date columns, an identifier, missing values, a heavy-tailed column, and a label driven by
a known logistic model so a trained model has real signal to find.
"""

from __future__ import annotations

import os

from components._shared import io

DEFAULT_ROWS = 20_000
LABEL = "churned"
ID_COLUMN = "customer_id"


def generate_churn(n_rows: int = DEFAULT_ROWS, seed: int = 7, label_noise: float = 0.0):
    """Return a churn DataFrame with ``n_rows`` rows (same seed, same table)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = int(n_rows)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.20])
    payment = rng.choice(["electronic-check", "mailed-check", "bank-transfer", "credit-card"], n,
                         p=[0.35, 0.2, 0.22, 0.23])
    internet = rng.choice(["fiber", "dsl", "none"], n, p=[0.45, 0.4, 0.15])
    region = rng.choice(["north", "south", "east", "west", "central"], n)
    tenure = np.clip(rng.gamma(1.6, 16, n), 0, 72).round()
    monthly = np.round(20 + 30 * (internet == "fiber") + 15 * (internet == "dsl") + rng.gamma(2.0, 12, n), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, n), 2)
    support_calls = rng.poisson(1.2 + 1.5 * (internet == "fiber"), n)
    senior = rng.random(n) < 0.16
    data_gb = np.round(rng.lognormal(2.5, 1.1, n), 3)  # heavy-tailed
    signup = np.datetime64("2026-06-30") - (tenure * 30.4).astype("timedelta64[D]")
    logit = (
        -1.3 + 1.25 * (contract == "month-to-month") - 0.9 * (contract == "two-year")
        + 0.55 * (payment == "electronic-check") + 0.5 * (internet == "fiber")
        - 0.045 * tenure + 0.018 * (monthly - 65) + 0.32 * support_calls + 0.35 * senior
        - 0.12 * np.log1p(data_gb)
    )
    p = 1 / (1 + np.exp(-logit))
    churned = rng.random(n) < p
    if label_noise > 0:
        flip = rng.random(n) < label_noise
        churned = np.where(flip, rng.random(n) < churned.mean(), churned)
    df = pd.DataFrame({
        ID_COLUMN: [f"C{i:08d}" for i in rng.permutation(n)],
        "signup_date": pd.to_datetime(signup),
        "tenure_months": tenure.astype("int64"),
        "monthly_charges": monthly,
        "total_charges": total,
        "data_gb": data_gb,
        "support_calls": support_calls.astype("int64"),
        "senior_citizen": senior,
        "contract": contract,
        "payment_method": payment,
        "internet_service": internet,
        "region": region,
        LABEL: np.where(churned, "yes", "no"),
    })
    for col, rate in (("total_charges", 0.02), ("payment_method", 0.03), ("data_gb", 0.05)):
        df.loc[rng.random(n) < rate, col] = None
    return df


def write_default_dataset(path: str, n_rows: int = DEFAULT_ROWS, seed: int = 7) -> str:
    """Write the default dataset as CSV (once: an existing file is reused)."""
    if not os.path.exists(path):
        with io.atomic_path(path) as tmp:
            generate_churn(n_rows, seed).to_csv(tmp, index=False)
    return path
