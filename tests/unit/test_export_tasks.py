"""Export per task type (issue 15): the SavedModel serves raw rows (a date string, categories,
missing and unseen values) through each task's TF Serving signatures and equals the core model;
TFLite parity on every output column; warm-up requests for every API the task serves.

The core models are small and untrained (random weights give row-dependent outputs, which is
all a parity check needs), built by ``build_core_model`` from a task's transform spec.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from components._shared.errors import ModelError
from pipelines.data import generate_churn
from tests.stage_helpers import prepare

CLASSES = ["bronze", "gold", "platinum", "silver"]
LABEL_MEAN, LABEL_STD = 152.1, 77.0  # scikit-learn's diabetes target


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(generate_churn(800, seed=5), str(tmp_path_factory.mktemp("data")))


def _task_spec(spec: dict, task: str) -> dict:
    out = {**spec, "task": task}
    if task == "multiclass":
        out["classes"] = list(CLASSES)
    if task == "regression":
        out.update(label_mean=LABEL_MEAN, label_std=LABEL_STD)
    return out


def _core_dir(prepared, task: str, root) -> tuple:
    from components._shared.model import MODEL_FILE, SPEC_FILE, build_core_model

    spec = _task_spec(prepared.spec, task)
    core = build_core_model(spec, hidden_units=(16,), dropout=0.0, embedding_dim=4, seed=3)
    model_dir = str(root / f"model-{task}")
    os.makedirs(model_dir)
    core.save(os.path.join(model_dir, MODEL_FILE))
    io.write_json(spec, os.path.join(model_dir, SPEC_FILE))
    return model_dir, spec


@pytest.fixture(scope="module", params=["multiclass", "regression"])
def exported(request, prepared, tmp_path_factory):
    import tensorflow as tf

    from components._shared.model import load_core_model
    from components.export.core import export

    root = tmp_path_factory.mktemp(f"export-{request.param}")
    model_dir, spec = _core_dir(prepared, request.param, root)
    result = export(model_dir, prepared.test, str(root / "saved_model"), str(root / "tflite"), "test-model")
    loaded = tf.saved_model.load(result.saved_model_dir)
    return request.param, spec, result, loaded, load_core_model(model_dir)


def _rows(test_path: str):
    """Real test rows plus a missing date, an unparseable date, missing and unseen categories."""
    df = io.read_parquet(test_path).head(40).reset_index(drop=True)
    df = df.astype({c: object for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])})
    df["signup_date"] = [pd.Timestamp(v).strftime("%Y-%m-%d") for v in df["signup_date"]]
    df.loc[0, "signup_date"] = ""
    df.loc[1, "signup_date"] = "yesterday"
    df.loc[2, ["contract", "region"]] = None
    df.loc[3, ["contract", "payment_method"]] = ["lifetime", "crypto"]
    df["monthly_charges"] = df["monthly_charges"].astype("float64")
    df.loc[4, "monthly_charges"] = np.nan
    return df


def _request(df, spec) -> dict:
    """What a client sends, built by hand: floats (NaN = missing), date and category strings."""
    req = {}
    for f in spec["numeric"]:
        if f["kind"] == "timestamp":
            req[f["input_name"]] = np.asarray([str(v) for v in df[f["name"]]], dtype=object)
        else:
            req[f["input_name"]] = df[f["name"]].astype("float64").to_numpy(dtype=np.float32)
    for f in spec["categorical"]:
        req[f["input_name"]] = np.asarray(["" if v is None or v is np.nan else str(v) for v in df[f["name"]]], dtype=object)
    return req


def _examples(request: dict) -> list:
    import tensorflow as tf

    n = len(next(iter(request.values())))
    out = []
    for i in range(n):
        feats = {}
        for k, v in request.items():
            value = v[i]
            if isinstance(value, str):
                if value:
                    feats[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif not math.isnan(float(value)):  # a missing number is an absent feature
                feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return out


def _expected(core, spec, df):
    """The core model on the host-encoded rows: the training path."""
    from components._shared.model import predict_proba
    from components._shared.transform import encode

    return np.asarray(predict_proba(core, encode(df, spec))).reshape(len(df), -1)


def _signature_defs(saved_model_dir: str):
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as fh:
        sm.ParseFromString(fh.read())
    return sm.meta_graphs[0].signature_def


def test_signatures_and_tf_serving_method_names(exported):
    task, spec, result, _, _ = exported
    defs = _signature_defs(result.saved_model_dir)
    raw_inputs = {f["input_name"] for f in spec["numeric"] + spec["categorical"]}
    assert set(defs["serving_default"].inputs) == raw_inputs
    assert defs["serving_default"].method_name == "tensorflow/serving/predict"
    assert set(defs["predict_examples"].inputs) == {"examples"}
    if task == "multiclass":
        assert set(defs) - {"__saved_model_init_op"} == {"serving_default", "predict_examples", "classification"}
        assert set(defs["serving_default"].outputs) == {"probabilities", "class_id", "label"}
        assert defs["classification"].method_name == "tensorflow/serving/classify"
        assert set(defs["classification"].inputs) == {"inputs"}
        assert set(defs["classification"].outputs) == {"classes", "scores"}
    else:
        assert set(defs) - {"__saved_model_init_op"} == {"serving_default", "predict_examples", "regression"}
        assert set(defs["serving_default"].outputs) == {"prediction"}
        assert defs["regression"].method_name == "tensorflow/serving/regress"
        assert set(defs["regression"].inputs) == {"inputs"}
        assert set(defs["regression"].outputs) == {"outputs"}
    assert result.metrics["task"] == task and "threshold" not in result.metrics


def test_saved_model_serves_raw_rows_like_the_core_model(exported, prepared):
    import tensorflow as tf

    task, spec, _, loaded, core = exported
    rows = _rows(prepared.test)
    request = _request(rows, spec)
    expected = _expected(core, spec, rows)
    out = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in request.items()})
    batch = tf.constant(_examples(request))
    by_example = loaded.signatures["predict_examples"](examples=batch)
    if task == "multiclass":
        probs = out["probabilities"].numpy()
        assert probs.shape == (len(rows), len(CLASSES))
        np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert out["class_id"].dtype == tf.int64
        np.testing.assert_array_equal(out["class_id"].numpy(), probs.argmax(axis=1))
        assert out["label"].numpy().astype(str).tolist() == [CLASSES[i] for i in probs.argmax(axis=1)]
        np.testing.assert_allclose(by_example["probabilities"].numpy(), probs, rtol=0, atol=1e-6)
        classified = loaded.signatures["classification"](inputs=batch)
        np.testing.assert_allclose(classified["scores"].numpy(), probs, rtol=0, atol=1e-6)
        assert classified["classes"].numpy().astype(str).tolist() == [CLASSES] * len(rows)
    else:
        pred = out["prediction"].numpy()
        assert pred.shape == (len(rows),)
        # In the label's units: the model un-standardises its own output.
        np.testing.assert_allclose(pred, expected[:, 0], rtol=0, atol=1e-5 * LABEL_STD)
        assert np.all(np.isfinite(pred)) and abs(float(np.mean(pred)) - LABEL_MEAN) < 3 * LABEL_STD
        np.testing.assert_allclose(by_example["prediction"].numpy(), pred, rtol=0, atol=1e-4)
        regressed = loaded.signatures["regression"](inputs=batch)
        np.testing.assert_allclose(regressed["outputs"].numpy(), pred, rtol=0, atol=1e-4)
    # The unparseable and the missing date are both the imputed date.
    one = {k: tf.constant(v[:2]) for k, v in request.items()}
    first = loaded.signatures["serving_default"](**one)
    key = "probabilities" if task == "multiclass" else "prediction"
    np.testing.assert_allclose(first[key].numpy(), expected[:2].reshape(first[key].shape), rtol=0, atol=1e-5 * (LABEL_STD if task == "regression" else 1))


def test_tflite_parity_on_every_output_column(exported, prepared):
    from components._shared.model import tflite_predict
    from components._shared.params import PARAMS
    from components._shared.transform import encode

    task, spec, result, _, core = exported
    m = result.metrics
    assert m["parity_rows"] > 100
    assert 0 <= m["tflite_max_abs_diff"] <= PARAMS.max_tflite_diff
    assert m["serving_skew_max_abs_diff"] <= 1e-4
    test = io.read_parquet(prepared.test)
    with open(result.tflite_path, "rb") as fh:
        data = fh.read()
    # The spec shipped beside the .tflite file is the one that un-standardises its output.
    shipped = io.read_json(os.path.join(os.path.dirname(result.tflite_path), "transform_spec.json"))
    assert shipped == spec
    lite = tflite_predict(data, encode(test, spec), shipped)
    expected = _expected(core, spec, test)
    if task == "multiclass":
        assert lite.shape == (len(test), len(CLASSES))
        assert m["tflite_max_abs_diff"] == pytest.approx(float(np.max(np.abs(lite - expected))), abs=2e-5)
        assert m["tflite_class_agreement"] > 0.95
    else:
        assert lite.shape == (len(test),)
        # The gate is in label standard deviations; the label-unit figure is reported beside it.
        label_units = float(np.max(np.abs(lite - expected[:, 0])))
        assert m["tflite_max_abs_diff_label_units"] == pytest.approx(label_units, abs=2e-5 * LABEL_STD)
        assert m["tflite_max_abs_diff"] == pytest.approx(m["tflite_max_abs_diff_label_units"] / LABEL_STD)
        # The file itself outputs the standardised prediction z: label_mean + label_std * z.
        z = tflite_predict(data, encode(test, spec))
        np.testing.assert_allclose(LABEL_MEAN + LABEL_STD * z.astype(np.float64), lite, rtol=1e-6, atol=1e-4)
    print(f"{task}: tflite max abs diff {m['tflite_max_abs_diff']:.2e}, skew {m['serving_skew_max_abs_diff']:.2e}")


def test_warmup_covers_each_api_and_replays(exported):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from components._shared.warmup import WARMUP_FILE, replay_warmup

    task, _, result, _, _ = exported
    path = os.path.join(result.saved_model_dir, WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    kinds = [log.WhichOneof("log_type") for log in logs]
    api = "classify_log" if task == "multiclass" else "regress_log"
    assert kinds == ["predict_log"] * 3 + [api] * 3
    for log in logs[3:]:
        req = getattr(log, api).request
        assert req.model_spec.signature_name == ("classification" if task == "multiclass" else "regression")
        example = req.input.example_list.examples[0]
        assert example.features.feature["signup_date"].bytes_list.value[0].decode()[:2] in ("19", "20")
    assert replay_warmup(result.saved_model_dir) == 6


def test_replay_warmup_refuses_a_request_for_an_api_the_model_lacks(exported, tmp_path):
    import shutil

    from tensorflow_serving.apis import input_pb2, model_pb2, prediction_log_pb2, regression_pb2

    from components._shared.warmup import replay_warmup, write_warmup

    task, _, result, _, _ = exported
    if task != "multiclass":
        pytest.skip("a multiclass model has no regression signature")
    broken = str(tmp_path / "broken")
    shutil.copytree(result.saved_model_dir, broken)
    req = regression_pb2.RegressionRequest(model_spec=model_pb2.ModelSpec(name="m", signature_name="regression"),
                                           input=input_pb2.Input(example_list=input_pb2.ExampleList()))
    write_warmup(broken, [prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=req))])
    with pytest.raises(ModelError, match=r"failed: the model has no signature 'regression'"):
        replay_warmup(broken)


def test_regression_scorer_is_bounded_in_label_standard_deviations(prepared, tmp_path):
    """A float32 scorer of a large-valued target differs from Keras by more than 1e-4 in label
    units, but not in label standard deviations: the bound is comparable across datasets."""
    from components._shared.model import SCORER_FILE, build_core_model, load_scorer, write_scorer
    from components._shared.transform import encode

    spec = {**_task_spec(prepared.spec, "regression"), "label_mean": 2.5e6, "label_std": 8e5}
    core = build_core_model(spec, hidden_units=(8,), dropout=0.0, embedding_dim=4, seed=1)
    arrays = encode(io.read_parquet(prepared.test), spec)
    diff = write_scorer(core, str(tmp_path), arrays, spec=spec)
    assert diff is not None and diff <= 1e-4
    assert os.path.exists(tmp_path / SCORER_FILE)
    scored = load_scorer(str(tmp_path))(arrays)
    assert scored.shape == (len(arrays["numeric"]),) and np.all(np.abs(scored - 2.5e6) < 10 * 8e5)


def test_a_multiclass_spec_without_classes_is_refused(prepared, tmp_path):
    from components.export.core import export

    model_dir, spec = _core_dir(prepared, "multiclass", tmp_path)
    io.write_json({**spec, "classes": ["only"]}, os.path.join(model_dir, "transform_spec.json"))
    with pytest.raises(ModelError, match="lists 1 classes: it needs 2 or more"):
        export(model_dir, prepared.test, str(tmp_path / "sm"), str(tmp_path / "lite"), "m")


def test_batch_prediction_columns_per_task():
    """predict writes each task's outputs under the served SavedModel's names."""
    from components.predict.core import _score_columns

    p, cols = _score_columns("binary", np.array([0.2, 0.7], dtype=np.float32), 0.5, [])
    assert [n for n, _ in cols] == ["probability", "class_id"] and cols[1][1].to_pylist() == [0, 1]
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], dtype=np.float32)
    p, cols = _score_columns("multiclass", probs, 0.5, ["a", "b", "c"])
    got = dict(cols)
    np.testing.assert_allclose(np.array(got["probabilities"].to_pylist()), probs)
    assert got["class_id"].to_pylist() == [1, 0] and got["predicted_label"].to_pylist() == ["b", "a"]
    np.testing.assert_allclose(p, [0.6, 0.5])
    p, cols = _score_columns("regression", np.array([[152.5], [80.0]], dtype=np.float32), 0.5, [])
    assert [n for n, _ in cols] == ["prediction"] and cols[0][1].to_pylist() == [152.5, 80.0]


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_batch_prediction_scores_like_the_served_model_with_live_metrics(task, prepared, tmp_path):
    """predict on a multiclass or regression version: the task's columns, equal to the SavedModel's
    outputs on the same rows, and the task's live metrics when the table carries the label."""
    import shutil

    import tensorflow as tf

    from components._shared.champion import stage_artifacts
    from components.export.core import export
    from components.predict.core import predict
    from components.predict.resolve import INFO_FILE, load

    folder = tmp_path / "version"
    model_dir, spec = _core_dir(prepared, task, tmp_path)
    shutil.copytree(model_dir, folder / "model")
    stage_artifacts(str(folder), str(folder / "model"), "", prepared.schema, prepared.train, {}, {}, {})
    io.write_json({"name": "m", "version": "2", "requested": "alias champion", "threshold": 0.5}, str(folder / INFO_FILE))
    saved = export(model_dir, prepared.test, str(tmp_path / "sm"), str(tmp_path / "lite"), "m").saved_model_dir

    table = io.read_parquet(prepared.test).iloc[5:45].reset_index(drop=True)
    rng = np.random.default_rng(0)
    label = spec["label"]
    table[label] = rng.choice(CLASSES, len(table)) if task == "multiclass" else rng.normal(LABEL_MEAN, LABEL_STD, len(table))
    if task == "multiclass":
        table.loc[0, label] = "unknown tier"  # not one of the model's classes: not counted
    path = str(tmp_path / "table.parquet")
    table.to_parquet(path)
    out = str(tmp_path / "out.parquet")
    summary = predict(path, load(str(folder)), out).summary
    got = pd.read_parquet(out)

    served = tf.saved_model.load(saved).signatures["serving_default"]
    from components._shared.transform import raw_features

    ref = served(**{k: tf.constant(v) for k, v in raw_features(table, spec).items()})
    assert summary["task"] == task and summary["threshold"] is None and summary["rows"] == len(table)
    live = summary["live_metrics"]
    if task == "multiclass":
        assert {"probabilities", "class_id", "predicted_label"} <= set(got.columns)
        probs = np.stack(got["probabilities"].to_numpy())
        np.testing.assert_allclose(probs, ref["probabilities"].numpy(), rtol=0, atol=1e-4)
        assert got["predicted_label"].astype(str).tolist() == ref["label"].numpy().astype(str).tolist()
        assert live["rows"] == len(table) - 1 and 0 <= live["accuracy"] <= 1 and live["log_loss"] > 0
    else:
        assert "prediction" in got.columns and "probability" not in got.columns
        np.testing.assert_allclose(got["prediction"].to_numpy(), ref["prediction"].numpy(), rtol=0, atol=1e-4 * LABEL_STD)
        assert live["rows"] == len(table) and live["rmse"] > 0 and "r2" in live
    from components.predict.report import summary_html

    page = summary_html(summary)
    assert f"<th>task</th><td>{task}</td>" in page
    assert ("<th>macro_f1</th>" if task == "multiclass" else "<th>rmse</th>") in page and "<th>auc</th>" not in page
