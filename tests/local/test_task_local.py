"""The training pipeline under kfp.local per task type, on scikit-learn's own datasets: ingest
infers (or is told) the task, and train, evaluate, export and compare run for it.

The gates are set out of reach so that deploy is skipped: these runs check the training path,
not promotion (see tests/local/test_pipeline_local.py for that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow


def _run(tmp_path, df, *args):
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    out = subprocess.run([sys.executable, "-m", "pipelines", "run", "--data", str(data), "--label", "target",
                          "--runs-dir", str(tmp_path / "runs"), "--id-column", "none", "--epochs", "30", "--json",
                          *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_multiclass_run_on_wine(tmp_path):
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    s = _run(tmp_path, df, "--min-auc", "1.1")
    assert s["challenger"]["task"] == "multiclass" and s["challenger"]["accuracy"] >= 0.85
    assert {"macro_f1", "log_loss", "macro_auc"} <= set(s["challenger"])
    assert not s["promoted"] and any("macro AUC (one-vs-rest)" in r for r in s["reasons"])


def test_regression_run_on_diabetes(tmp_path):
    from sklearn.datasets import load_diabetes

    # typed parameters through kfp.local: a list, a dict, a gate set to none
    s = _run(tmp_path, load_diabetes(as_frame=True, scaled=False).frame, "--task", "regression",
             "--param", "min_r2=2", "--param", "hidden_units=16,8", "--param", "max_rmse=none",
             "--param", 'anomaly_severity={"drift": "warning"}')
    assert s["challenger"]["task"] == "regression" and s["challenger"]["r2"] >= 0.3
    assert {"rmse", "mae", "r2"} <= set(s["challenger"])
    assert not s["promoted"] and any("R² " in r for r in s["reasons"])
    assert not any("RMSE" in r and "maximum" in r for r in s["reasons"])  # max_rmse disabled
    # the list reached train as widths, and MLflow logged it as text, not a Python repr
    import mlflow

    from pipelines.local import default_tracking_uri

    client = mlflow.MlflowClient(default_tracking_uri(str(tmp_path / "runs")))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.data.params["hidden_units"] for r in runs if "hidden_units" in r.data.params] == ["16,8"]
