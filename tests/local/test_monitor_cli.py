"""``python -m pipelines monitor`` against a champion registered in a real MLflow store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipelines.__main__ import main
from tests.fakes import champion_frame, champion_runs_dir, drifted_window, register_champion

ENV = (
    "MLFLOW_TRACKING_URI",
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_TOKEN",
    "KF_PIPELINES_SA_TOKEN_PATH",
    "KUBERNETES_SERVICE_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUD_ML_PROJECT_ID",
)


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    from pipelines.data import generate_churn

    d = tmp_path_factory.mktemp("windows")
    paths = {
        "same": d / "same.csv",
        "drift": d / "drift.csv",
        "unlabelled": d / "unlabelled.parquet",
        "empty": d / "empty.csv",
        "other_schema": d / "other.csv",
    }
    generate_churn(800, seed=3).drop(columns=["churned"]).to_csv(paths["same"], index=False)
    drifted_window(600, seed=5).to_csv(paths["drift"], index=False)
    drifted_window(600, seed=6).drop(columns=["churned"]).to_parquet(paths["unlabelled"])
    generate_churn(10, seed=1).iloc[:0].to_csv(paths["empty"], index=False)
    generate_churn(300, seed=1).rename(columns={"monthly_charges": "charges"}).to_csv(
        paths["other_schema"], index=False
    )
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch):
    """No endpoint, token or tracking URI from the caller's shell; and none leaks out (MLflow exports
    MLFLOW_TRACKING_URI when a URI is set): set-then-delete makes monkeypatch restore the original."""
    for name in ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return Path(champion_runs_dir(tmp_path / "runs"))


def monitor(runs_dir, *args) -> int:
    return main(["monitor", "--runs-dir", str(runs_dir), *args])


def test_no_drift_writes_report_summary_and_metrics(runs_dir, windows, tmp_path, capsys):
    out, prom = tmp_path / "report", tmp_path / "textfile" / "monitor.prom"
    assert (
        monitor(
            runs_dir, "--current", windows["same"], "--out", str(out), "--metrics-file", str(prom)
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "monitor churn-model v1: no drift (performance not measured: no labels); no retraining needed" in text
    assert "decision   none (severity none" in text
    summary = json.load(open(out / "summary.json"))
    assert summary["severity"] == "none" and summary["decision"]["action"] == "none"
    assert summary["champion_version"] == "1" and summary["rows"] == 800
    assert summary["drift"]["share"] < 0.3 and len(summary["drift"]["features"]) == 11
    assert set(summary["drift"]["psi"]) == set(summary["drift"]["features"])
    assert summary["performance"] == {
        "status": "skipped",
        "reason": "the window has no label column 'churned'",
    }
    assert summary["quality"]["evidently"]["row_count"] == 800
    assert "Drift per feature" in (out / "report.html").read_text()
    assert (out / "evidently.html").stat().st_size > 10_000
    metrics = prom.read_text()
    assert 'kfp_tf_gate_monitor_drift_share{model="churn-model"}' in metrics
    # prometheus_client writes label names in sorted order
    [line] = [
        line
        for line in metrics.splitlines()
        if line.startswith('kfp_tf_gate_monitor_feature_drift_score{feature="monthly_charges",')
    ]
    assert 'model="churn-model"' in line
    assert not (runs_dir / "monitor" / "state.json").exists()


def test_drift_dry_run_decides_but_starts_nothing(runs_dir, windows, capsys):
    labelled = windows["drift"]
    args = ["--current", windows["unlabelled"], "--train-data", labelled, "--trigger", "local"]
    # A critical share out of reach: the drift counts as severity low.
    assert monitor(runs_dir, *args, "--dry-run", "--drift-critical", "0.95", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["severity"] == "low" and summary["thresholds"]["drift_share_critical"] == 0.95
    drifted = {f for f, v in summary["drift"]["features"].items() if v["drifted"]}
    assert {"monthly_charges", "tenure_months", "contract"} <= drifted
    assert {"region", "payment_method"}.isdisjoint(drifted)
    assert summary["decision"]["action"] == "trigger"
    assert summary["trigger"] == {"target": "local", "status": "dry-run"}
    assert "dry run: would start a retraining run on local" in summary["decision"]["reasons"]
    assert not (runs_dir / "monitor" / "state.json").exists()
    assert not any(p.name.startswith("retrain-") for p in runs_dir.iterdir())


@pytest.mark.parametrize(
    "window,message",
    [
        ("empty", "has no rows; there is nothing to compare"),
        (
            "other_schema",
            "does not match the champion's schema: it lacks the feature column 'monthly_charges'",
        ),
    ],
)
def test_bad_windows_fail_with_one_sentence(runs_dir, windows, tmp_path, capsys, window, message):
    out = tmp_path / "out"
    assert (
        monitor(runs_dir, "--current", windows[window], "--out", str(out), "--trigger", "local")
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert (
        not (out / "summary.json").exists() and not (runs_dir / "monitor" / "state.json").exists()
    )


def test_missing_window_and_missing_champion(runs_dir, windows, tmp_path, capsys):
    assert monitor(runs_dir, "--current", str(tmp_path / "nope.csv")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert monitor(runs_dir, "--current", windows["same"], "--model-name", "unknown-model") == 2
    assert "has no champion in the registry" in capsys.readouterr().err
    empty = tmp_path / "empty-runs"
    assert main(["monitor", "--runs-dir", str(empty), "--current", windows["same"]]) == 2
    assert "has no champion" in capsys.readouterr().err
    assert not (empty / "mlflow.db").exists(), "a missing registry must not be created by a read"


def test_bad_settings_fail_before_reading_data(runs_dir, windows, capsys):
    assert monitor(runs_dir, "--current", windows["drift"], "--drift-threshold", "2") == 2
    assert "the threshold drift_share must be in (0, 1]" in capsys.readouterr().err
    assert (
        monitor(runs_dir, "--current", windows["drift"], "--trigger", "local", "--param", "epochs")
        == 2
    )
    assert "--param expects NAME=VALUE" in capsys.readouterr().err
    assert monitor(runs_dir, "--current", windows["unlabelled"], "--trigger", "local") == 2
    assert (
        "has no label column 'churned', so a retraining run cannot train on it"
        in capsys.readouterr().err
    )


def test_explicit_reference_table(runs_dir, windows, tmp_path, capsys):
    raw, _, _ = champion_frame(1500, seed=12)
    ref = tmp_path / "reference.parquet"
    raw.to_parquet(ref)
    assert (
        monitor(
            runs_dir,
            "--current",
            windows["same"],
            "--reference",
            str(ref),
            "--json",
            "--model-name",
            "no-champion-needed",
            "--label",
            "churned",
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["reference"] == f"table {ref}" and summary["severity"] == "none"
    assert summary["champion_version"] is None


def test_the_component_runs_the_same_check(runs_dir, windows, tmp_path):
    from kfp.dsl import HTML, Artifact, Metrics

    from components.monitor.component import monitor_data

    def art(cls, name):
        a = cls(name=name, uri=str(tmp_path / name))
        if cls is not Artifact:
            os.makedirs(os.path.dirname(a.path), exist_ok=True)
        return a

    report, drift, summary, metrics = (
        art(HTML, "report.html"),
        art(HTML, "drift.html"),
        art(Artifact, "summary"),
        art(Metrics, "metrics"),
    )
    from components.monitor.policy import component_defaults

    status = monitor_data.python_func(
        current_uri=windows["unlabelled"],
        model_name="churn-model",
        mlflow_tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}",
        report=report,
        drift_report=drift,
        summary=summary,
        metrics=metrics,
        trigger="none",
        **component_defaults(),
    )
    assert status == "not-configured"
    result = json.load(open(os.path.join(summary.path, "summary.json")))
    assert result["severity"] in ("low", "medium")
    assert metrics.metadata["drift_share"] == result["drift"]["share"]
    assert summary.metadata["dedupe_key"] == result["dedupe_key"]
    assert "kfp_tf_gate_monitor_severity" in open(os.path.join(summary.path, "metrics.prom")).read()


@pytest.mark.slow
def test_decay_of_a_real_champion_is_measured(tmp_path, monkeypatch, capsys):
    """One small Keras model: the AUC at training against the AUC on a window whose labels lost their signal."""
    import numpy as np

    from components._shared import io
    from components._shared.metrics import fast_auc
    from components._shared.scoring import score
    from components.engineer.core import fit_transform_spec
    from components.train.core import TrainConfig, train
    from pipelines.data import generate_churn

    raw, encoded, schema = champion_frame(2400, seed=11)
    tr, ev, te = encoded.iloc[:1600], encoded.iloc[1600:2000], encoded.iloc[2000:]
    io.write_parquet(tr, str(tmp_path / "train.parquet"))
    io.write_parquet(ev, str(tmp_path / "eval.parquet"))
    spec = fit_transform_spec(tr, schema)
    model_dir = str(tmp_path / "model")
    train(
        str(tmp_path / "train.parquet"),
        str(tmp_path / "eval.parquet"),
        spec,
        model_dir,
        TrainConfig(epochs=4, batch_size=128, learning_rate=0.01),
    )
    auc_at_training = fast_auc(te["churned"].to_numpy(), score(model_dir, te))
    runs = tmp_path / "runs"
    runs.mkdir()
    register_champion(
        f"sqlite:///{runs / 'mlflow.db'}",
        "churn-model",
        train=tr,
        schema=schema,
        auc=auc_at_training,
        model_dir=model_dir,
    )
    window = generate_churn(800, seed=21)
    window["churned"] = np.random.default_rng(0).permutation(window["churned"].to_numpy())
    path = tmp_path / "window.csv"
    window.to_csv(path, index=False)
    capsys.readouterr()  # Keras' progress output
    assert main(["monitor", "--runs-dir", str(runs), "--current", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    perf = summary["performance"]
    assert perf["status"] == "ok" and perf["rows"] == 800
    assert perf["auc_at_training"] == pytest.approx(auc_at_training) and auc_at_training > 0.65
    assert abs(perf["auc"] - 0.5) < 0.1
    assert perf["decay"] == pytest.approx(auc_at_training - perf["auc"])
    assert summary["severity"] == "high" and any(
        "AUC fell by" in r for r in summary["decision"]["reasons"]
    )
