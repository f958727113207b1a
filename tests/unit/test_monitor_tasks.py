"""The monitor per task type (issue 15): decay of the task's primary metric on a labelled window,
scored by a small real model trained here on scikit-learn's own data (load_wine multiclass,
load_diabetes regression); the "at training" values are the model's evaluation metrics, as
``reports/evaluation.json`` holds them. Policy thresholds per task, summary, report, Prometheus.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from components._shared.errors import ConfigError
from components.monitor.core import Outputs, run_metrics, run_monitor
from components.monitor.outputs import prometheus_text, report_html
from components.monitor.performance import performance
from components.monitor.policy import Thresholds, assess
from components.monitor.reference import Reference


def _trained(df: pd.DataFrame, label: str, task: str, out_dir: str):
    from components._shared.schema import infer_schema
    from components.engineer.core import fit_transform_spec
    from components.evaluate.core import evaluate
    from components.ingest.core import ingest
    from components.train.core import TrainConfig, train

    os.makedirs(out_dir, exist_ok=True)
    src = os.path.join(out_dir, "data.csv")
    df.to_csv(src, index=False)
    paths = {s: os.path.join(out_dir, f"{s}.parquet") for s in ("train", "eval", "test")}
    info = ingest(src, label, paths["train"], paths["eval"], paths["test"], id_column="none", task=task).to_dict()
    tr = io.read_parquet(paths["train"])
    schema = infer_schema(tr, label, info["positive_label"])
    schema["task"] = info["task"]
    spec = fit_transform_spec(tr, schema)
    model_dir = os.path.join(out_dir, "model")
    train(paths["train"], paths["eval"], spec, model_dir,
          TrainConfig(epochs=25, batch_size=32, learning_rate=0.01, hidden_units=(16,), early_stopping_patience=5))
    metrics = evaluate(model_dir, paths["test"], paths["eval"]).to_dict()["metrics"]
    reference = Reference(schema=schema, data=tr, source=f"test {task} champion", model_name="m", version="1",
                          fetch_model=lambda dest: model_dir, training_metrics=metrics)
    test = io.read_parquet(paths["test"])  # as a window arrives: plain values, not pandas categories
    return reference, test.astype({c: object for c in test.columns if test[c].dtype == "category"}), metrics


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    df["cultivar"] = df["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    return _trained(df, "cultivar", "multiclass", str(tmp_path_factory.mktemp("wine")))


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True, scaled=False).frame
    return _trained(df, "target", "regression", str(tmp_path_factory.mktemp("diabetes")))


def _perf(reference, window, tmp_path):
    return performance(window, reference, str(tmp_path))


# --------------------------------------------------------------------------- multiclass


def test_multiclass_decay_is_the_macro_auc_drop(wine, tmp_path):
    reference, test, metrics = wine
    same = _perf(reference, test, tmp_path)
    assert same["status"] == "ok" and same["task"] == "multiclass" and same["metric"] == "macro_auc"
    assert same["macro_auc_at_training"] == pytest.approx(metrics["macro_auc"])
    assert same["decay"] == pytest.approx(0.0, abs=1e-6)  # the same rows: no decay
    assert same["accuracy"] == pytest.approx(metrics["accuracy"]) and same["warnings"] == []
    assert assess(0.0, same["decay"], Thresholds(), "multiclass").severity == "none"

    # Labels no longer follow the features: the model ranks no better than chance.
    rng = np.random.default_rng(0)
    shuffled = pd.concat([test] * 3, ignore_index=True)
    shuffled["cultivar"] = rng.permutation(shuffled["cultivar"].to_numpy())
    bad = _perf(reference, shuffled, tmp_path)
    assert bad["decay"] > 0.2 and bad["macro_auc"] < 0.75, bad
    a = assess(0.0, bad["decay"], Thresholds(), "multiclass")
    assert a.severity == "high" and "macro AUC fell by" in a.reasons[0]


def test_an_unknown_class_in_the_window_is_a_warning(wine, tmp_path):
    reference, test, _ = wine
    window = test.copy()
    window.loc[:4, "cultivar"] = "nebbiolo"
    perf = _perf(reference, window, tmp_path)
    assert perf["status"] == "ok" and perf["rows"] == len(window) - 5
    assert len(perf["warnings"]) == 1 and "'nebbiolo'" in perf["warnings"][0]
    assert "Warning: 5 window row(s) have a class" in report_html(_summary(perf, "multiclass"))
    only_new = window.assign(cultivar="nebbiolo")
    skipped = _perf(reference, only_new, tmp_path)
    assert skipped["status"] == "skipped" and "known class" in skipped["reason"]


# --------------------------------------------------------------------------- regression


def test_regression_decay_is_the_relative_rmse_rise(diabetes, tmp_path):
    reference, test, metrics = diabetes
    same = _perf(reference, test, tmp_path)
    assert same["status"] == "ok" and same["task"] == "regression" and same["metric"] == "rmse"
    assert same["rmse_at_training"] == pytest.approx(metrics["rmse"])
    assert same["rmse_ratio"] == pytest.approx(1.0, abs=1e-6) and abs(same["decay"]) < 1e-6
    assert assess(0.0, same["decay"], Thresholds(), "regression").severity == "none"

    shifted = test.assign(target=test["target"] + 2 * metrics["rmse"])  # the world moved by two RMSEs
    bad = _perf(reference, shifted, tmp_path)
    assert bad["rmse_ratio"] > 1.25 and bad["decay"] == pytest.approx(bad["rmse_ratio"] - 1)
    a = assess(0.0, bad["decay"], Thresholds(), "regression")
    assert a.severity == "high" and "RMSE rose" in a.reasons[0]

    text = shifted.astype({"target": object})
    text.loc[0, "target"] = "n/a"
    perf = _perf(reference, text, tmp_path)
    assert perf["rows"] == len(text) - 1 and "not a finite number" in perf["warnings"][0]


def test_no_training_metric_means_no_decay(diabetes, tmp_path):
    reference, test, _ = diabetes
    bare = Reference(**{**reference.__dict__, "training_metrics": {"auc": 0.9}})
    perf = _perf(bare, test, tmp_path)
    assert perf["status"] == "skipped" and "no training RMSE" in perf["reason"]


# --------------------------------------------------------------------------- policy + outputs


def test_task_thresholds_defaults_and_validation():
    t = Thresholds()
    assert (t.auc_decay, t.auc_decay_critical) == (0.03, 0.08)  # binary unchanged
    assert (t.macro_auc_decay, t.macro_auc_decay_critical) == (0.03, 0.08)
    assert (t.rmse_increase, t.rmse_increase_critical) == (0.10, 0.25)
    for kwargs, name in [({"macro_auc_decay": 0}, "macro_auc_decay"),
                         ({"macro_auc_decay": 0.1, "macro_auc_decay_critical": 0.05}, "macro_auc_decay_critical"),
                         ({"rmse_increase": -0.1}, "rmse_increase"),
                         ({"rmse_increase": 0.3, "rmse_increase_critical": 0.2}, "rmse_increase_critical")]:
        with pytest.raises(ConfigError, match=name):
            Thresholds(**kwargs)
    assert assess(0.0, 0.12, t, "regression").severity == "medium"  # 12 % worse: over 10 %, under 25 %
    assert assess(0.0, 0.12, t, "binary").severity == "high"  # the same number as an AUC drop
    assert assess(0.35, 0.05, t, "regression").severity == "low"  # drifted, RMSE within 10 %


def _summary(perf: dict, task: str) -> dict:
    return {
        "model_name": "m", "task": task, "generated_at": "2026-06-01T12:00:00+00:00", "rows": 100,
        "severity": "medium", "thresholds": {"drift_share": 0.3}, "current": "w.parquet",
        "reference": "r", "dedupe_key": "k", "drift": {"share": 0.1, "features": {}, "psi": {}},
        "performance": perf, "trigger": {"status": "none"}, "decision": {"reasons": []},
    }  # fmt: skip


def test_report_html_reads_as_words_and_tables_not_json():
    summary = {**_summary({"status": "skipped", "reason": "the window has no label column 'y'"}, "binary"),
               "severity": "none"}
    html = report_html(summary)
    assert "<h1>Monitor m: no drift (performance not measured: no labels); no retraining needed</h1>" in html
    assert "severity none" not in html
    summary.update(severity="medium", trigger={
        "status": "started", "promoted": True, "model_version": None, "run_id": "r-1",
        "arguments": {"epochs": 3, "data_uri": "gs://b/w.csv"}, "url": "https://kfp.example/#/runs/details/r-1"})
    html = report_html(summary)
    assert "<h1>Monitor m: medium severity; retraining run started</h1>" in html
    assert "<tr><th>promoted</th><td>yes</td></tr>" in html and "<tr><th>model_version</th><td>n/a</td></tr>" in html
    assert "<tr><th>epochs</th><td>3</td></tr>" in html and '<a href="https://kfp.example/#/runs/details/r-1">' in html
    for json_text in ("&#34;", "&quot;", "null", "true", "{&#39;", "{'"):
        assert json_text not in html, json_text


def test_prometheus_names_per_task():
    mc = prometheus_text(_summary({"status": "ok", "metric": "macro_auc", "macro_auc": 0.8,
                                   "macro_auc_at_training": 0.9, "decay": 0.1, "accuracy": 0.7,
                                   "accuracy_at_training": 0.8}, "multiclass"))
    assert 'kfp_tf_gate_monitor_macro_auc{model="m",window="training"} 0.9' in mc
    assert 'kfp_tf_gate_monitor_macro_auc_decay{model="m"} 0.1' in mc
    assert "kfp_tf_gate_monitor_accuracy{" in mc and "kfp_tf_gate_monitor_auc_decay" not in mc
    rg = prometheus_text(_summary({"status": "ok", "metric": "rmse", "rmse": 60.0, "rmse_at_training": 50.0,
                                   "rmse_ratio": 1.2, "decay": 0.2}, "regression"))
    assert 'kfp_tf_gate_monitor_rmse{model="m",window="current"} 60.0' in rg
    assert 'kfp_tf_gate_monitor_rmse_ratio{model="m"} 1.2' in rg
    assert 'kfp_tf_gate_monitor_rmse_increase{model="m"} 0.2' in rg and "auc_decay" not in rg
    binary = prometheus_text(_summary({"status": "ok", "auc": 0.7, "auc_at_training": 0.8, "decay": 0.1}, "binary"))
    assert 'kfp_tf_gate_monitor_auc_decay{model="m"} 0.1' in binary and "macro_auc" not in binary
    assert "RMSE now 60 on" in report_html(_summary({"status": "ok", "metric": "rmse", "rmse": 60.0,
                                                     "rmse_at_training": 50.0, "rmse_ratio": 1.2, "decay": 0.2,
                                                     "rows": 100}, "regression"))


def test_run_monitor_reports_the_task_decay(wine, tmp_path):
    reference, test, _ = wine
    window = pd.concat([test] * 4, ignore_index=True)  # over min_rows
    window["cultivar"] = np.random.default_rng(1).permutation(window["cultivar"].to_numpy())
    path = tmp_path / "window.parquet"
    window.to_parquet(path)
    d = tmp_path / "out"
    d.mkdir()
    outputs = Outputs(str(d / "summary.json"), str(d / "report.html"), str(d / "drift.html"), str(d / "m.prom"))
    summary = run_monitor(str(path), reference, outputs, Thresholds(), dry_run=True)
    written = json.loads((d / "summary.json").read_text())
    assert written["task"] == "multiclass" and written["severity"] == "high"
    assert written["thresholds"]["macro_auc_decay"] == 0.03 and written["performance"]["metric"] == "macro_auc"
    assert any("macro AUC fell by" in r for r in written["decision"]["reasons"])
    assert "Macro AUC now" in (d / "report.html").read_text()
    assert "kfp_tf_gate_monitor_macro_auc_decay{" in (d / "m.prom").read_text()
    m = run_metrics(summary)
    assert m["macro_auc_decay"] == pytest.approx(summary["performance"]["decay"]) and "auc_decay" not in m
