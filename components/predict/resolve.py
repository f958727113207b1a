"""The model a prediction run scores with: a registered version (a number or an alias) fetched once.

:func:`resolve` writes a folder (the ``model`` artifact of the prediction pipeline)::

    model.json        name, version, how it was asked for, decision threshold, AUC at training
    model/            the trained model folder (model.keras, transform_spec.json, scorer.tflite)
    data/             schema.json (what its training data looked like), reference.parquet (a train sample)
    evaluation.json   its evaluation at training time, when registered with one

:func:`load` reads it back. The registry lookup and the version layout are
``components._shared.champion``'s; nothing here talks to MLflow directly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from typing import Optional

from components._shared import io
from components._shared.champion import (
    DATA,
    EVALUATION_FILE,
    REFERENCE_FILE,
    SCHEMA_FILE,
    find_version,
)
from components._shared.errors import DataError

logger = logging.getLogger(__name__)

INFO_FILE = "model.json"
MODEL_DIR = "model"


@dataclasses.dataclass
class ResolvedModel:
    """A model folder written by :func:`resolve`."""

    folder: str
    name: str
    version: str
    requested: str
    threshold: float
    auc_at_training: Optional[float]

    @property
    def model_dir(self) -> str:
        return os.path.join(self.folder, MODEL_DIR)

    @property
    def schema(self) -> dict:
        return io.read_json(os.path.join(self.folder, DATA, SCHEMA_FILE))

    @property
    def reference_path(self) -> Optional[str]:
        path = os.path.join(self.folder, DATA, REFERENCE_FILE)
        return path if os.path.exists(path) else None


def resolve(tracking_uri: str, model_name: str, version: str, alias: str, dest: str) -> ResolvedModel:
    """Fetch version ``version`` (or the one behind ``alias``) of ``model_name`` into ``dest``.

    Raises:
        DataError: No such model, version or alias, or the version lacks a model or schema to check
            new data against (one sentence naming it).
    """
    from components._shared.scoring import has_model

    champ = find_version(tracking_uri, model_name, version, alias)
    what = f"{model_name} v{champ.version}"
    os.makedirs(dest, exist_ok=True)
    for folder, target in ((MODEL_DIR, MODEL_DIR), (DATA, DATA)):
        got = champ.download(folder, os.path.join(dest, ".download"))
        if os.path.abspath(got) != os.path.abspath(os.path.join(dest, target)):
            shutil.move(got, os.path.join(dest, target))
    shutil.rmtree(os.path.join(dest, ".download"), ignore_errors=True)
    if not has_model(os.path.join(dest, MODEL_DIR)):
        raise DataError(f"{what} has no trained model (model/model.keras) in the registry to score with")
    if not os.path.exists(os.path.join(dest, DATA, SCHEMA_FILE)):
        raise DataError(f"{what} has no schema (data/schema.json) in the registry to check new data against")
    try:
        evaluation = champ.evaluation(os.path.join(dest, ".reports"))
    except (DataError, OSError, ValueError) as exc:  # registered without reports: scored at 0.5, no decay
        logger.warning("%s has no evaluation (%s): threshold 0.5, no AUC at training", what, exc)
        evaluation = {}
    shutil.rmtree(os.path.join(dest, ".reports"), ignore_errors=True)
    if evaluation:
        io.write_json(evaluation, os.path.join(dest, EVALUATION_FILE))
    info = {
        "name": model_name,
        "version": champ.version,
        "requested": f"version {version}" if version else f"alias {alias}",
        "threshold": float(evaluation.get("threshold", 0.5)),
        "auc_at_training": (evaluation.get("metrics") or {}).get("auc"),
        "run_id": champ.ref.run_id,
    }
    io.write_json(info, os.path.join(dest, INFO_FILE))
    logger.info("scoring with %s (%s)", what, info["requested"])
    return load(dest)


def load(folder: str) -> ResolvedModel:
    """The model folder written by :func:`resolve`."""
    info = io.read_json(os.path.join(folder, INFO_FILE))
    return ResolvedModel(folder, info["name"], str(info["version"]), info["requested"], float(info["threshold"]),
                         info.get("auc_at_training"))
