"""Binary-classification metrics in NumPy only (scikit-learn's import alone costs ~1.5 s;
the tests check these against scikit-learn)."""

from __future__ import annotations

from typing import Optional


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    import numpy as np

    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(y))


def fast_auc(y, p, weights=None) -> float:
    """ROC AUC via ranks (ties averaged); optional per-row weights (for bootstrap)."""
    import numpy as np

    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")
    return _auc_sorted(y[order], p[order], w[order])


def _auc_sorted(y, p, w) -> float:
    """AUC of rows already sorted by score ``p``, with per-row weights ``w``."""
    import numpy as np

    _, start = np.unique(p, return_index=True)
    return _auc_grouped(y, start, w)


def _auc_grouped(y, start, w) -> float:
    """Weighted AUC of score-sorted rows whose tie groups begin at ``start``: each positive is
    credited with the negatives scored below it, and half of those tied with it."""
    import numpy as np

    if len(y) == 0:
        return float("nan")
    wn = np.where(y, 0.0, w)
    wp = w - wn
    group_neg = np.add.reduceat(wn, start)
    group_pos = np.add.reduceat(wp, start)
    neg_below = np.cumsum(group_neg) - group_neg
    num = float(group_pos @ (neg_below + 0.5 * group_neg))
    den = float(wp.sum() * wn.sum())
    return num / den if den > 0 else float("nan")


def bootstrap_auc_diff(y, p_new, p_old, n_boot: int = 200, seed: int = 0, max_rows: int = 200_000) -> dict:
    """Paired bootstrap of AUC(new) - AUC(old) on the same rows (Poisson weights).

    Each model's sort order and tie groups are computed once; a replicate is then a gather,
    two grouped sums and a cumulative sum per model (O(n), no sorting).
    """
    import numpy as np

    y = np.asarray(y, dtype=bool)
    p_new, p_old = np.asarray(p_new, float), np.asarray(p_old, float)
    rng = np.random.default_rng(seed)
    if len(y) > max_rows:
        keep = rng.choice(len(y), max_rows, replace=False)
        y, p_new, p_old = y[keep], p_new[keep], p_old[keep]
    prepared = []
    for p in (p_new, p_old):
        order = np.argsort(p, kind="mergesort")
        _, start = np.unique(p[order], return_index=True)
        prepared.append((order, y[order], start))
    diffs = np.empty(n_boot)
    for b in range(n_boot):
        w = rng.poisson(1.0, len(y)).astype(np.float64)
        (o1, y1, s1), (o2, y2, s2) = prepared
        diffs[b] = _auc_grouped(y1, s1, w[o1]) - _auc_grouped(y2, s2, w[o2])
    point = fast_auc(y, p_new) - fast_auc(y, p_old)
    return {
        "auc_diff": float(point),
        "ci_low": float(np.quantile(diffs, 0.025)),
        "ci_high": float(np.quantile(diffs, 0.975)),
        "n_boot": int(n_boot),
        "rows": int(len(y)),
    }


def _curve(y, p):
    """Cumulative (fp, tp, thresholds) at each distinct score, highest score first."""
    import numpy as np

    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1] if len(p) else np.array([], dtype=int)
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return fp.astype(np.float64), tp.astype(np.float64), p[last]


def roc_curve(y, p):
    """(fpr, tpr, thresholds) like sklearn.metrics.roc_curve(drop_intermediate=False)."""
    import numpy as np

    fp, tp, thr = _curve(y, p)
    fp, tp = np.r_[0.0, fp], np.r_[0.0, tp]
    thr = np.r_[np.inf, thr]
    return fp / max(fp[-1], 1.0), tp / max(tp[-1], 1.0), thr


def average_precision(y, p) -> float:
    """Area under the precision-recall curve as a step function (sklearn's average_precision_score)."""
    import numpy as np

    fp, tp, _ = _curve(y, p)
    if len(tp) == 0 or tp[-1] == 0:
        return float("nan")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_threshold(y, p) -> float:
    """The probability threshold that maximises F1 (chosen on the eval split)."""
    import numpy as np

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return 0.5
    fp, tp, thr = _curve(y, p)
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / tp[-1]
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thr[int(np.argmax(f1))])


def binary_metrics(y, p, threshold: float = 0.5) -> dict:
    """AUC, PR AUC, log loss, Brier, accuracy/precision/recall/F1 at ``threshold``, ECE."""
    import numpy as np

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    two = len(np.unique(y)) == 2
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "auc": fast_auc(y, p) if two else float("nan"),
        "pr_auc": average_precision(y, p) if two else float("nan"),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan"),
        "brier": float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
        "accuracy": (tp + tn) / max(1, len(y)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "ece": ece(y, p),
        "threshold": float(threshold),
        "positive_rate": float(np.mean(y)) if len(y) else float("nan"),
        "rows": int(len(y)),
        "confusion": [[tn, fp], [fn, tp]],
    }


def roc_points(y, p, max_points: int = 200) -> tuple:
    """ROC curve (fpr, tpr, thresholds) thinned to at most ``max_points`` points for the KFP UI."""
    import numpy as np

    fpr, tpr, thr = roc_curve(y, p)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr.tolist(), tpr.tolist(), thr.tolist()


def slice_metrics(y, p, groups, threshold: float, min_rows: int = 30, max_slices: int = 20) -> dict:
    """Per-slice AUC / positive-prediction rate, plus fairness gaps across slices."""
    import numpy as np
    import pandas as pd

    g = pd.Series(groups).astype("string").fillna("<missing>").to_numpy()
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    values, counts = np.unique(g, return_counts=True)
    order = np.argsort(-counts)[:max_slices]
    out = {}
    for i in order:
        if counts[i] < min_rows:
            continue
        m = g == values[i]
        two = len(np.unique(y[m])) == 2
        out[str(values[i])] = {
            "rows": int(counts[i]),
            "auc": fast_auc(y[m], p[m]) if two else None,
            "positive_rate": float(y[m].mean()),
            "predicted_positive_rate": float((p[m] >= threshold).mean()),
        }
    aucs = [v["auc"] for v in out.values() if v["auc"] is not None]
    ppr = [v["predicted_positive_rate"] for v in out.values()]
    gaps = {
        "auc_gap": float(max(aucs) - min(aucs)) if len(aucs) > 1 else 0.0,
        "demographic_parity_ratio": float(min(ppr) / max(ppr)) if len(ppr) > 1 and max(ppr) > 0 else 1.0,
    }
    return {"slices": out, **gaps}


def finite_or_none(x) -> Optional[float]:
    import math

    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def loggable(values: dict) -> dict:
    """The finite numbers of ``values`` as floats: what a KFP Metrics artifact accepts (its
    metadata is a protobuf Struct, which cannot hold NaN or infinity and fails the task)."""
    import math

    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


# --- multiclass and regression (the task table is in _shared/task.py)

def _clip_probs(p):
    import numpy as np

    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1.0)
    return p / p.sum(axis=1, keepdims=True)


def multiclass_metrics(y, p, classes: list) -> dict:
    """Accuracy, macro/weighted F1, log loss, one-vs-rest macro AUC, top-label ECE, per-class
    precision/recall/support and the K x K confusion matrix (rows actual, columns predicted).

    Args:
        y: int class indices (N,).
        p: class probabilities (N, K) in ``classes`` order.
    """
    import numpy as np

    y = np.asarray(y).astype(int)
    k = len(classes)
    p = _clip_probs(np.asarray(p, dtype=np.float64).reshape(len(y), k)) if len(y) else np.zeros((0, k))
    pred = p.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(axis=1).astype(float), confusion.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    present = support > 0
    aucs = [fast_auc(y == c, p[:, c]) for c in range(k) if 0 < support[c] < len(y)]
    n = max(1, len(y))
    return {
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "weighted_f1": float((f1 * support).sum() / n),
        "log_loss": float(-np.mean(np.log(p[np.arange(len(y)), y]))) if len(y) else float("nan"),
        "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "ece": ece(pred == y, p.max(axis=1)) if len(y) else float("nan"),
        "classes": int(k),
        "rows": int(len(y)),
        "per_class": {str(c): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                               "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
    }


def regression_metrics(y, pred) -> dict:
    """RMSE, MAE, R², MAPE (only when no label is zero), mean residual, and residual quantiles."""
    import numpy as np

    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64).reshape(-1)
    if len(y) == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan"), "mape": float("nan"), "rows": 0}
    res = pred - y
    var = float(np.var(y))
    levels = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    return {
        "rmse": float(np.sqrt(np.mean(res ** 2))),
        "mae": float(np.mean(np.abs(res))),
        "r2": float(1 - np.mean(res ** 2) / var) if var > 0 else float("nan"),
        "mape": float(np.mean(np.abs(res / y))) if np.all(y != 0) else float("nan"),
        "mean_residual": float(res.mean()),
        "label_std": float(np.sqrt(var)),
        "rows": int(len(y)),
        "residual_quantiles": {f"q{int(q * 100):02d}": float(v) for q, v in zip(levels, np.quantile(res, levels),
                                                                                strict=True)},
    }


def per_row_loss(task: str, y, p):
    """Each row's contribution to the task's primary metric: multiclass -log p(true class),
    regression the squared error (RMSE is the root of its mean)."""
    import numpy as np

    if task == "multiclass":
        y = np.asarray(y).astype(int)
        p = _clip_probs(np.asarray(p, dtype=np.float64).reshape(len(y), -1))
        return -np.log(p[np.arange(len(y)), y])
    return (np.asarray(p, dtype=np.float64).reshape(-1) - np.asarray(y, dtype=np.float64)) ** 2


def bootstrap_loss_diff(task: str, y, p_new, p_old, n_boot: int = 200, seed: int = 0,
                        max_rows: int = 200_000) -> dict:
    """Paired bootstrap of the primary metric's difference, new - old, on the same rows (Poisson
    weights): multiclass ``log_loss``, regression ``rmse``. Lower is better for both, so the
    challenger improves when the interval lies below zero; ``improvement`` (= old - new) and its
    interval [``improvement_low``, ``improvement_high``] are given as well."""
    import numpy as np

    metric = "log_loss" if task == "multiclass" else "rmse"
    a, b = per_row_loss(task, y, p_new), per_row_loss(task, y, p_old)
    rng = np.random.default_rng(seed)
    if len(a) > max_rows:
        keep = rng.choice(len(a), max_rows, replace=False)
        a, b = a[keep], b[keep]

    def agg(v, w=None):
        m = float(np.average(v, weights=w)) if w is None or w.sum() > 0 else float("nan")
        return float(np.sqrt(m)) if metric == "rmse" else m

    diffs = np.empty(n_boot)
    for i in range(n_boot):
        w = rng.poisson(1.0, len(a)).astype(np.float64)
        diffs[i] = agg(a, w) - agg(b, w)
    point = agg(a) - agg(b) if len(a) else float("nan")
    low, high = (float(np.nanquantile(diffs, 0.025)), float(np.nanquantile(diffs, 0.975))) if n_boot and len(a) \
        else (float("nan"), float("nan"))
    return {
        "metric": metric,
        f"{metric}_diff": float(point),
        "ci_low": low,
        "ci_high": high,
        "improvement": float(-point),
        "improvement_low": float(-high),
        "improvement_high": float(-low),
        "n_boot": int(n_boot),
        "rows": int(len(a)),
    }
