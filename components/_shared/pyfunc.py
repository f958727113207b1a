"""The MLflow model of a trained model folder: ``mlflow.pyfunc.load_model(uri).predict(raw_rows)``.

Train logs it in its MLflow run (:func:`log_model`) and deploy registers that logged model, so
``models:/<name>@champion`` loads anywhere the package is installed and scores *raw* rows (a
pandas DataFrame with the transform spec's feature columns) with the same scorer the pipeline
uses (:func:`components._shared.scoring.score`: the transform spec's encoding, then the TFLite
scorer or the Keras core model). It returns the positive-class probabilities.

The MLflow model is a pyfunc with ``loader_module`` = this module and the model folder as its
data: nothing is pickled, so a fresh process needs only this package (``kfp-tf-gate``), which
is also the model's one pip requirement. MLflow is imported inside functions only.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

MLFLOW_MODEL = "pyfunc"  # the logged model's name in the training run
EXAMPLE_ROWS = 5


class RawRowScorer:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict(raw DataFrame) -> probabilities``."""

    def __init__(self, model_dir: str):
        from components._shared.scoring import model_spec

        self.model_dir = model_dir
        self.spec = model_spec(model_dir)

    def predict(self, model_input, params: Optional[dict] = None):
        import numpy as np
        import pandas as pd

        from components._shared.scoring import score

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return np.asarray(score(self.model_dir, df, self.spec), dtype=np.float64).reshape(-1)


def _load_pyfunc(data_path: str) -> RawRowScorer:
    """MLflow's loader_module entry point: ``data_path`` is the logged copy of the model folder."""
    return RawRowScorer(data_path)


def feature_names(spec: dict) -> list:
    return [f["name"] for f in spec["numeric"] + spec["categorical"]]


def signature(spec: dict, example):
    """Inputs: the spec's raw feature columns with the train split's types, every one optional
    (the model imputes a missing column); output: the probability.

    MLflow enforces the types: an integer column must arrive as integers (it refuses int64 for a
    double column, and floats with NaN for a long one), as in the training data.
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inferred = {c.name: c.type for c in _infer_schema(example[feature_names(spec)]).inputs}
    inputs = Schema([ColSpec(inferred[name], name, required=False) for name in feature_names(spec)])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "probability")]))


def _infer_schema(df):
    from mlflow.models import infer_signature

    return infer_signature(df)


def _requirements() -> list:
    from importlib import metadata

    try:
        return [f"kfp-tf-gate=={metadata.version('kfp-tf-gate')}"]
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return ["kfp-tf-gate"]


def log_model(model_dir: str, spec: dict, train_path: str) -> str:
    """Log the model folder as a pyfunc in the active MLflow run; returns its model URI.

    Args:
        model_dir: The trained model folder (model.keras, transform_spec.json, scorer.tflite).
        spec: Its transform spec.
        train_path: The raw train split (Parquet): the input example is its first rows.
    """
    import mlflow
    import pandas as pd

    from components._shared import io

    example = io.read_parquet(train_path, columns=feature_names(spec)).head(EXAMPLE_ROWS).reset_index(drop=True)
    for col in example.columns:  # as a client sends them: plain strings, not pandas categories
        if isinstance(example[col].dtype, pd.CategoricalDtype):
            example[col] = example[col].astype(object)
    info = mlflow.pyfunc.log_model(
        name=MLFLOW_MODEL, loader_module=__name__, data_path=os.path.abspath(model_dir),
        signature=signature(spec, example), input_example=example,
        # Declared, not inferred: inference re-imports the model in a subprocess (slow, and it
        # would list this environment's packages instead of the one that matters).
        pip_requirements=_requirements())
    logger.info("logged the MLflow model %s", info.model_uri)
    return info.model_uri
