"""Train and export cores on one small real training run: save/load, divergence, SavedModel
signatures, warm-up, TFLite parity, and training/serving skew on awkward raw rows."""

from __future__ import annotations

import csv
import math
import os
import re

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from components._shared.errors import DataError, ModelError
from pipelines.data import generate_churn
from tests.stage_helpers import prepare, train_small

pytestmark = pytest.mark.slow

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(generate_churn(2500, seed=21), str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("model"))
    return model_dir, train_small(prepared, model_dir, epochs=2)


@pytest.fixture(scope="module")
def exported(trained, prepared, tmp_path_factory):
    """Export of a copy of the model whose recorded threshold is THRESHOLD: export takes it from
    the model folder (test_classes_and_labels_follow_the_threshold checks class_id)."""
    import shutil

    from components._shared.threshold import THRESHOLD_FILE
    from components.export.core import export

    out = tmp_path_factory.mktemp("export")
    model_dir = str(tmp_path_factory.mktemp("recorded") / "model")
    shutil.copytree(trained[0], model_dir)
    io.write_json({"threshold": THRESHOLD}, os.path.join(model_dir, THRESHOLD_FILE))
    result = export(
        model_dir,
        prepared.test,
        str(out / "saved_model"),
        str(out / "tflite"),
        "test-model",
    )
    return result


@pytest.fixture(scope="module")
def serving_fn(exported):
    import tensorflow as tf

    loaded = tf.saved_model.load(exported.saved_model_dir)
    return loaded, loaded.signatures


@pytest.fixture(scope="module")
def awkward_rows(prepared):
    return awkward_frame(prepared.test)


def awkward_frame(test_path: str):
    """Real test rows plus rows a serving client will send sooner or later."""
    df = io.read_parquet(test_path).head(60).reset_index(drop=True)
    df = df.astype({c: object for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])})
    df = df.astype({c: "float64" for c in ("tenure_months", "support_calls")})
    numeric = ["tenure_months", "monthly_charges", "total_charges", "data_gb", "support_calls"]
    categorical = ["contract", "payment_method", "internet_service", "region"]
    df.loc[0, numeric] = np.nan  # every number missing
    df["senior_citizen"] = df["senior_citizen"].astype(object)
    df.loc[0, ["signup_date", "senior_citizen"]] = None
    df.loc[1, categorical] = None  # every category missing
    df.loc[2, categorical] = ["lifetime", "crypto", "satellite", "moon"]  # never seen in training
    df.loc[3, ["tenure_months", "data_gb", "monthly_charges"]] = [
        10_000.0,
        1e7,
        -50.0,
    ]  # out of range
    df.loc[4, "contract"] = "Two-Year"  # case matters: unseen
    return df


def _client_request(df, spec) -> dict:
    """What a serving client sends: one float per number (NaN if missing, booleans as 0/1), one
    string per timestamp (ISO 8601 as in a CSV file, "" if missing) and one string per category
    ("" if missing). Built by hand, not with the library's own helpers, so both sides of the skew
    check are independent."""
    req = {}
    for f in spec["numeric"]:
        vals = []
        for v in df[f["name"]]:
            missing = v is None or (not isinstance(v, str) and pd.isna(v))
            if f["kind"] == "timestamp":
                vals.append("" if missing else v if isinstance(v, str) else pd.Timestamp(v).isoformat())
            else:
                vals.append(math.nan if missing else float(v))
        req[f["input_name"]] = np.asarray(vals, dtype=object if f["kind"] == "timestamp" else np.float32)
    for f in spec["categorical"]:
        req[f["input_name"]] = np.asarray(
            [
                "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
                for v in df[f["name"]]
            ],
            dtype=object,
        )
    return req


def _serve(signatures, request: dict) -> dict:
    import tensorflow as tf

    out = signatures["serving_default"](**{k: tf.constant(v) for k, v in request.items()})
    return {k: v.numpy() for k, v in out.items()}


# --------------------------------------------------------------------------- train


def test_training_writes_a_model_that_loads_and_predicts(trained, prepared):
    from components._shared.model import MODEL_FILE, SPEC_FILE, load_core_model, predict_proba
    from components._shared.transform import encode

    model_dir, result = trained
    assert os.path.exists(os.path.join(model_dir, MODEL_FILE))
    assert io.read_json(os.path.join(model_dir, SPEC_FILE)) == prepared.spec
    saved = io.read_json(os.path.join(model_dir, "train_metrics.json"))
    assert saved["device"] == result.device == "CPU"
    assert len(saved["history"]["loss"]) == result.epochs_run == 2
    assert all(math.isfinite(v) for v in saved["history"]["loss"])
    assert result.metrics["eval_auc"] > 0.6  # two short epochs already find the signal

    test = io.read_parquet(prepared.test)
    a = predict_proba(load_core_model(model_dir), encode(test, prepared.spec))
    b = predict_proba(load_core_model(model_dir), encode(test, prepared.spec))
    assert a.shape == (len(test),) and np.all((a > 0) & (a < 1))
    np.testing.assert_array_equal(a, b)


def test_evaluate_scores_the_saved_model(trained, prepared):
    from components.evaluate.core import evaluate

    ev = evaluate(trained[0], prepared.test, prepared.eval)
    assert ev.metrics["rows"] == prepared.info["rows"]["test"]
    assert 0 < ev.threshold < 1 and ev.metrics["auc"] > 0.6
    assert set(ev.slices) == {f["name"] for f in prepared.spec["categorical"]}


def test_train_records_the_threshold_that_evaluate_reports_at(trained, prepared, tmp_path):
    """One choice of the decision threshold: train records the F1-maximising threshold on the eval
    split beside the model; evaluate uses it, and chooses it by the same rule only for a model
    that records none (trained before train recorded it)."""
    import shutil

    from components._shared.labels import labels
    from components._shared.metrics import binary_metrics
    from components._shared.model import load_scorer
    from components._shared.threshold import THRESHOLD_FILE, read_threshold
    from components._shared.transform import encode
    from components.evaluate.core import evaluate

    model_dir = trained[0]
    recorded = read_threshold(model_dir)
    assert recorded is not None and 0 < recorded < 1
    ev = io.read_parquet(prepared.eval)
    y, p = labels(ev, prepared.spec), load_scorer(model_dir)(encode(ev, prepared.spec))
    best_f1 = binary_metrics(y, p, recorded)["f1"]
    assert all(binary_metrics(y, p, t)["f1"] <= best_f1 + 1e-12 for t in np.linspace(0.01, 0.99, 99))
    assert evaluate(model_dir, prepared.test, prepared.eval).threshold == recorded

    other = tmp_path / "recorded-elsewhere"
    shutil.copytree(model_dir, other)
    io.write_json({"threshold": 0.123}, str(other / THRESHOLD_FILE))
    assert evaluate(str(other), prepared.test, prepared.eval).threshold == 0.123
    os.remove(other / THRESHOLD_FILE)
    assert evaluate(str(other), prepared.test, prepared.eval).threshold == recorded


def test_export_of_a_binary_model_without_a_recorded_threshold_fails_before_writing(trained, prepared, tmp_path):
    import shutil

    from components._shared.threshold import THRESHOLD_FILE
    from components.export.core import export

    model_dir = tmp_path / "model"
    shutil.copytree(trained[0], model_dir)
    os.remove(model_dir / THRESHOLD_FILE)
    with pytest.raises(ModelError, match=rf"^the binary model at {model_dir} records no decision threshold "):
        export(str(model_dir), prepared.test, str(tmp_path / "sm"), str(tmp_path / "lite"), "test-model")
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_diverging_training_raises_model_error_and_saves_nothing(prepared, tmp_path):
    model_dir = str(tmp_path / "model")
    with pytest.raises(
        ModelError,
        match=r"^training diverged: the loss became NaN or infinite "
        r"\(losses per epoch: \[nan\]\)$",
    ):
        train_small(prepared, model_dir, epochs=2, learning_rate=1e30)
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))


def test_checkpoints_resume_count_every_epoch_and_are_removed_on_success(prepared, tmp_path, monkeypatch, capsys):
    from components.train import checkpoint
    from components.train.core import TrainConfig, train

    def train_small(prepared, model_dir, epochs, checkpoint_dir, **config):
        cfg = TrainConfig(epochs=epochs, batch_size=128, seed=0, **config)
        return train(prepared.train, prepared.eval, prepared.spec, model_dir, cfg, checkpoint_dir=checkpoint_dir)

    ckpt = str(tmp_path / "root" / "checkpoints" / "job-1" / "train")
    # A first attempt that dies after its second epoch: its checkpoints stay (no clean-up).
    monkeypatch.setattr(checkpoint.Mirror, "clean", lambda self: None)
    first = train_small(prepared, str(tmp_path / "m1"), epochs=2, checkpoint_dir=ckpt, early_stopping_patience=5)
    state = io.read_json(os.path.join(ckpt, checkpoint.STATE_FILE))
    assert len(state["history"]) == 2 and state["snapshot"] == "epoch-0002"
    assert set(os.listdir(ckpt)) == {"state.json", "epoch-0002"}  # older snapshots removed
    assert state["early_stopping"]["best_epoch"] in (0, 1)
    monkeypatch.undo()
    capsys.readouterr()

    # The retry (same folder, more epochs allowed) starts at epoch 3 and counts all four.
    second = train_small(prepared, str(tmp_path / "m2"), epochs=4, checkpoint_dir=ckpt, early_stopping_patience=5)
    epochs_printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    assert epochs_printed[0] == "Epoch 3/4"
    assert second.epochs_run == 4
    assert second.history["loss"][:2] == first.history["loss"]
    assert not os.path.exists(ckpt)  # removed once training succeeded


@pytest.mark.parametrize("setting", [{"epochs": 0}, {"learning_rate": 0.0}, {"dropout": 1.0}])
def test_invalid_training_settings(setting):
    from components.train.core import TrainConfig

    with pytest.raises(ModelError, match=r"^invalid training settings: TrainConfig\("):
        TrainConfig(**setting)


def test_train_split_without_a_spec_column_names_it(prepared, tmp_path):
    from components.train.core import TrainConfig, train

    bad = str(tmp_path / "train.parquet")
    io.write_parquet(io.read_parquet(prepared.train).drop(columns="region"), bad)
    with pytest.raises(DataError, match=rf"^the data {bad} has no column 'region'"):
        train(bad, prepared.eval, prepared.spec, str(tmp_path / "model"), TrainConfig(epochs=1))


# --------------------------------------------------------------------------- export: SavedModel


def test_export_writes_a_tf_serving_layout(exported):
    sm = exported.saved_model_dir
    assert sorted(os.listdir(sm)) == [
        "assets",
        "assets.extra",
        "fingerprint.pb",
        "saved_model.pb",
        "variables",
    ]
    assert os.listdir(os.path.join(sm, "assets.extra")) == ["tf_serving_warmup_requests"]
    # Written through a temporary sibling that was renamed: nothing else is left beside it.
    assert sorted(os.listdir(os.path.dirname(sm))) == ["saved_model", "tflite"]
    assert exported.metrics["threshold"] == THRESHOLD


def test_saved_model_signatures(exported, serving_fn, prepared):
    from tensorflow.core.protobuf import saved_model_pb2

    _, signatures = serving_fn
    assert set(signatures.keys()) == {"serving_default", "predict_examples", "classification"}
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(exported.saved_model_dir, "saved_model.pb"), "rb") as fh:
        sm.ParseFromString(fh.read())
    defs = sm.meta_graphs[0].signature_def
    assert defs["classification"].method_name == "tensorflow/serving/classify"
    assert set(defs["classification"].inputs) == {"inputs"}
    assert set(defs["classification"].outputs) == {"classes", "scores"}
    assert defs["serving_default"].method_name == "tensorflow/serving/predict"
    spec = prepared.spec
    assert set(defs["serving_default"].inputs) == {
        f["input_name"] for f in spec["numeric"] + spec["categorical"]
    }
    assert set(defs["serving_default"].outputs) == {"probability", "class_id", "label"}
    assert set(defs["predict_examples"].inputs) == {"examples"}


def test_warmup_requests_are_real_predict_requests_and_replay(exported, prepared):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from components._shared.warmup import WARMUP_FILE, replay_warmup

    path = os.path.join(exported.saved_model_dir, WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(path)
    ]
    assert len(logs) == 3
    names = {f["input_name"] for f in prepared.spec["numeric"] + prepared.spec["categorical"]}
    for log in logs:
        req = log.predict_log.request
        assert (req.model_spec.name, req.model_spec.signature_name) == (
            "test-model",
            "serving_default",
        )
        assert set(req.inputs) == names
        # Dates go as the training file's strings, so TF Serving's warm-up runs the in-graph parser.
        date = tf.make_ndarray(req.inputs["signup_date"])
        assert req.inputs["signup_date"].dtype == tf.string.as_datatype_enum
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date[0].decode())
    assert replay_warmup(exported.saved_model_dir) == 3


def test_replay_warmup_rejects_a_broken_or_missing_warmup(exported, tmp_path):
    import shutil

    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from components._shared.warmup import WARMUP_FILE, replay_warmup, write_warmup

    broken = str(tmp_path / "broken")
    shutil.copytree(exported.saved_model_dir, broken)
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="test-model"))
    req.inputs["not_a_feature"].CopyFrom(tf.make_tensor_proto(np.array([1.0], dtype=np.float32)))
    write_warmup(
        broken,
        [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))],
    )
    with pytest.raises(ModelError, match=rf"^a warm-up request to {broken} failed: "):
        replay_warmup(broken)

    os.remove(os.path.join(broken, WARMUP_FILE))
    with pytest.raises(
        ModelError, match=r"has no warm-up requests \(assets.extra/tf_serving_warmup_requests\)"
    ):
        replay_warmup(broken)

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelError, match=rf"^the SavedModel at {not_a_model} does not load: "):
        replay_warmup(str(not_a_model))


def test_classes_and_labels_follow_the_threshold(serving_fn, awkward_rows, prepared):
    _, signatures = serving_fn
    out = _serve(signatures, _client_request(awkward_rows, prepared.spec))
    p = out["probability"]
    assert p.shape == (len(awkward_rows),) and np.all(np.isfinite(p))
    np.testing.assert_array_equal(out["class_id"], (p >= THRESHOLD).astype(np.int64))
    np.testing.assert_array_equal(out["label"].astype(str), np.where(p >= THRESHOLD, "yes", "no"))


# --------------------------------------------------------------------------- training/serving skew


def test_no_training_serving_skew_on_raw_rows(trained, serving_fn, awkward_rows, prepared):
    """Same raw rows: exported serving_default (raw features, lookups inside the graph) vs the
    training-time path (host-side encode + the core model)."""
    from components._shared.model import load_core_model, predict_proba
    from components._shared.transform import encode, raw_features

    spec = prepared.spec
    training = predict_proba(load_core_model(trained[0]), encode(awkward_rows, spec))
    request = _client_request(awkward_rows, spec)
    serving = _serve(serving_fn[1], request)["probability"]

    np.testing.assert_allclose(serving, training, rtol=0, atol=1e-6)
    # The awkward rows are really scored as imputed / out-of-vocabulary, not dropped or NaN.
    assert np.all(np.isfinite(serving[:5]))
    # The library's own raw-feature helper (used for warm-up requests) agrees with a hand-built request.
    for name, values in raw_features(awkward_rows, spec).items():
        if name == "signup_date":  # the same instants (the helper writes a date alone at midnight)
            assert [pd.Timestamp(v) if v else None for v in values] == [
                pd.Timestamp(v) if v else None for v in request[name]
            ]
        elif values.dtype.kind == "f":
            np.testing.assert_array_equal(values, request[name])
        else:
            assert values.astype(str).tolist() == request[name].astype(str).tolist()


def test_unseen_and_missing_categories_share_the_oov_bucket(serving_fn, awkward_rows, prepared):
    rows = pd.concat([awkward_rows.iloc[[5]]] * 3, ignore_index=True)
    rows.loc[1, "region"] = None
    rows.loc[2, "region"] = "atlantis"
    p = _serve(serving_fn[1], _client_request(rows, prepared.spec))["probability"]
    assert p[1] == pytest.approx(p[2], abs=1e-7)


def test_tf_example_signatures_match_raw_features(serving_fn, awkward_rows, prepared):
    import tensorflow as tf

    spec = prepared.spec
    request = _client_request(awkward_rows, spec)
    expected = _serve(serving_fn[1], request)["probability"]
    examples = []
    for i in range(len(awkward_rows)):
        feats = {}
        for f in spec["numeric"]:
            if f["kind"] == "timestamp":  # the date string, as in the training file
                if request[f["input_name"]][i]:
                    feats[f["input_name"]] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[request[f["input_name"]][i].encode()])
                    )
                continue
            v = float(request[f["input_name"]][i])
            if not math.isnan(v):  # a missing value is an absent feature
                feats[f["input_name"]] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
        for f in spec["categorical"]:
            v = request[f["input_name"]][i]
            if v:
                feats[f["input_name"]] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[v.encode()])
                )
        examples.append(
            tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()
        )
    batch = tf.constant(examples)

    by_example = serving_fn[1]["predict_examples"](examples=batch)["probability"].numpy()
    np.testing.assert_allclose(by_example, expected, rtol=0, atol=1e-6)
    classified = serving_fn[1]["classification"](inputs=batch)
    np.testing.assert_allclose(classified["scores"].numpy()[:, 1], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(classified["scores"].numpy().sum(axis=1), 1.0, atol=1e-6)
    assert classified["classes"].numpy()[0].astype(str).tolist() == ["no", "yes"]


def _awkward_training_file(prepared, path: str) -> str:
    """The training file's first rows with the date column as clients write it: a date-time, a
    zone offset, a fraction, Z, an empty (missing) date and strings that are no date."""
    src = os.path.join(os.path.dirname(prepared.train), "data.csv")
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))[:40]
    dates = ["2026-03-05T10:30:00+02:00", "2026-03-05 23:59:59.5", "", "2026-02-30", "yesterday",
             "2025-12-31T22:00:00-05:30", "2026-01-02T03:04:05Z", "2024-02-29", " 2025-07-03", ""]
    for row, value in zip(rows[: len(dates)], dates, strict=True):
        row["signup_date"] = value
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _csv_request(path: str, spec) -> dict:
    """A TF Serving request from a CSV file's raw text: dates and categories as the strings in the
    file, numbers parsed (booleans as 0/1), "" as missing."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    req = {}
    for f in spec["numeric"]:
        text = [r[f["name"]] for r in rows]
        if f["kind"] == "timestamp":
            req[f["input_name"]] = np.asarray(text, dtype=object)
        else:
            bools = {"True": 1.0, "False": 0.0}  # a JSON client sends booleans as 0/1
            req[f["input_name"]] = np.asarray(
                [math.nan if t == "" else bools[t] if t in bools else float(t) for t in text], dtype=np.float32
            )
    for f in spec["categorical"]:
        req[f["input_name"]] = np.asarray([r[f["name"]] for r in rows], dtype=object)
    return req


def _examples(request: dict, spec) -> list:
    import tensorflow as tf

    n = len(next(iter(request.values())))
    out = []
    for i in range(n):
        feats = {}
        for name, values in request.items():
            v = values[i]
            if isinstance(v, str):
                if v:
                    feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
            elif not math.isnan(v):
                feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return out


@pytest.mark.parametrize("which", ["training file", "awkward dates"])
def test_served_model_takes_the_raw_rows_of_the_training_file(which, trained, serving_fn, prepared, tmp_path):
    """The raw text of a CSV training file (date strings included) through serving_default,
    predict_examples and classification gives the offline scorer's probabilities on the same file
    read as the pipeline reads it (Arrow: dates parsed, or left as strings when mixed)."""
    import tensorflow as tf

    from components._shared.scoring import score

    path = os.path.join(os.path.dirname(prepared.train), "data.csv")
    if which == "awkward dates":
        path = _awkward_training_file(prepared, str(tmp_path / "awkward.csv"))
    offline_df = io.read_table(path)
    offline = score(trained[0], offline_df, prepared.spec)
    request = _csv_request(path, prepared.spec)
    assert request["signup_date"].dtype == object  # strings, as in the file

    served = _serve(serving_fn[1], request)["probability"]
    examples = tf.constant(_examples(request, prepared.spec))
    by_example = serving_fn[1]["predict_examples"](examples=examples)["probability"].numpy()
    classified = serving_fn[1]["classification"](inputs=examples)["scores"].numpy()[:, 1]
    diffs = {name: float(np.max(np.abs(p - offline))) for name, p in
             (("serving_default", served), ("predict_examples", by_example), ("classification", classified))}
    print(f"\n{which}: {len(offline)} rows, max |served - offline scorer|: {diffs}")
    assert all(d <= 1e-5 for d in diffs.values()), diffs
    assert np.all(np.isfinite(served))
    if which == "awkward dates":  # Arrow leaves mixed dates as text; 4 are missing or no date
        from components._shared.schema import column_values

        assert not pd.api.types.is_datetime64_any_dtype(offline_df["signup_date"])
        assert np.isnan(column_values(offline_df["signup_date"], "timestamp")).sum() == 4
    else:
        assert pd.api.types.is_datetime64_any_dtype(offline_df["signup_date"])


# --------------------------------------------------------------------------- export: TFLite


def test_tflite_matches_the_saved_model_within_1e_3(exported, serving_fn, awkward_rows, prepared):
    from components._shared.transform import encode
    from components.export.core import tflite_predict

    assert exported.metrics["tflite_max_abs_diff"] <= 1e-3
    assert exported.metrics["serving_skew_max_abs_diff"] <= 1e-4
    assert exported.metrics["parity_rows"] == exported.metrics["test_rows"] == prepared.info["rows"]["test"]
    assert os.path.basename(exported.tflite_path) == "model.tflite"
    tflite_dir = os.path.dirname(exported.tflite_path)
    assert io.read_json(os.path.join(tflite_dir, "transform_spec.json")) == prepared.spec

    with open(exported.tflite_path, "rb") as fh:
        lite = tflite_predict(fh.read(), encode(awkward_rows, prepared.spec))
    served = _serve(serving_fn[1], _client_request(awkward_rows, prepared.spec))["probability"]
    # The 1e-3 gate is export's, measured on its test-split sample (asserted above). These hand-made
    # rows (missing dates, unseen categories) are outside that sample, and float16 weights move a
    # probability near 0.5 by up to ~1e-3 (seen: 1.02e-3 on one row after the split rule changed);
    # a wrong imputation or vocabulary on the TFLite side would differ by far more than 2e-3.
    assert np.max(np.abs(lite - served)) <= 2e-3


def test_export_fails_when_tflite_parity_exceeds_the_bound(trained, prepared, tmp_path):
    from components.export.core import export

    with pytest.raises(
        ModelError,
        match=r"^the TFLite model differs from the SavedModel by up to .* in probability, "
        r"above the bound 1e-09 \(none quantization; float16 differed by .*\)$",
    ):
        export(
            trained[0],
            prepared.test,
            str(tmp_path / "sm"),
            str(tmp_path / "lite"),
            "test-model",
            max_parity_diff=1e-9,
        )


def test_auto_quantization_falls_back_to_float32_when_float16_misses_the_bound(trained, prepared, tmp_path):
    """float16 parity here is ~1e-4: with a 1e-5 bound, "auto" ships float32 weights and says so;
    "float16" asked for explicitly fails instead."""
    from components.export.core import export

    result = export(trained[0], prepared.test, str(tmp_path / "sm"), str(tmp_path / "lite"), "test-model",
                    quantization="auto", max_parity_diff=1e-5)
    m = result.metrics
    assert m["tflite_quantization"] == "none" and m["tflite_max_abs_diff"] <= 1e-5
    assert m["tflite_float16_max_abs_diff"] > 1e-5 and m["tflite_bytes"] > m["tflite_float16_bytes"]
    with pytest.raises(ModelError, match=r"\(float16 quantization\)$"):
        export(trained[0], prepared.test, str(tmp_path / "sm2"), str(tmp_path / "lite2"), "test-model",
               quantization="float16", max_parity_diff=1e-5)


def test_unknown_tflite_quantization_fails_before_writing(trained, prepared, tmp_path):
    from components.export.core import export

    with pytest.raises(
        ModelError, match=r"^unknown TFLite quantization 'int4': use auto, float16, dynamic, none$"
    ):
        export(
            trained[0],
            prepared.test,
            str(tmp_path / "sm"),
            str(tmp_path / "lite"),
            "test-model",
            quantization="int4",
        )
    assert os.listdir(tmp_path) == []


def test_reexport_replaces_the_folder_atomically(trained, prepared, tmp_path):
    from components.export.core import export

    target = tmp_path / "saved_model"
    target.mkdir()
    (target / "stale.txt").write_text("from an older export")
    result = export(
        trained[0],
        prepared.test,
        str(target),
        str(tmp_path / "tflite"),
        "test-model",
        threshold=0.7,
    )
    assert not (target / "stale.txt").exists()
    assert (target / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["saved_model", "tflite"]
    assert result.metrics["threshold"] == 0.7


def test_infinite_numeric_inputs_give_finite_probabilities():
    """0 * inf is NaN: the log/no-log choice must select, not blend, or +-inf inputs score NaN."""
    import numpy as np

    from components._shared.model import build_core_model

    spec = {"numeric": [{"name": "a", "input_name": "a", "kind": "numeric", "fill": 1.0, "log": True, "mean": 0.5, "std": 1.0},
                        {"name": "b", "input_name": "b", "kind": "numeric", "fill": 0.0, "log": False, "mean": 0.0, "std": 2.0}],
            "categorical": []}
    core = build_core_model(spec, hidden_units=(4,))
    x = np.array([[np.inf, np.inf], [-np.inf, -np.inf], [np.nan, np.nan], [1.0, 2.0]], dtype=np.float32)
    p = np.asarray(core({"numeric": x})).ravel()
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
