"""The MLflow model of a trained model folder: ``mlflow.pyfunc.load_model(uri).predict(raw_rows)``.

Train logs it in its MLflow run (:func:`log_model`) and deploy registers that logged model, so
``models:/<name>@champion`` loads anywhere the package is installed and scores *raw* rows (a
pandas DataFrame with the transform spec's feature columns) with the same scorer the pipeline
uses (:func:`components._shared.scoring.score`: the transform spec's encoding, then the TFLite
scorer or the Keras core model). What it returns follows the task (``_shared/task.py``):

- binary: the positive-class probabilities (a float array, as before);
- multiclass: a DataFrame with one ``probability_<class>`` column per class (the spec's
  ``classes`` order) and ``predicted_label`` (the most likely class, as its string);
- regression: a DataFrame with one ``prediction`` column, in the label's units.

The signature declares the ``numeric`` feature columns so that both things a client sends for a
number pass: a float column is double; a column that is integer in the training data is MLflow's
``Any`` type, because MLflow refuses NaN in a column declared long and refuses int64 values in a
column declared double ("Can not safely convert int64 to float64"), while ``pd.read_csv`` gives
int64 for a complete integer column and float64 once a value is missing. The scorer converts
every numeric column to float itself.

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
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict(raw DataFrame) -> the task's outputs``."""

    def __init__(self, model_dir: str):
        from components._shared.scoring import model_spec

        self.model_dir = model_dir
        self.spec = model_spec(model_dir)

    def predict(self, model_input, params: Optional[dict] = None):
        import numpy as np
        import pandas as pd

        from components._shared.scoring import score

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        out = np.asarray(score(self.model_dir, df, self.spec), dtype=np.float64)
        return task_outputs(out, self.spec)


def task_outputs(out, spec: dict):
    """Scores in the task's shape (:func:`components._shared.scoring.score`) as the pyfunc returns them."""
    import numpy as np
    import pandas as pd

    from components._shared.task import MULTICLASS, REGRESSION, task_of

    task = task_of(spec).name
    if task == MULTICLASS:
        classes = [str(c) for c in spec["classes"]]
        frame = pd.DataFrame(out.reshape(-1, len(classes)), columns=probability_columns(spec))
        frame["predicted_label"] = np.asarray(classes, dtype=object)[out.reshape(-1, len(classes)).argmax(axis=1)]
        return frame
    if task == REGRESSION:
        return pd.DataFrame({"prediction": out.reshape(-1)})
    return out.reshape(-1)


def probability_columns(spec: dict) -> list:
    """The multiclass output columns of the class probabilities, in the spec's ``classes`` order."""
    return [f"probability_{c}" for c in spec["classes"]]


def _load_pyfunc(data_path: str) -> RawRowScorer:
    """MLflow's loader_module entry point: ``data_path`` is the logged copy of the model folder."""
    return RawRowScorer(data_path)


def feature_names(spec: dict) -> list:
    return [f["name"] for f in spec["numeric"] + spec["categorical"]]


def numeric_columns(spec: dict) -> list:
    """The raw feature columns that are numbers (not booleans or dates): declared double."""
    return [f["name"] for f in spec["numeric"] if f.get("kind", "numeric") == "numeric"]


def signature(spec: dict, example):
    """Inputs: the spec's raw feature columns, every one optional (the model imputes a missing
    column): numeric ones double, or Any when integer in ``example`` (the train split's raw rows),
    so int64 values and NaN both pass; the others with the train split's types; outputs: the task's columns
    (:func:`task_outputs`).
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from components._shared.task import MULTICLASS, REGRESSION, task_of

    inferred = {c.name: c.type for c in _infer_schema(example[feature_names(spec)]).inputs}
    for name in numeric_columns(spec):  # see the module docstring: int64 and NaN must both pass
        inferred[name] = AnyType() if example[name].dtype.kind in "iu" else "double"
    inputs = Schema([ColSpec(inferred[name], name, required=False) for name in feature_names(spec)])
    task = task_of(spec).name
    if task == MULTICLASS:
        outputs = [ColSpec("double", c) for c in probability_columns(spec)] + [ColSpec("string", "predicted_label")]
    elif task == REGRESSION:
        outputs = [ColSpec("double", "prediction")]
    else:
        outputs = [ColSpec("double", "probability")]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


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
    sig = signature(spec, example)  # from the training data's own types (integer columns stay open)
    for col in numeric_columns(spec):  # the example shows numbers as doubles, which every number column takes
        example[col] = pd.to_numeric(example[col], errors="coerce").astype("float64")
    info = mlflow.pyfunc.log_model(
        name=MLFLOW_MODEL, loader_module=__name__, data_path=os.path.abspath(model_dir),
        signature=sig, input_example=example,
        # Declared, not inferred: inference re-imports the model in a subprocess (slow, and it
        # would list this environment's packages instead of the one that matters).
        pip_requirements=_requirements())
    logger.info("logged the MLflow model %s", info.model_uri)
    return info.model_uri
