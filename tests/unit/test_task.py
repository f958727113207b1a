"""The task table (_shared/task.py), task labels and the multiclass / regression metrics: no TensorFlow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components._shared.errors import DataError
from components._shared.labels import labels
from components._shared.metrics import bootstrap_loss_diff, multiclass_metrics, regression_metrics
from components._shared.task import TASKS, infer_task, label_spec, task_of


@pytest.mark.parametrize("values, expected", [
    (["a", "b", "a"], "binary"),
    ([0, 1, 1, 0], "binary"),
    (["x", "y", "z", "x"], "multiclass"),
    ([True, False, True], "binary"),
    ([0.5, 1.25, 3.0, 7.5], "regression"),
    (list(range(100)), "regression"),
])
def test_auto_infers_the_task_from_the_label(values, expected):
    task, reason = infer_task(pd.Series(values), "y")
    assert task == expected and expected in reason


def test_auto_refuses_to_guess_for_a_few_integers():
    with pytest.raises(DataError, match=r"6 integer values \(0 to 5\).*--task multiclass or --task regression"):
        infer_task(pd.Series([0, 1, 2, 3, 4, 5] * 3), "rating")
    assert infer_task(pd.Series([0, 1, 2, 3, 4, 5]), "rating", "multiclass")[0] == "multiclass"


def test_unknown_task_names_the_choices():
    with pytest.raises(DataError, match="auto, binary, multiclass or regression"):
        infer_task(pd.Series([1.0, 2.0]), "y", "ordinal")


def test_a_spec_without_a_task_is_binary():
    assert task_of({}).name == "binary" and task_of({"task": "regression"}).primary == "rmse"
    assert TASKS["multiclass"].improvement(0.4, 0.5) == pytest.approx(0.1)
    assert TASKS["binary"].improvement(0.8, 0.7) == pytest.approx(0.1)


def test_labels_per_task():
    df = pd.DataFrame({"y": ["b", "c", "a", "b"]})
    spec = {"label": "y", **label_spec(df["y"], "multiclass", "y")}
    assert spec["classes"] == ["a", "b", "c"]
    assert labels(df, spec).tolist() == [1, 2, 0, 1]
    with pytest.raises(DataError, match="class 'd' is not one of the model's classes"):
        labels(pd.DataFrame({"y": ["a", "d"]}), spec)
    reg = pd.DataFrame({"y": [1.0, 3.0, 5.0]})
    rspec = {"label": "y", **label_spec(reg["y"], "regression", "y")}
    assert rspec["label_mean"] == pytest.approx(3.0) and rspec["label_std"] == pytest.approx(np.std([1, 3, 5]))
    assert labels(reg, rspec).dtype == np.float32
    assert labels(pd.DataFrame({"y": [0, 1]}), {"label": "y"}).tolist() == [0.0, 1.0]


def test_multiclass_metrics_match_scikit_learn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    logits = rng.normal(size=(500, 3)) + np.eye(3)[y] * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = multiclass_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="weighted"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-6)
    assert m["macro_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["confusion"] == skm.confusion_matrix(y, p.argmax(1)).tolist()
    assert m["per_class"]["b"]["recall"] == pytest.approx(skm.recall_score(y, p.argmax(1), average=None)[1])


def test_regression_metrics_match_scikit_learn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 400)
    pred = y + rng.normal(0, 1, 400)
    m = regression_metrics(y, pred)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred))
    assert np.isnan(regression_metrics(np.r_[0.0, y], np.r_[0.0, pred])["mape"])  # undefined with a zero label
    assert m["residual_quantiles"]["q50"] == pytest.approx(np.median(pred - y))


def test_paired_bootstrap_of_the_primary_metric():
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, 2000)
    good, bad = y + rng.normal(0, 0.3, 2000), y + rng.normal(0, 0.6, 2000)
    c = bootstrap_loss_diff("regression", y, good, bad, n_boot=100)
    assert c["metric"] == "rmse" and c["rmse_diff"] < 0 and c["ci_high"] < 0 and c["improvement_low"] > 0
    same = bootstrap_loss_diff("regression", y, good, good, n_boot=50)
    assert same["rmse_diff"] == 0 and same["ci_low"] == 0
    yc = rng.integers(0, 3, 1000)
    p = np.full((1000, 3), 0.2)
    p[np.arange(1000), yc] = 0.6
    u = np.full((1000, 3), 1 / 3)
    mc = bootstrap_loss_diff("multiclass", yc, p, u, n_boot=50)
    assert mc["metric"] == "log_loss" and mc["log_loss_diff"] == pytest.approx(np.log(0.6) * -1 - np.log(3), rel=1e-6)


def test_validate_flags_label_domain_per_task():
    from components.validate.core import label_anomalies

    train = pd.DataFrame({"y": ["a", "b", "a"]})
    found = label_anomalies(train, {"test": pd.DataFrame({"y": ["a", "c"]})}, "y", "multiclass")
    assert [a.kind for a in found] == ["label_domain"] and "'c'" in found[0].message and "test" in found[0].message
    assert label_anomalies(train, {"test": pd.DataFrame({"y": ["a"]})}, "y", "multiclass") == []
    heavy = pd.DataFrame({"y": np.r_[np.ones(500), 1e6]})
    found = label_anomalies(heavy, {"test": pd.DataFrame({"y": [1.0, np.inf]})}, "y", "regression")
    assert {a.kind for a in found} == {"label_domain", "label_tail"}
    assert next(a for a in found if a.kind == "label_tail").severity == "warning"
    assert label_anomalies(train, {}, "y", None) == []  # binary: unchanged
