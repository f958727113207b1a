"""Scoring a trained model folder (``model.keras`` + ``transform_spec.json``, as train writes it and
the registry keeps under ``model/``) on raw rows: evaluate, compare (the champion, re-scored)
and the monitor (performance decay) all score this way.

The mapping from raw columns to model inputs is ``_shared.transform.encode`` and the model format
is ``_shared.model``; both are imported when called, so importing this module costs nothing.
"""

from __future__ import annotations

import os
from typing import Optional

from components._shared import io


def score(model_dir: str, df, spec: Optional[dict] = None):
    """Outputs of a saved model for the rows of ``df`` (TFLite scorer when present): binary
    probabilities (N,), multiclass probabilities (N, K), regression predictions (N,).

    Args:
        model_dir: A trained model folder.
        df: Raw rows (pandas) holding every feature column of the transform spec.
        spec: The transform spec; read from ``model_dir`` when not given.
    """
    from components._shared.model import load_scorer
    from components._shared.transform import encode

    spec = spec or model_spec(model_dir)
    return as_task_output(load_scorer(model_dir)(encode(df, spec)), spec)


def as_task_output(outputs, spec: dict):
    """A scorer's outputs in the task's shape: (N, K) class probabilities in the spec's class order
    for multiclass (a flat TFLite output is reshaped), (N,) otherwise."""
    import numpy as np

    from components._shared.task import MULTICLASS, task_of

    out = np.asarray(outputs)
    if task_of(spec).name == MULTICLASS:
        return out.reshape(-1, len(spec["classes"]))
    return out.reshape(-1)


def has_model(model_dir: str) -> bool:
    """Whether ``model_dir`` holds a trained model (a registered version may lack one)."""
    from components._shared.model import MODEL_FILE

    return os.path.exists(os.path.join(model_dir, MODEL_FILE))


def model_spec(model_dir: str) -> dict:
    """The transform spec saved beside a trained model."""
    from components._shared.model import SPEC_FILE

    return io.read_json(os.path.join(model_dir, SPEC_FILE))
