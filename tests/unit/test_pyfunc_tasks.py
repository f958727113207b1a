"""The MLflow pyfunc champion per task type (issue 15): logged in a run and loaded back with
``mlflow.pyfunc.load_model``, it scores raw rows (incl. a NaN in an integer column) and returns
the task's outputs: binary probabilities, multiclass a probability column per class and the
predicted label, regression a ``prediction`` column. The models are small and untrained (a
signature and output-shape check needs no skill), built from a real transform spec.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from pipelines.data import generate_churn
from tests.stage_helpers import prepare

CLASSES = ["bronze", "gold", "platinum"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(generate_churn(300, seed=7), str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"  # one database: migrated once


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def logged(request, prepared, tracking, tmp_path_factory):
    import mlflow

    from components._shared import pyfunc
    from components._shared.model import MODEL_FILE, SPEC_FILE, build_core_model

    task, root = request.param, tmp_path_factory.mktemp(f"pyfunc-{request.param}")
    spec = {**prepared.spec, "task": task}
    if task == "multiclass":
        spec["classes"] = list(CLASSES)
    if task == "regression":
        spec.update(label_mean=150.0, label_std=75.0)
    model_dir = str(root / "model")
    os.makedirs(model_dir)
    build_core_model(spec, hidden_units=(8,), dropout=0.0, embedding_dim=4, seed=1).save(
        os.path.join(model_dir, MODEL_FILE))
    io.write_json(spec, os.path.join(model_dir, SPEC_FILE))
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment(f"pyfunc-{task}")
    with mlflow.start_run():
        uri = pyfunc.log_model(model_dir, spec, prepared.train)
    return task, spec, model_dir, mlflow.pyfunc.load_model(uri)


def _raw_rows(prepared) -> pd.DataFrame:
    """Raw test rows as a client sends them: numbers as floats, one NaN in an integer column."""
    from components._shared.pyfunc import feature_names, numeric_columns

    df = io.read_parquet(prepared.test).head(6).reset_index(drop=True)
    df = df[feature_names(prepared.spec)]
    df = df.astype({c: object for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})
    df = df.astype({c: "float64" for c in numeric_columns(prepared.spec)})
    df.loc[0, "tenure_months"] = np.nan
    return df


def test_signature_declares_numbers_as_double_and_the_task_outputs(logged, prepared):
    task, spec, _, model = logged
    sig = model.metadata.get_input_schema()
    types = {c.name: str(c.type) for c in sig.inputs}
    assert io.read_parquet(prepared.train)["tenure_months"].dtype.kind == "i"  # an integer column...
    assert types["tenure_months"] == "Any" and types["support_calls"] == "Any"  # ...takes int64 and NaN
    assert types["contract"] == "DataType.string" and all(not c.required for c in sig.inputs)
    outputs = [c.name for c in model.metadata.get_output_schema().inputs]
    assert outputs == {"binary": ["probability"],
                       "multiclass": [f"probability_{c}" for c in CLASSES] + ["predicted_label"],
                       "regression": ["prediction"]}[task]


def test_loaded_pyfunc_scores_raw_rows_with_a_nan_in_an_int_column(logged, prepared):
    from components._shared.scoring import score

    task, spec, model_dir, model = logged
    rows = _raw_rows(prepared)
    out = model.predict(rows)
    expected = score(model_dir, rows, spec)
    assert len(out) == len(rows)
    if task == "binary":
        assert isinstance(out, np.ndarray) and out.shape == (len(rows),)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    elif task == "multiclass":
        probs = out[[f"probability_{c}" for c in CLASSES]].to_numpy()
        np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert list(out["predicted_label"]) == [CLASSES[i] for i in probs.argmax(axis=1)]
    else:
        assert list(out.columns) == ["prediction"]
        np.testing.assert_allclose(out["prediction"], expected, rtol=1e-5, atol=1e-4)
        assert np.isfinite(out["prediction"]).all()


def test_int64_columns_as_pandas_reads_them_are_accepted(logged, prepared):
    """A complete integer column read by pd.read_csv is int64; with a missing value it is float64:
    both must score (MLflow refuses int64 in a double column and NaN in a long one)."""
    from components._shared.scoring import score

    _, spec, model_dir, model = logged
    rows = _raw_rows(prepared).fillna({"tenure_months": 1.0})
    ints = rows.astype({"tenure_months": "int64", "support_calls": "int64"}).assign(
        tenure_months=lambda d: d.tenure_months + 5)
    out = model.predict(ints)
    assert len(out) == len(rows)
    values = out if isinstance(out, np.ndarray) else out.iloc[:, 0].to_numpy()
    expected = score(model_dir, ints, spec)
    expected = expected if expected.ndim == 1 else expected[:, 0]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-4)
