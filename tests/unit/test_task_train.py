"""Multiclass and regression end to end through the cores, on scikit-learn's own small datasets
(load_wine, load_diabetes): ingest -> schema -> spec -> train -> evaluate -> compare."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest


def _prepare(df: pd.DataFrame, label: str, out_dir: str, task: str = "auto"):
    from components._shared import io
    from components._shared.schema import infer_schema
    from components.engineer.core import fit_transform_spec
    from components.ingest.core import ingest

    os.makedirs(out_dir, exist_ok=True)
    src = os.path.join(out_dir, "data.csv")
    df.to_csv(src, index=False)
    paths = {s: os.path.join(out_dir, f"{s}.parquet") for s in ("train", "eval", "test")}
    info = ingest(src, label, paths["train"], paths["eval"], paths["test"], id_column="none", task=task).to_dict()
    train = io.read_parquet(paths["train"])
    schema = infer_schema(train, label, info["positive_label"])
    schema["task"] = info["task"]
    return paths, info, fit_transform_spec(train, schema)


def _train(paths, spec, model_dir, **cfg):
    from components.train.core import TrainConfig, train

    return train(paths["train"], paths["eval"], spec, model_dir, TrainConfig(**{"epochs": 60, "batch_size": 32,
                                                                                "early_stopping_patience": 8, **cfg}))


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True)
    df = d.frame.rename(columns={"target": "cultivar"})
    df["cultivar"] = df["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    out = str(tmp_path_factory.mktemp("wine"))
    paths, info, spec = _prepare(df, "cultivar", out)
    result = _train(paths, spec, os.path.join(out, "model"))
    return paths, info, spec, result, os.path.join(out, "model")


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True, scaled=False)
    out = str(tmp_path_factory.mktemp("diabetes"))
    paths, info, spec = _prepare(d.frame, "target", out, task="regression")
    result = _train(paths, spec, os.path.join(out, "model"))
    return paths, info, spec, result, os.path.join(out, "model")


def test_multiclass_trains_a_softmax_head_and_is_evaluated(wine):
    from components._shared.model import load_core_model
    from components.evaluate.core import evaluate, report_markdown

    paths, info, spec, result, model_dir = wine
    assert info["task"] == "multiclass" and "inferred" in info["task_reason"]
    assert spec["task"] == "multiclass" and spec["classes"] == ["barbera", "barolo", "grignolino"]
    core = load_core_model(model_dir)
    assert core.output_shape == (None, 3) and core.layers[-1].name == "probabilities"
    assert "eval_accuracy" in result.metrics
    ev = evaluate(model_dir, paths["test"], paths["eval"])
    assert ev.metrics["accuracy"] >= 0.85, ev.metrics
    assert ev.metrics["macro_auc"] >= 0.95 and ev.metrics["log_loss"] < 0.5
    assert np.array(ev.confusion).shape == (3, 3) and ev.classes == spec["classes"]
    assert np.array(ev.confusion).sum() == ev.metrics["rows"]
    assert "| barolo |" in report_markdown(ev) and ev.to_dict()["task"] == "multiclass"


def test_regression_serves_label_units_and_is_evaluated(diabetes):
    from components._shared.model import load_core_model
    from components.evaluate.core import evaluate, report_markdown

    paths, info, spec, result, model_dir = diabetes
    assert spec["task"] == "regression" and 100 < spec["label_mean"] < 200 and spec["label_std"] > 50
    core = load_core_model(model_dir)
    assert core.output_shape == (None, 1) and core.layers[-1].name == "prediction"
    ev = evaluate(model_dir, paths["test"], paths["eval"])
    m = ev.metrics
    assert m["r2"] >= 0.3 and m["rmse"] < 0.85 * m["label_std"], m
    assert ev.confusion is None and ev.roc is None
    assert "Residuals" in report_markdown(ev)


def test_compare_uses_the_task_primary_metric(wine, diabetes):
    from components.compare.core import Gates, compare
    from components.evaluate.core import evaluate

    for paths, _, spec, _, model_dir in (wine, diabetes):
        ev = evaluate(model_dir, paths["test"], paths["eval"]).to_dict()
        d = compare(model_dir, paths["test"], ev, Gates(), champion_dir=model_dir, champion_version="1", n_boot=50)
        primary = "log_loss" if spec["task"] == "multiclass" else "rmse"
        assert d.comparison["metric"] == primary and d.comparison[f"{primary}_diff"] == 0
        assert not d.promote and any("does not beat the champion" in r for r in d.reasons), d.reasons


def test_a_champion_of_another_task_is_never_compared(wine, diabetes):
    from components.compare.core import Gates, compare
    from components.evaluate.core import evaluate

    paths, _, _, _, model_dir = wine
    ev = evaluate(model_dir, paths["test"], paths["eval"]).to_dict()
    d = compare(model_dir, paths["test"], ev, Gates(), champion_dir=diabetes[4], champion_version="3", n_boot=20)
    assert not d.promote and d.comparison is None
    assert any("regression model" in r and "never compared" in r for r in d.reasons), d.reasons
