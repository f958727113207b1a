"""Performance decay: the champion's primary metric on the labelled rows of a window against its
value at training (``reports/evaluation.json`` of the version), per task:

- binary: ``auc``; decay = AUC at training - AUC now; thresholds ``auc_decay(_critical)``;
- multiclass: ``macro_auc``; decay = macro AUC at training - macro AUC now; thresholds
  ``macro_auc_decay(_critical)``;
- regression: ``rmse``; decay = RMSE now / RMSE at training - 1 (the relative rise); thresholds
  ``rmse_increase(_critical)`` (all in :class:`components.monitor.policy.Thresholds`).

Multiclass watches the one-vs-rest macro AUC rather than log loss or accuracy: it ranks, so a
window whose class mix moved (a common, harmless shift) does not read as decay by itself, every
class weighs the same, and a drop means the model separates the classes less well. Accuracy and
log loss are reported beside it. Regression watches RMSE relative to training, so one threshold
fits labels of any unit.

Measured only when the window carries the label, the champion's model can be downloaded and its
metric at training is known; otherwise the result says why not (drift is still worth reporting).
A window label that is not one of the model's classes is a warning (those rows are left out), not
an error: a new class is what monitoring is for.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from components._shared.errors import DataError
from components._shared.task import BINARY, MULTICLASS, REGRESSION, task_of
from components.monitor.reference import Reference

logger = logging.getLogger(__name__)

DECAY_METRIC = {BINARY: "auc", MULTICLASS: "macro_auc", REGRESSION: "rmse"}
METRIC_NAMES = {"auc": "AUC", "macro_auc": "macro AUC", "rmse": "RMSE"}


def decay_metrics(y, p, auc_at_training: Optional[float]) -> dict:
    """AUC of the champion on the window and its drop since training (positive = worse)."""
    import numpy as np

    from components._shared.metrics import fast_auc, finite_or_none

    y = np.asarray(y)
    auc = finite_or_none(fast_auc(y, p))
    decay = None if auc is None or auc_at_training is None else float(auc_at_training) - auc
    return {
        "status": "ok",
        "auc": auc,
        "auc_at_training": auc_at_training,
        "decay": decay,
        "rows": int(len(y)),
        "positive_rate": float(y.mean()) if len(y) else None,
    }


def multiclass_decay(y, p, classes: list, at_training: dict) -> dict:
    """Macro AUC (and accuracy, log loss) on the window; decay = macro AUC drop since training."""
    import numpy as np

    from components._shared.metrics import finite_or_none, multiclass_metrics

    m = multiclass_metrics(y, p, classes)
    now = finite_or_none(m["macro_auc"])
    then = at_training.get("macro_auc")
    counts = np.bincount(np.asarray(y, dtype=int), minlength=len(classes))
    out = {
        "status": "ok", "task": MULTICLASS, "metric": "macro_auc",
        "macro_auc": now, "macro_auc_at_training": then,
        "decay": None if now is None or then is None else float(then) - now,
        "rows": int(len(y)),
        "class_share": {str(c): float(n / max(1, len(y))) for c, n in zip(classes, counts, strict=True)},
    }  # fmt: skip
    for key in ("accuracy", "log_loss"):
        out[key] = finite_or_none(m[key])
        out[f"{key}_at_training"] = at_training.get(key)
    return out


def regression_decay(y, pred, at_training: dict) -> dict:
    """RMSE (and MAE) on the window; decay = RMSE now / RMSE at training - 1 (relative rise)."""
    import numpy as np

    from components._shared.metrics import finite_or_none, regression_metrics

    m = regression_metrics(y, pred)
    now, then = finite_or_none(m["rmse"]), at_training.get("rmse")
    ratio = None if now is None or not then else now / float(then)
    return {
        "status": "ok", "task": REGRESSION, "metric": "rmse",
        "rmse": now, "rmse_at_training": then,
        "rmse_ratio": ratio, "decay": None if ratio is None else ratio - 1.0,
        "mae": finite_or_none(m["mae"]), "mae_at_training": at_training.get("mae"),
        "rows": int(len(y)), "label_mean": float(np.mean(y)) if len(y) else None,
    }  # fmt: skip


def labelled_rows(df, schema: dict):
    """(rows with a label, 0/1 labels) of a binary window, or (None, reason) when decay cannot be measured."""
    from components._shared.labels import encode_label

    rows = _rows_with_label(df, schema)
    if isinstance(rows, str):
        return None, rows
    label = schema["label"]
    if rows[label].nunique() < 2:
        return None, f"the label column {label!r} holds a single class; AUC needs both"
    y, _, _ = encode_label(rows[label], label, schema.get("positive_label"))
    return rows, y


def _rows_with_label(df, schema: dict):
    """The window's rows whose label is present, or a sentence saying why there are none."""
    label = schema.get("label")
    if not label or label not in df.columns:
        return f"the window has no label column {label!r}"
    rows = df[df[label].notna()]
    if len(rows) == 0:
        return f"every value of the label column {label!r} is missing"
    return rows.reset_index(drop=True)


def task_labels(rows, spec: dict):
    """(rows, targets, warnings) of a multiclass or regression window, per the model's spec, or
    (None, reason, warnings) when nothing is left to measure on.

    Multiclass: class keys (:func:`components._shared.task.class_key`) -> indices of the spec's
    ``classes``; rows of a class the model does not know are left out with a warning.
    Regression: numbers; rows whose label is not a finite number are left out with a warning.
    """
    import numpy as np
    import pandas as pd

    from components._shared.labels import class_indices
    from components._shared.task import class_keys

    label, task, warnings = spec["label"], task_of(spec).name, []
    if task == MULTICLASS:
        keys = class_keys(rows[label])
        known = keys.isin(spec["classes"]).to_numpy()
        if not known.all():
            unknown = sorted(set(keys[~known]))
            warnings.append(
                f"{int((~known).sum())} window row(s) have a class the model does not know "
                f"({', '.join(map(repr, unknown[:5]))}{', ...' if len(unknown) > 5 else ''}): "
                "left out of the decay; retraining would learn it"
            )
        rows, keys = rows[known].reset_index(drop=True), keys[known].reset_index(drop=True)
        if keys.nunique() < 2:
            return (
                None,
                f"the label column {label!r} holds {keys.nunique()} known class(es); macro AUC needs two",
                warnings,
            )
        return rows, class_indices(keys, spec["classes"], label), warnings
    values = pd.to_numeric(rows[label], errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        warnings.append(
            f"{int((~finite).sum())} window row(s) have a label {label!r} that is not a finite "
            "number: left out of the decay"
        )
    if finite.sum() == 0:
        return None, f"no value of the label column {label!r} is a finite number", warnings
    return rows[finite].reset_index(drop=True), values[finite], warnings


def _skipped(task: str, reason: str) -> dict:
    """Why decay was not measured (a binary result reads as it always has: no task key)."""
    return {"status": "skipped", "reason": reason, **({} if task == BINARY else {"task": task})}


def performance(df, reference: Reference, workdir: str) -> dict:
    """The champion's primary metric on the labelled rows of the window, and its decay since
    training (loads the model: TensorFlow)."""
    task = task_of(reference.schema).name
    if task == BINARY:
        rows, y = labelled_rows(df, reference.schema)
    else:
        rows = _rows_with_label(df, reference.schema)
        rows, y = (None, rows) if isinstance(rows, str) else (rows, None)
    if rows is None:
        return _skipped(task, y)
    if reference.fetch_model is None:
        return _skipped(task, "no champion model to score the window with")
    metric = DECAY_METRIC[task]
    if reference.at_training(metric) is None:
        return _skipped(
            task,
            f"{reference.source} has no training {METRIC_NAMES[metric]} (reports/evaluation.json)",
        )
    try:
        model_dir = reference.fetch_model(os.path.join(workdir, "model"))
    except DataError as exc:  # drift is still worth reporting; the report says why decay is missing
        logger.warning("%s", exc)
        return _skipped(task, str(exc))
    from components._shared.scoring import model_spec, score

    spec = model_spec(model_dir)
    if task_of(spec).name != task:
        return _skipped(
            task, f"the champion's model is {task_of(spec).name} but its schema says {task}"
        )
    if task == BINARY:
        return decay_metrics(y, score(model_dir, rows, spec), reference.at_training("auc"))
    rows, y, warnings = task_labels(rows, {**spec, "label": reference.schema["label"]})
    for w in warnings:
        logger.warning("%s", w)
    if rows is None:
        return {**_skipped(task, y), "warnings": warnings}
    at_training = {
        k: reference.at_training(k) for k in ("macro_auc", "accuracy", "log_loss", "rmse", "mae")
    }
    out = (
        multiclass_decay(y, score(model_dir, rows, spec), spec["classes"], at_training)
        if task == MULTICLASS
        else regression_decay(y, score(model_dir, rows, spec), at_training)
    )
    out["warnings"] = warnings
    return out
