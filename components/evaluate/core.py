"""Evaluate: metrics of a trained model on the test split, slices, fairness gaps, a report.

The decision threshold is chosen on the *eval* split (maximum F1) and only applied to
the test split, so the test metrics are not tuned on the data that reports them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

from components._shared import io
from components._shared.labels import labels
from components._shared.metrics import best_threshold, binary_metrics, roc_points, slice_metrics
from components._shared.model import SPEC_FILE, load_scorer
from components._shared.params import PARAMS
from components._shared.transform import encode

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Evaluation:
    metrics: dict
    threshold: float
    slices: dict
    roc: tuple
    confusion: list

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "threshold": self.threshold, "slices": self.slices}


def evaluate_predictions(y_test, p_test, y_eval, p_eval, test_df, spec: dict,
                         slice_columns: Optional[list] = None,
                         min_slice_rows: int = PARAMS.min_slice_rows) -> Evaluation:
    """Pure metric computation over predictions (unit-testable without a model)."""
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


def evaluate(model_dir: str, test_path: str, eval_path: str, slice_columns: Optional[list] = None,
             min_slice_rows: int = PARAMS.min_slice_rows) -> Evaluation:
    spec = io.read_json(os.path.join(model_dir, SPEC_FILE))
    scorer = load_scorer(model_dir)
    test = io.read_parquet(test_path)
    ev = io.read_parquet(eval_path, columns=[f["name"] for f in spec["numeric"] + spec["categorical"]] + [spec["label"]])
    p_test = scorer(encode(test, spec))
    p_eval = scorer(encode(ev, spec))
    result = evaluate_predictions(labels(test, spec), p_test, labels(ev, spec), p_eval, test, spec,
                                  slice_columns, min_slice_rows)
    logger.info("test metrics: %s", {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)})
    return result


def report_markdown(ev: Evaluation, title: str = "Model evaluation") -> str:
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
