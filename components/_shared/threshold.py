"""The binary decision threshold: chosen once, by train, and recorded beside the model.

The threshold (maximum F1, :func:`components._shared.metrics.best_threshold`) is chosen on the
*eval* split with the model's TensorFlow-free scorer, so the test metrics are not tuned on the data
that reports them. Train records it in ``<model dir>/threshold.json`` right after saving the model;
evaluate reports the test metrics at it and export bakes it into the SavedModel's ``class_id``.
Export therefore needs nothing from evaluate and runs beside it (evaluate, then compare), on a
cluster as in a local run. Multiclass (argmax) and regression models have no threshold.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from components._shared import io

logger = logging.getLogger(__name__)

THRESHOLD_FILE = "threshold.json"
RULE = "max F1 on the eval split"


def choose_threshold(model_dir: str, eval_path: str, spec: Optional[dict] = None) -> tuple[float, int]:
    """(threshold, eval rows): the F1-maximising threshold of the saved model on the eval split
    (0.5 when the split is empty or holds one class)."""
    from components._shared.metrics import best_threshold
    from components._shared.model import SPEC_FILE
    from components._shared.scoring import score_split, scorer

    spec = spec or io.read_json(os.path.join(model_dir, SPEC_FILE))
    if not io.parquet_num_rows(eval_path):
        return 0.5, 0
    # Batch by batch: only labels and scores of the eval split are held.
    scored = score_split(eval_path, spec, {"model": scorer(model_dir, spec)})
    return best_threshold(scored.labels, scored.outputs["model"]), scored.rows


def record_threshold(model_dir: str, eval_path: str, spec: dict) -> Optional[float]:
    """Choose a binary model's threshold and write it into ``model_dir``; None for other tasks."""
    from components._shared.task import BINARY, task_of

    if task_of(spec).name != BINARY:
        return None
    threshold, rows = choose_threshold(model_dir, eval_path, spec)
    io.write_json({"threshold": threshold, "rule": RULE, "eval_rows": rows}, os.path.join(model_dir, THRESHOLD_FILE))
    logger.info("decision threshold %.4f (%s, %d rows)", threshold, RULE, rows)
    return threshold


def read_threshold(model_dir: str) -> Optional[float]:
    """The recorded threshold, or None when the model has none (not binary, or trained before
    train recorded it)."""
    path = os.path.join(model_dir, THRESHOLD_FILE)
    if not os.path.exists(path):
        return None
    return float(io.read_json(path)["threshold"])
