"""Evaluate: metrics of a trained model on the test split, slices, fairness gaps, a report.

Per task (see ``_shared/task.py``): binary — the decision threshold is the one train chose on the
*eval* split (maximum F1, recorded beside the model: ``_shared/threshold.py``) and only applied to
the test split, so the test metrics are not tuned on the data that reports them; ROC and a 2 x 2
confusion matrix. Multiclass — accuracy, macro/weighted
F1, log loss, one-vs-rest macro AUC, top-label ECE, per-class precision/recall and the K x K
confusion matrix (argmax). Regression — RMSE, MAE, R², MAPE (when no label is zero) and a
residual quantile table.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

from components._shared import io
from components._shared.metrics import (
    best_threshold,
    binary_metrics,
    multiclass_metrics,
    regression_metrics,
    roc_points,
    slice_metrics,
)
from components._shared.model import SPEC_FILE
from components._shared.params import PARAMS
from components._shared.scoring import score_split, scorer
from components._shared.task import BINARY, MULTICLASS, REGRESSION, task_of
from components._shared.threshold import choose_threshold, read_threshold

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Evaluation:
    metrics: dict
    threshold: float
    slices: dict
    roc: Optional[tuple]  # binary only
    confusion: Optional[list]  # classification only; rows actual, columns predicted
    task: str = BINARY
    classes: Optional[list] = None  # the confusion matrix's labels
    details: dict = dataclasses.field(default_factory=dict)  # per_class, residual_quantiles

    def to_dict(self) -> dict:
        out = {"metrics": self.metrics, "threshold": self.threshold, "slices": self.slices}
        if self.task != BINARY:  # binary evaluations stay as they were
            out.update(task=self.task, classes=self.classes, details=self.details)
        return out


def evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, spec: dict,
                         slice_columns: Optional[list] = None,
                         min_slice_rows: int = PARAMS.min_slice_rows,
                         threshold: Optional[float] = None) -> Evaluation:
    """Pure metric computation over predictions (unit-testable without a model).

    Binary: ``threshold`` is the recorded decision threshold; None chooses it here from the eval
    predictions (``y_eval``, ``p_eval``) by the same rule.
    """
    task = task_of(spec).name
    if task != BINARY:
        return _evaluate_other(task, y_test, p_test, test_df, spec, slice_columns, min_slice_rows)
    if threshold is None:
        threshold = best_threshold(y_eval, p_eval) if len(y_eval) else 0.5
    metrics = binary_metrics(y_test, p_test, threshold)
    confusion = metrics.pop("confusion")
    cols = list(slice_columns or []) or [f["name"] for f in spec["categorical"]]
    slices = {}
    for col in cols:
        if col in test_df.columns:
            slices[col] = slice_metrics(y_test, p_test, test_df[col], threshold, min_rows=min_slice_rows)
    metrics["max_auc_gap"] = max((s["auc_gap"] for s in slices.values()), default=0.0)
    metrics["min_demographic_parity_ratio"] = min((s["demographic_parity_ratio"] for s in slices.values()), default=1.0)
    return Evaluation(metrics, threshold, slices, roc_points(y_test, p_test), confusion)


def _evaluate_other(task: str, y, p, test_df, spec: dict, slice_columns: Optional[list],
                    min_slice_rows: int) -> Evaluation:
    """Multiclass and regression metrics, and per-slice rows plus the task's headline metric."""
    import numpy as np
    import pandas as pd

    classes = spec.get("classes") if task == MULTICLASS else None
    score = (lambda yy, pp: multiclass_metrics(yy, pp, classes)) if task == MULTICLASS else regression_metrics
    metrics = score(y, p)
    details = {k: metrics.pop(k) for k in ("per_class", "residual_quantiles") if k in metrics}
    confusion = metrics.pop("confusion", None)
    key = "accuracy" if task == MULTICLASS else "rmse"
    cols = list(slice_columns or []) or [f["name"] for f in spec["categorical"]]
    slices = {}
    for col in cols:
        if col not in test_df.columns:
            continue
        g = pd.Series(test_df[col]).astype("string").fillna("<missing>").to_numpy()
        values, counts = np.unique(g, return_counts=True)
        out = {}
        for i in np.argsort(-counts)[:20]:
            if counts[i] >= min_slice_rows:
                m = g == values[i]
                out[str(values[i])] = {"rows": int(counts[i]), key: score(y[m], p[m])[key]}
        found = [v[key] for v in out.values()]
        slices[col] = {"slices": out, f"{key}_gap": float(max(found) - min(found)) if len(found) > 1 else 0.0}
    return Evaluation(metrics, 0.5, slices, None, confusion, task, classes, details)


def evaluate(model_dir: str, test_path: str, eval_path: str, slice_columns: Optional[list] = None,
             min_slice_rows: int = PARAMS.min_slice_rows) -> Evaluation:
    """Score the test split; a binary model is judged at the threshold train recorded (a model
    without one, trained before train recorded it, gets it chosen here on ``eval_path`` by the
    same rule, :func:`components._shared.threshold.choose_threshold`)."""
    spec = io.read_json(os.path.join(model_dir, SPEC_FILE))
    # Batch by batch: only features, label and slice columns are read, and only labels, scores and
    # slice values are kept, never the whole test split.
    scored = score_split(test_path, spec, {"model": scorer(model_dir, spec)},
                         keep=list(slice_columns or []) or [f["name"] for f in spec["categorical"]])
    threshold = None
    if task_of(spec).name == BINARY:
        threshold = read_threshold(model_dir)
        if threshold is None:
            logger.warning("%s records no decision threshold: choosing it on the eval split", model_dir)
            threshold, _ = choose_threshold(model_dir, eval_path, spec)
    result = evaluate_predictions(scored.labels, scored.outputs["model"], None, None, scored.kept, spec,
                                  slice_columns, min_slice_rows, threshold=threshold)
    logger.info("test metrics: %s", {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)})
    return result


def report_markdown(ev: Evaluation, title: str = "Model evaluation") -> str:
    if ev.task != BINARY:
        return _report_other(ev, title)
    m = ev.metrics
    lines = [f"# {title}", "", f"Threshold {ev.threshold:.3f} (max F1 on the eval split); {m['rows']} test rows.", "",
             "| metric | value |", "|---|---|"]
    for k in ("auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "ece",
              "max_auc_gap", "min_demographic_parity_ratio"):
        v = m.get(k)
        lines.append(f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |")
    (tn, fp), (fn, tp) = ev.confusion
    lines += ["", "Confusion matrix (rows: actual, columns: predicted)", "", "| | neg | pos |", "|---|---|---|",
              f"| neg | {tn} | {fp} |", f"| pos | {fn} | {tp} |"]
    for col, s in ev.slices.items():
        lines += ["", f"## Slices by `{col}` (AUC gap {s['auc_gap']:.3f}, demographic parity ratio "
                  f"{s['demographic_parity_ratio']:.3f})", "", "| value | rows | AUC | positive rate | predicted positive rate |",
                  "|---|---|---|---|---|"]
        for v, r in s["slices"].items():
            auc = "n/a" if r["auc"] is None else f"{r['auc']:.4f}"
            lines.append(f"| {v} | {r['rows']} | {auc} | {r['positive_rate']:.3f} | {r['predicted_positive_rate']:.3f} |")
    return "\n".join(lines) + "\n"


def _report_other(ev: Evaluation, title: str) -> str:
    """The multiclass / regression report: metrics, then the confusion matrix and per-class
    precision/recall, or the residual quantiles (prediction - label); then slices."""
    m = ev.metrics
    lines = [f"# {title}", "", f"{ev.task.capitalize()} model; {m['rows']} test rows.", "",
             "| metric | value |", "|---|---|"]
    keys = task_of({"task": ev.task}).headline
    for k in keys:
        v = m.get(k)
        lines.append(f"| {k} | {'n/a' if v is None or v != v else f'{v:.4f}'} |")
    if ev.task == MULTICLASS:
        classes = [str(c) for c in ev.classes or []]
        lines += ["", "Confusion matrix (rows: actual, columns: predicted)", "",
                  "| | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |"
                  for c, row in zip(classes, ev.confusion or [], strict=False)]
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for c, r in ev.details.get("per_class", {}).items():
            lines.append(f"| {c} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |")
    elif ev.task == REGRESSION:
        q = ev.details.get("residual_quantiles", {})
        lines += ["", "Residuals (prediction - label) by quantile", "",
                  "| " + " | ".join(q) + " |", "|---" * len(q) + "|", "| " + " | ".join(f"{v:.4g}" for v in q.values()) + " |"]
    key = "accuracy" if ev.task == MULTICLASS else "rmse"
    for col, s in ev.slices.items():
        lines += ["", f"## Slices by `{col}` ({key} gap {s[f'{key}_gap']:.3f})", "", f"| value | rows | {key} |", "|---|---|---|"]
        lines += [f"| {v} | {r['rows']} | {r[key]:.4f} |" for v, r in s["slices"].items()]
    return "\n".join(lines) + "\n"
