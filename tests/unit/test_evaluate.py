"""Evaluate core over synthetic predictions: threshold from eval, test metrics, slices, gaps, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components._shared.metrics import best_threshold, binary_metrics, fast_auc
from components.evaluate.core import evaluate_predictions, report_markdown

SPEC = {
    "label": "churned",
    "numeric": [{"name": "tenure_months"}],
    "categorical": [{"name": "contract"}, {"name": "region"}],
}


@pytest.fixture(scope="module")
def predictions():
    rng = np.random.default_rng(7)
    n_test, n_eval = 1200, 600
    region = rng.choice(["north", "south", "tiny"], n_test, p=[0.5, 0.48, 0.02])
    contract = rng.choice(["monthly", "yearly"], n_test)
    y_test = (rng.random(n_test) < 0.3).astype(int)
    # Informative in the north, pure noise in the south: a large AUC gap by region.
    p_test = np.where(
        region == "north",
        np.clip(0.15 + 0.6 * y_test + rng.normal(0, 0.1, n_test), 0, 1),
        rng.random(n_test),
    )
    y_eval = (rng.random(n_eval) < 0.3).astype(int)
    # On eval the best F1 cut is near 0.7, far from 0.5 and from what the test split would prefer.
    p_eval = np.clip(0.45 + 0.35 * y_eval + rng.normal(0, 0.08, n_eval), 0, 1)
    test_df = pd.DataFrame(
        {
            "region": region,
            "contract": contract,
            "tenure_months": rng.integers(0, 72, n_test),
            "churned": y_test,
        }
    )
    return y_test, p_test, y_eval, p_eval, test_df


def test_threshold_is_chosen_on_eval_and_applied_to_test(predictions):
    y_test, p_test, y_eval, p_eval, test_df = predictions
    ev = evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, SPEC)

    assert ev.threshold == best_threshold(y_eval, p_eval)
    assert ev.threshold != best_threshold(y_test, p_test)
    assert 0.55 < ev.threshold < 0.85
    expected = binary_metrics(y_test, p_test, ev.threshold)
    assert ev.confusion == expected["confusion"]
    for k in ("auc", "f1", "precision", "recall", "accuracy", "ece", "log_loss"):
        assert ev.metrics[k] == pytest.approx(expected[k]), k
    assert ev.metrics["threshold"] == ev.threshold and ev.metrics["rows"] == len(y_test)
    assert "confusion" not in ev.metrics


def test_empty_eval_falls_back_to_half(predictions):
    y_test, p_test, _, _, test_df = predictions
    ev = evaluate_predictions(y_test, p_test, np.array([]), np.array([]), test_df, SPEC)
    assert ev.threshold == 0.5


def test_slices_default_to_categorical_features(predictions):
    y_test, p_test, y_eval, p_eval, test_df = predictions
    ev = evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, SPEC)

    assert set(ev.slices) == {"contract", "region"}
    region = ev.slices["region"]
    assert set(region["slices"]) == {"north", "south"}  # "tiny" has fewer than 30 rows
    north = test_df["region"] == "north"
    assert region["slices"]["north"]["auc"] == pytest.approx(fast_auc(y_test[north], p_test[north]))
    assert region["slices"]["north"]["rows"] == int(north.sum())
    assert region["auc_gap"] > 0.3
    assert ev.metrics["max_auc_gap"] == pytest.approx(max(s["auc_gap"] for s in ev.slices.values()))
    assert ev.metrics["max_auc_gap"] == pytest.approx(region["auc_gap"])
    assert ev.metrics["min_demographic_parity_ratio"] == pytest.approx(
        min(s["demographic_parity_ratio"] for s in ev.slices.values())
    )


def test_explicit_slice_columns_and_min_rows(predictions):
    y_test, p_test, y_eval, p_eval, test_df = predictions
    ev = evaluate_predictions(
        y_test,
        p_test,
        y_eval,
        p_eval,
        test_df,
        SPEC,
        slice_columns=["region", "not_a_column"],
        min_slice_rows=5,
    )
    assert set(ev.slices) == {"region"}
    assert "tiny" in ev.slices["region"]["slices"]


def test_no_slices_means_no_gap(predictions):
    y_test, p_test, y_eval, p_eval, test_df = predictions
    spec = {**SPEC, "categorical": []}
    ev = evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, spec)
    assert ev.slices == {}
    assert ev.metrics["max_auc_gap"] == 0.0 and ev.metrics["min_demographic_parity_ratio"] == 1.0


def test_roc_and_serialisable_result(predictions):
    y_test, p_test, y_eval, p_eval, test_df = predictions
    ev = evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, SPEC)
    fpr, tpr, thr = ev.roc
    assert len(fpr) == len(tpr) == len(thr) <= 200
    d = ev.to_dict()
    assert set(d) == {"metrics", "threshold", "slices"}
    json.dumps(d)  # plain types only: written as the evaluation artifact


def test_report_markdown(predictions):
    y_test, p_test, y_eval, p_eval, test_df = predictions
    ev = evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, SPEC)
    text = report_markdown(ev)
    (tn, fp), (fn, tp) = ev.confusion
    assert text.startswith("# Model evaluation\n")
    assert f"Threshold {ev.threshold:.3f} (max F1 on the eval split); 1200 test rows." in text
    assert f"| auc | {ev.metrics['auc']:.4f} |" in text
    assert f"| neg | {tn} | {fp} |" in text and f"| pos | {fn} | {tp} |" in text
    assert "## Slices by `region` (AUC gap" in text
    assert "| north | " in text
