"""Test doubles of what cannot run here (a Kubeflow Pipelines API server) and builders of
realistic fixtures (a champion registered in a real MLflow store)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from typing import Optional

LABEL = "churned"


def champion_frame(n_rows: int = 3000, seed: int = 11):
    """(raw churn frame, frame with the label encoded 0/1, schema) as ingest + validate make them."""
    from components._shared.labels import encode_label
    from components._shared.schema import infer_schema
    from pipelines.data import ID_COLUMN, generate_churn

    raw = generate_churn(n_rows, seed=seed)
    y, pos, neg = encode_label(raw[LABEL], LABEL, None)
    train = raw.copy()
    train[LABEL] = y
    schema = infer_schema(train, LABEL, pos, id_column=ID_COLUMN)
    schema["negative_label"] = neg
    return raw, train, schema


def register_champion(
    tracking_uri: str,
    model_name: str = "test-model",
    n_rows: int = 3000,
    seed: int = 11,
    auc: float = 0.8,
    model_dir: Optional[str] = None,
    train=None,
    schema=None,
    artifact_location: Optional[str] = None,
) -> str:
    """Log data/schema.json, data/reference.parquet, reports/evaluation.json (and model/) in an MLflow
    run, register it as a version of ``model_name`` and point the ``champion`` alias at it.

    Artifacts go to ``artifact_location`` (default: ``mlartifacts`` beside a SQLite store), never
    to the working directory.
    """
    import mlflow

    from components._shared import io, registry

    if train is None or schema is None:
        _, train, schema = champion_frame(n_rows, seed)
    if artifact_location is None and tracking_uri.startswith("sqlite:///"):
        artifact_location = os.path.join(
            os.path.dirname(tracking_uri[len("sqlite:///") :]), "mlartifacts"
        )
    client = registry.configure(tracking_uri, model_name, artifact_location=artifact_location)
    with tempfile.TemporaryDirectory() as tmp:
        io.write_json(schema, os.path.join(tmp, "data", "schema.json"))
        io.write_parquet(
            train.sample(min(len(train), 20_000), random_state=0),
            os.path.join(tmp, "data", "reference.parquet"),
        )
        io.write_json(
            {"metrics": {"auc": auc}, "threshold": 0.5},
            os.path.join(tmp, "reports", "evaluation.json"),
        )
        with mlflow.start_run(run_name=f"register-{model_name}") as run:
            mlflow.log_artifacts(os.path.join(tmp, "data"), artifact_path="data")
            mlflow.log_artifacts(os.path.join(tmp, "reports"), artifact_path="reports")
            if model_dir:
                mlflow.log_artifacts(model_dir, artifact_path="model")
            run_id, artifact_uri = run.info.run_id, run.info.artifact_uri
    try:
        client.create_registered_model(model_name)
    except Exception:  # registered by an earlier call
        pass
    mv = client.create_model_version(model_name, source=f"{artifact_uri}/model", run_id=run_id)
    client.set_registered_model_alias(model_name, "champion", mv.version)
    return str(mv.version)


def drifted_window(n_rows: int = 1000, seed: int = 5):
    """Recent data that moved: higher charges, shorter tenure, more month-to-month contracts."""
    import numpy as np

    from pipelines.data import generate_churn

    df = generate_churn(n_rows, seed=seed)
    rng = np.random.default_rng(seed)
    df["monthly_charges"] = df["monthly_charges"] * 1.6 + 25
    df["total_charges"] = df["total_charges"] * 0.4
    df["tenure_months"] = (df["tenure_months"] * 0.3).astype("int64")
    df["support_calls"] = df["support_calls"] + rng.poisson(3, n_rows)
    df["data_gb"] = df["data_gb"] * 4
    df["contract"] = np.where(rng.random(n_rows) < 0.8, "month-to-month", df["contract"])
    df["internet_service"] = np.where(rng.random(n_rows) < 0.7, "fiber", df["internet_service"])
    return df


@functools.cache
def _champion_store() -> str:
    root = tempfile.mkdtemp(prefix="kfp-tf-gate-champion-")
    atexit.register(shutil.rmtree, root, True)
    register_champion(
        f"sqlite:///{os.path.join(root, 'mlflow.db')}", "churn-model", n_rows=3000, seed=11
    )
    return root


def champion_runs_dir(dest) -> str:
    """A runs dir at ``dest`` whose SQLite registry has a champion ``churn-model`` (data and
    reports, no model). Built once per test process (MLflow's schema setup is slow) and copied;
    the artifacts stay in the shared store, which tests only read."""
    os.makedirs(dest, exist_ok=True)
    shutil.copy(os.path.join(_champion_store(), "mlflow.db"), os.path.join(dest, "mlflow.db"))
    return str(dest)
