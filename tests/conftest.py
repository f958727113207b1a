"""Shared fixtures: small deterministic data, a fresh MLflow store per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def churn_df():
    from pipelines.data import generate_churn

    return generate_churn(3000, seed=11)


@pytest.fixture
def churn_csv(tmp_path, churn_df):
    path = tmp_path / "churn.csv"
    churn_df.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def tracking_uri(tmp_path):
    """A fresh SQLite MLflow store whose artifacts stay under tmp_path."""
    from components._shared import registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry.configure(uri, "test-model", artifact_location=str(tmp_path / "mlartifacts"))
    return uri
