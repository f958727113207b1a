"""Shared fixtures: small deterministic data, a fresh MLflow store per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True)
def _fresh_aiplatform_config():
    """``aiplatform.init`` (the product calls it inside a task) sets process-wide defaults:
    project, location, endpoint, credentials. A test that drives Vertex code against a stand-in
    must not leave them to the next test (which would then reach for the network instead of
    failing on missing credentials), so each test ends with aiplatform's pristine config.
    Costs nothing when no test imported aiplatform."""
    import sys

    yield
    initializer = sys.modules.get("google.cloud.aiplatform.initializer")
    if initializer is not None:
        config = initializer.global_config
        vars(config).clear()
        vars(config).update(vars(type(config)()))


@pytest.fixture(scope="session")
def churn_df():
    from pipelines.data import generate_churn

    return generate_churn(3000, seed=11)


@pytest.fixture
def churn_csv(tmp_path, churn_df):
    path = tmp_path / "churn.csv"
    churn_df.to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="session")
def _registry_template(tmp_path_factory):
    """An empty MLflow SQLite store with the test-model experiment, built once (creating the
    tables takes seconds; copying the file takes milliseconds)."""
    from components._shared import registry

    d = tmp_path_factory.mktemp("mlflow-template")
    registry.configure(f"sqlite:///{d / 'mlflow.db'}", "test-model", artifact_location=str(d / "mlartifacts"))
    return d / "mlflow.db"


@pytest.fixture
def tracking_uri(_registry_template, tmp_path):
    """A fresh SQLite MLflow store per test (model name "test-model"; artifacts stay in tmp)."""
    import shutil

    from components._shared import registry

    db = tmp_path / "mlflow.db"
    shutil.copy(_registry_template, db)
    uri = f"sqlite:///{db}"
    registry.configure(uri, "test-model")
    return uri
