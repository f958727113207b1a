"""Shared metrics: checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from components._shared.metrics import (
    best_threshold,
    binary_metrics,
    bootstrap_auc_diff,
    ece,
    fast_auc,
    finite_or_none,
    roc_points,
    slice_metrics,
)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.3
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.2, 3000), 0, 1)
    return y.astype(int), np.round(p, 2)  # rounding creates ties


def test_fast_auc_matches_sklearn_with_ties(scored):
    y, p = scored
    assert fast_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_fast_auc_weights_match_sklearn_sample_weight(scored):
    y, p = scored
    w = np.random.default_rng(1).poisson(1.0, len(y)).astype(float)
    assert fast_auc(y, p, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)


def test_fast_auc_edge_cases():
    assert fast_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert fast_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert fast_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(fast_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(fast_auc([], []))


def test_ece():
    assert ece([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.0
    # One bin at 0.9 whose observed rate is 0.5: error 0.4.
    assert ece([0, 1], [0.9, 0.9]) == pytest.approx(0.4)
    # Two bins, each half the rows: |0 - 0.1| and |1 - 0.8| averaged.
    assert ece([0, 0, 1, 1], [0.1, 0.1, 0.8, 0.8]) == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)
    assert ece([1], [1.0]) == 0.0  # p == 1 falls in the last bin
    assert math.isnan(ece([], []))


def test_best_threshold_maximises_f1(scored):
    y, p = scored
    t = best_threshold(y, p)
    best = max(f1_score(y, p >= c) for c in np.unique(p))
    assert f1_score(y, p >= t) == pytest.approx(best)
    assert best_threshold([1, 1, 1], [0.2, 0.3, 0.4]) == 0.5  # one class: the neutral default


def test_binary_metrics_counts_at_the_threshold():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.1, 0.6, 0.3, 0.7, 0.4, 0.9]
    m = binary_metrics(y, p, threshold=0.5)
    assert m["confusion"] == [[2, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["threshold"] == 0.5 and m["rows"] == 6 and m["positive_rate"] == 0.5
    assert binary_metrics(y, p, threshold=0.35)["confusion"] == [[2, 1], [0, 3]]
    assert binary_metrics(y, p, threshold=0.25)["confusion"] == [[1, 2], [0, 3]]


def test_binary_metrics_with_one_class_has_no_auc_and_no_division_error():
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["auc"]) and math.isnan(m["pr_auc"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert math.isfinite(m["log_loss"])


def test_binary_metrics_log_loss_is_finite_for_hard_wrong_predictions():
    assert math.isfinite(binary_metrics([0, 1], [1.0, 0.0])["log_loss"])


def test_bootstrap_of_identical_predictions_is_zero(scored):
    y, p = scored
    out = bootstrap_auc_diff(y, p, p, n_boot=50)
    assert out == {"auc_diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n_boot": 50, "rows": len(y)}


def test_bootstrap_finds_a_clearly_better_model(scored):
    y, p = scored
    noisy = np.clip(p + np.random.default_rng(3).normal(0, 0.3, len(p)), 0, 1)
    out = bootstrap_auc_diff(y, p, noisy, n_boot=100, seed=1)
    assert out["auc_diff"] == pytest.approx(roc_auc_score(y, p) - roc_auc_score(y, noisy))
    assert 0 < out["ci_low"] <= out["auc_diff"] <= out["ci_high"]
    assert bootstrap_auc_diff(y, p, noisy, n_boot=100, seed=1) == out  # seeded
    reverse = bootstrap_auc_diff(y, noisy, p, n_boot=100, seed=1)
    assert reverse["ci_high"] < 0


def test_bootstrap_subsamples_large_inputs(scored):
    y, p = scored
    out = bootstrap_auc_diff(y, p, p[::-1], n_boot=10, max_rows=500)
    assert out["rows"] == 500


def test_roc_points_are_thinned_and_finite(scored):
    y, p = scored
    fpr, tpr, thr = roc_points(y, p + np.linspace(0, 1e-6, len(p)), max_points=50)
    assert len(fpr) == len(tpr) == len(thr) <= 50
    assert fpr[0] == 0.0 and tpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert all(np.isfinite(thr)) and thr[0] == 1.0
    assert fpr == sorted(fpr) and tpr == sorted(tpr)


def test_slice_metrics_per_group_and_gaps():
    rng = np.random.default_rng(0)
    n = 400
    groups = np.array(["a"] * 200 + ["b"] * 180 + ["tiny"] * 10 + [None] * 10, dtype=object)
    y = rng.integers(0, 2, n)
    p = np.where(groups == "a", y * 0.8 + 0.1, rng.random(n))  # perfect on a, random on b
    out = slice_metrics(y, p, groups, threshold=0.5, min_rows=30)

    assert set(out["slices"]) == {"a", "b"}  # tiny and missing are under min_rows
    assert out["slices"]["a"]["auc"] == 1.0 and out["slices"]["a"]["rows"] == 200
    assert out["auc_gap"] == pytest.approx(1.0 - out["slices"]["b"]["auc"])
    ppr = [s["predicted_positive_rate"] for s in out["slices"].values()]
    assert out["demographic_parity_ratio"] == pytest.approx(min(ppr) / max(ppr))

    with_missing = slice_metrics(y, p, groups, threshold=0.5, min_rows=5)
    assert "<missing>" in with_missing["slices"] and "tiny" in with_missing["slices"]


def test_slice_metrics_single_slice_has_no_gap():
    out = slice_metrics([0, 1] * 30, [0.2, 0.7] * 30, ["x"] * 60, threshold=0.5)
    assert out["auc_gap"] == 0.0 and out["demographic_parity_ratio"] == 1.0


def test_finite_or_none():
    assert finite_or_none(float("nan")) is None
    assert finite_or_none(float("inf")) is None
    assert finite_or_none(None) is None
    assert finite_or_none(np.int64(3)) == 3.0


def test_loggable_keeps_only_finite_numbers():
    """KFP's Metrics metadata is a protobuf Struct: a NaN fails the whole task."""
    from components._shared.metrics import loggable

    values = {"auc": 0.9, "rows": 3, "nan": float("nan"), "inf": float("inf"), "flag": True, "name": "x"}
    assert loggable(values) == {"auc": 0.9, "rows": 3.0}
