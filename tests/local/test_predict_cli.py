"""``python -m pipelines predict`` end to end (kfp.local, the runs dir's SQLite registry): one prediction row
per input row for the champion; a table missing a feature exits 2 with one sentence and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.data import generate_churn
from tests.stage_helpers import LABEL, prepare, train_small

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "cli-model"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A runs dir whose registry has a champion: one small model trained and deployed by the cores."""
    from components._shared import registry
    from components._shared.champion import stage_artifacts
    from components.deploy.core import deploy

    root = tmp_path_factory.mktemp("cli")
    runs = root / "runs"
    prepared = prepare(generate_churn(1200, seed=3), str(root / "prep"))
    model_dir = str(root / "model")
    train_small(prepared, model_dir, epochs=1)
    # predict scores with model/ (and checks with data/): the SavedModel only has to be registered, so a
    # stand-in folder spares the export (TensorFlow's SavedModel and TFLite conversions).
    saved = str(root / "saved_model")
    os.makedirs(saved)
    with open(os.path.join(saved, "saved_model.pb"), "wb") as fh:
        fh.write(b"stand-in")
    artifacts = stage_artifacts(str(root / "stage"), model_dir, saved, prepared.schema, prepared.train,
                                {"threshold": 0.5, "metrics": {"auc": 0.8}}, {}, {})
    (runs / "serving").mkdir(parents=True)
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    registry.configure(uri, MODEL)
    deploy(saved, MODEL, uri, str(runs / "serving"), artifacts=artifacts, card="# card\n", verify=lambda path: 0)
    return runs


def _predict(runs_dir, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "pipelines", "predict", "--runs-dir", str(runs_dir),
                           "--model-name", MODEL, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_predict_writes_one_row_per_input_row(runs_dir, tmp_path):
    data = tmp_path / "new.csv"
    generate_churn(900, seed=42).drop(columns=[LABEL]).to_csv(data, index=False)
    out = tmp_path / "predictions"
    proc = _predict(runs_dir, "--data", str(data), "--out", str(out), "--id-column", "customer_id")
    assert proc.returncode == 0, proc.stderr
    assert f"scored 900 rows with {MODEL} v1 (alias champion)" in proc.stdout
    got = pq.read_table(str(out)).to_pandas()
    assert got["customer_id"].tolist() == pd.read_csv(data)["customer_id"].tolist()
    assert got["probability"].between(0, 1).all() and set(got["model_version"]) == {"1"}


def test_a_missing_feature_exits_2_and_writes_nothing(runs_dir, tmp_path):
    data = tmp_path / "bad.csv"
    generate_churn(300, seed=1).drop(columns=["contract"]).to_csv(data, index=False)
    out = tmp_path / "predictions.parquet"
    proc = _predict(runs_dir, "--data", str(data), "--out", str(out), "--version", "1")
    assert proc.returncode == 2
    assert "'contract'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    proc = _predict(runs_dir, "--data", str(data), "--out", str(out), "--version", "7")
    assert proc.returncode == 2 and "has no version 7" in proc.stderr and not out.exists()
