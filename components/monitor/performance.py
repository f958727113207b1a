"""Performance decay: the champion's AUC on the labelled rows of a window against its AUC at training.

Measured only when the window carries the label, the champion's model can be downloaded and its
training AUC is known; otherwise the result says why not (drift is still worth reporting).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from components._shared.errors import DataError
from components.monitor.reference import Reference

logger = logging.getLogger(__name__)


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


def labelled_rows(df, schema: dict):
    """(rows with a label, 0/1 labels) of the window, or (None, reason) when decay cannot be measured."""
    from components._shared.labels import encode_label

    label = schema.get("label")
    if not label or label not in df.columns:
        return None, f"the window has no label column {label!r}"
    rows = df[df[label].notna()]
    if len(rows) == 0:
        return None, f"every value of the label column {label!r} is missing"
    if rows[label].nunique() < 2:
        return None, f"the label column {label!r} holds a single class; AUC needs both"
    y, _, _ = encode_label(rows[label], label, schema.get("positive_label"))
    return rows.reset_index(drop=True), y


def performance(df, reference: Reference, workdir: str) -> dict:
    """The champion's AUC on the labelled rows of the window (loads the model: TensorFlow)."""
    rows, y = labelled_rows(df, reference.schema)
    if rows is None:
        return {"status": "skipped", "reason": y}
    if reference.fetch_model is None:
        return {"status": "skipped", "reason": "no champion model to score the window with"}
    if reference.auc_at_training is None:
        return {
            "status": "skipped",
            "reason": f"{reference.source} has no training AUC (reports/evaluation.json)",
        }
    try:
        model_dir = reference.fetch_model(os.path.join(workdir, "model"))
    except DataError as exc:  # drift is still worth reporting; the report says why decay is missing
        logger.warning("%s", exc)
        return {"status": "skipped", "reason": str(exc)}
    from components._shared.scoring import score

    p = score(model_dir, rows)
    return decay_metrics(y, p, reference.auc_at_training)
