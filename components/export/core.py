"""Export: a SavedModel for TF Serving over raw features, warm-up requests, and TFLite.

SavedModel signatures take the raw values of the training file, so no client re-implements a
transform:
  * ``serving_default`` — one named tensor per raw feature: numbers (and booleans as 0/1)
    float32, timestamps as strings in the training file's format (ISO 8601 dates or date-times,
    optional zone; parsed in the graph exactly as training parsed them, see
    ``components/_shared/timestamps.py``; "" or an unparseable string is a missing value, which
    the model imputes), categories as strings. Returns, per task (``_shared/task.py``):
    binary ``probability`` (N,), ``class_id`` (1 = positive, at the evaluated threshold) and
    ``label`` (the raw label value); multiclass ``probabilities`` (N, K) in the spec's
    ``classes`` order, ``class_id`` (int64 argmax) and ``label`` (``classes[class_id]``);
    regression ``prediction`` (N,) in the label's units.
  * ``predict_examples`` — the same over serialized ``tf.Example`` protos (input ``examples``):
    numbers in ``float_list``, timestamps and categories in ``bytes_list``; an absent feature is
    a missing value.
  * ``classification`` (binary, multiclass) — TF Serving's Classify API (method
    ``tensorflow/serving/classify``, input ``inputs``, outputs ``classes`` (N, K) class strings and
    ``scores`` (N, K) probabilities), for the classify endpoint and batch tools; its examples
    are read like ``predict_examples``.
  * ``regression`` (regression) — TF Serving's Regress API (method ``tensorflow/serving/regress``,
    input ``inputs``, output ``outputs`` (N,) in the label's units).

Warm-up requests (``_shared/warmup.py``) exercise ``serving_default`` and, for multiclass and
regression, the Classify or Regress signature.

Through TF Serving's REST API (checked against its JSON decoder, ``json_tensor.cc``): a float32
input of ``serving_default`` takes JSON integers as well as decimals (an integer must be within
2**24 to be exact; larger values go as decimals), a missing number is ``NaN`` (not ``null``) and a
boolean is 0/1 (JSON ``true`` is refused for a float input). In ``:classify`` and tf.Example JSON,
an integer becomes an ``int64_list``, which a float feature refuses: send numbers as decimals
(``12.0``) there, or build ``float_list`` features.

TFLite: the *core* model (numbers + vocabulary indices) is converted, so the interpreter
needs only builtin ops; it takes the pre-transformed numbers, not raw rows: timestamps as
float days since 1970-01-01 UTC and categories as vocabulary indices, from the transform spec
shipped beside the ``.tflite`` file (``transform_spec.json``) applied by
``components._shared.transform.encode`` — the same mapping as the SavedModel's lookup tables
and date parser. A regression ``.tflite`` outputs the standardised prediction ``z``; the
host computes ``label_mean + label_std * z`` from the same spec
(``components._shared.model.tflite_core``). Parity between the two is measured on a seeded
sample of the test split (``PARITY_ROWS``) on every output column and bounded: in probability,
for regression in label standard deviations (``parity_scale``).

The binary decision threshold comes from the model folder (train chose it on the eval split,
``_shared/threshold.py``), so export needs nothing from evaluate and runs beside it. The
SavedModel is loaded once after it is written, as TF Serving would: its warm-up requests are
replayed on it and its digest (every file, warm-up requests included) goes into the metrics, so
deploy can tell an identical pushed copy from one it must load and replay itself.

Writes are atomic: everything goes to a temporary sibling folder that is renamed into
place, so TF Serving never sees a half-written version.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from typing import Optional

from components._shared import io
from components._shared.errors import ModelError
from components._shared.model import (
    SPEC_FILE,
    convert_tflite,
    load_core_model,
    parity_scale,
    predict_proba,
    tflite_predict,
)
from components._shared.params import PARAMS
from components._shared.task import task_of
from components._shared.threshold import THRESHOLD_FILE, read_threshold
from components._shared.timestamps import days_since_epoch
from components._shared.transform import encode, raw_features
from components._shared.warmup import (
    load_saved_model,
    replay_warmup,
    verified_digest,
    warmup_requests,
    write_warmup,
)

logger = logging.getLogger(__name__)

CLASSIFY_METHOD = "tensorflow/serving/classify"
# TFLite weight formats; "auto" is float16 unless its parity misses the bound, then float32 ("none").
QUANTIZATIONS = ("auto", "float16", "dynamic", "none")
REGRESS_METHOD = "tensorflow/serving/regress"
API_METHODS = {"classification": CLASSIFY_METHOD, "regression": REGRESS_METHOD}
PARITY_UNITS = {"binary": "probability", "multiclass": "class probability",
                "regression": "label standard deviations"}
# TFLite parity and training/serving skew are measured on a seeded sample of this many test rows (the
# metrics say so: parity_rows of test_rows). The largest difference grows slowly with the rows: on the
# 1M-row churn model 1.8e-4 over 2k rows, 2.1e-4 over 20k, 2.9e-4 over 100k and 3.1e-4 over all 199k
# (bound 1e-3; python -m tests.benchmarks.export_cost), while 100k rows cost about 0.5 s more CPU.
PARITY_ROWS = 20_000
# The serving_default output that TFLite parity and training/serving skew are measured on.
PRIMARY_OUTPUT = {"binary": "probability", "multiclass": "probabilities", "regression": "prediction"}


@dataclasses.dataclass
class ExportResult:
    saved_model_dir: str
    tflite_path: str
    metrics: dict


def _serving_module(core, spec: dict, threshold: float):
    import tensorflow as tf

    task = task_of(spec).name
    num, cat = spec["numeric"], spec["categorical"]
    dates = [f for f in num if f["kind"] == "timestamp"]
    numbers = [f for f in num if f["kind"] != "timestamp"]
    if task == "multiclass":
        class_names = [str(c) for c in spec.get("classes") or []]
        if len(class_names) < 2:
            raise ModelError(f"the transform spec of a multiclass model lists {len(class_names)} classes: it needs 2 or more")
    else:
        class_names = [str(spec.get("negative_label") or "0"), str(spec.get("positive_label") or "1")]

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.core = core
            self.tables = [
                tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        tf.constant(f["vocab"] or [""], dtype=tf.string),
                        tf.range(1, max(1, len(f["vocab"])) + 1, dtype=tf.int32)),
                    default_value=0)
                for f in cat
            ]
            if task == "binary":
                self.threshold = tf.Variable(float(threshold), trainable=False, name="threshold")
            self.labels = tf.constant(class_names)

        def _core(self, feats):
            """The core model's output on raw features: (N, 1) or, for multiclass, (N, K)."""
            inputs = {}
            if num:
                inputs["numeric"] = tf.stack([self._number(f, feats[f["input_name"]]) for f in num], axis=1)
            if cat:
                inputs["categorical"] = tf.stack(
                    [t.lookup(tf.reshape(feats[f["input_name"]], [-1])) for f, t in zip(cat, self.tables, strict=True)], axis=1)
            return self.core(inputs, training=False)

        @staticmethod
        def _number(f, value):
            if f["kind"] == "timestamp":  # the training file's string -> days since 1970, in the graph
                return days_since_epoch(value)
            return tf.cast(tf.reshape(value, [-1]), tf.float32)

        def _outputs(self, out):
            if task == "regression":
                return {"prediction": tf.reshape(out, [-1])}
            if task == "multiclass":
                cls = tf.argmax(out, axis=1, output_type=tf.int64)
                return {"probabilities": out, "class_id": cls, "label": tf.gather(self.labels, cls)}
            p = tf.reshape(out, [-1])
            cls = tf.cast(p >= self.threshold, tf.int64)
            return {"probability": p, "class_id": cls, "label": tf.gather(self.labels, cls)}

        def _scores(self, out):
            """Classify API scores, one column per class of ``self.labels``."""
            if task == "multiclass":
                return out
            p = tf.reshape(out, [-1])
            return tf.stack([1.0 - p, p], axis=1)

        def _parse(self, serialized):
            feature_spec = {f["input_name"]: tf.io.FixedLenFeature([], tf.float32, default_value=float("nan")) for f in numbers}
            feature_spec.update({f["input_name"]: tf.io.FixedLenFeature([], tf.string, default_value="") for f in dates + cat})
            return tf.io.parse_example(serialized, feature_spec)

    module = Serving()
    sig = {f["input_name"]: tf.TensorSpec([None], tf.float32, name=f["input_name"]) for f in numbers}
    sig.update({f["input_name"]: tf.TensorSpec([None], tf.string, name=f["input_name"]) for f in dates + cat})

    # autograph=False: the graphs have no Python control flow on tensors, and converting their
    # source (days_since_epoch, the Keras layers) took about a third of export's time.
    @tf.function(input_signature=[sig], autograph=False)
    def serve(features):
        return module._outputs(module._core(features))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def serve_examples(examples):
        return module._outputs(module._core(module._parse(examples)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
    def classify(inputs):
        scores = module._scores(module._core(module._parse(inputs)))
        classes = tf.tile(tf.expand_dims(module.labels, 0), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
    def regress(inputs):
        return {"outputs": tf.reshape(module._core(module._parse(inputs)), [-1])}

    module.serve, module.serve_examples = serve, serve_examples
    signatures = {
        "serving_default": serve.get_concrete_function(),
        "predict_examples": serve_examples.get_concrete_function(),
    }
    if task == "regression":
        module.regress = regress
        signatures["regression"] = regress.get_concrete_function()
    else:
        module.classify = classify
        signatures["classification"] = classify.get_concrete_function()
    return module, signatures


def _mark_api_signatures(saved_model_dir: str) -> None:
    """TF2 saves every signature as Predict; TF Serving's Classify and Regress APIs look for
    their own method names (``classification`` -> classify, ``regression`` -> regress)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as fh:
        sm.ParseFromString(fh.read())
    for mg in sm.meta_graphs:
        for name, method in API_METHODS.items():
            if name in mg.signature_def:
                mg.signature_def[name].method_name = method
    with open(path, "wb") as fh:
        fh.write(sm.SerializeToString())


def _single_row_latency_ms(fn, repeats: int = 200) -> float:
    import numpy as np

    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def export(
    model_dir: str,
    test_path: str,
    saved_model_dir: str,
    tflite_dir: str,
    model_name: str,
    threshold: Optional[float] = None,
    quantization: str = PARAMS.tflite_quantization,
    max_parity_diff: float = PARAMS.max_tflite_diff,
    parity_rows: int = PARITY_ROWS,
) -> ExportResult:
    """Write the SavedModel (with warm-up requests) and the TFLite model; measure parity.

    Args:
        threshold: A binary model's decision threshold (``class_id``); None takes the one train
            recorded beside the model (:mod:`components._shared.threshold`).
        parity_rows: TFLite parity and training/serving skew are measured on a seeded sample of
            this many test rows (all of them when fewer).

    Raises:
        ModelError: Parity between TFLite and SavedModel exceeds ``max_parity_diff``,
            or the SavedModel fails its own warm-up requests, or a binary model records no threshold.
    """
    import numpy as np
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown TFLite quantization {quantization!r}: use {', '.join(QUANTIZATIONS)}")
    t0 = time.perf_counter()
    spec = io.read_json(os.path.join(model_dir, SPEC_FILE))
    task = task_of(spec).name
    if threshold is None and task == "binary":
        threshold = read_threshold(model_dir)
        if threshold is None:
            raise ModelError(f"the binary model at {model_dir} records no decision threshold ({THRESHOLD_FILE}, "
                             f"written by train): retrain it, or pass the threshold")
    core = load_core_model(model_dir)
    columns = [f["name"] for f in spec["numeric"] + spec["categorical"]]
    # The seeded sample is read one row group at a time (all rows when fewer): never the whole split.
    test_rows = io.parquet_num_rows(test_path)
    test = io.sample_parquet(test_path, parity_rows, seed=0, columns=columns)

    # SavedModel, written to a temporary sibling and renamed into place; loaded once, as TF Serving
    # would, for the warm-up replay and the parity checks below.
    with io.replace_dir_atomic(saved_model_dir) as tmp:
        module, signatures = _serving_module(core, spec, 0.5 if threshold is None else threshold)
        tf.saved_model.save(module, tmp, signatures=signatures)
        _mark_api_signatures(tmp)
        write_warmup(tmp, warmup_requests(spec, test, model_name))
        loaded = load_saved_model(tmp)
        warmup_count = replay_warmup(tmp, loaded=loaded)
        digest = verified_digest(tmp)

    serve = loaded.signatures["serving_default"]
    feats = raw_features(test, spec)
    n = len(test)
    sm_out = [serve(**{k: tf.constant(v[s:s + 8192]) for k, v in feats.items()})[PRIMARY_OUTPUT[task]].numpy()
              for s in range(0, n, 8192)]
    # Every output column as (rows, columns): 1 for binary and regression, K for multiclass.
    sm_out = np.concatenate(sm_out).reshape(n, -1) if sm_out else np.zeros((0, 1), dtype=np.float32)

    arrays = encode(test, spec)
    # Regression is compared in label standard deviations: a difference in label units would mean
    # something else on every dataset (see parity_scale).
    scale = parity_scale(spec)
    fallback = {}
    used = "float16" if quantization == "auto" else quantization
    tflite_bytes = convert_tflite(core, used, spec)
    lite_out = np.asarray(tflite_predict(tflite_bytes, arrays, spec)).reshape(n, -1)
    diff = np.abs(lite_out - sm_out) / scale
    if quantization == "auto" and len(diff) and not float(diff.max()) <= max_parity_diff:
        # float16 rounds too much for this model (e.g. a heavy-tailed regression target): ship float32
        # weights, twice the size, rather than a TFLite model that disagrees with the served one.
        fallback = {"tflite_float16_max_abs_diff": float(diff.max()), "tflite_float16_bytes": len(tflite_bytes)}
        logger.warning("float16 TFLite differs from the SavedModel by %.2e %s (bound %.0e): exporting float32 weights",
                       diff.max(), PARITY_UNITS[task], max_parity_diff)
        used = "none"
        tflite_bytes = convert_tflite(core, used, spec)
        lite_out = np.asarray(tflite_predict(tflite_bytes, arrays, spec)).reshape(n, -1)
        diff = np.abs(lite_out - sm_out) / scale
    tflite_path = os.path.join(tflite_dir, "model.tflite")
    io.write_bytes_atomic(tflite_bytes, tflite_path)
    io.write_json(spec, os.path.join(tflite_dir, SPEC_FILE))
    keras_out = np.asarray(predict_proba(core, arrays)).reshape(n, -1)
    skew = float(np.max(np.abs(keras_out - sm_out)) / scale) if n else 0.0

    one_feats = {k: tf.constant(v[:1]) for k, v in feats.items()}
    sm_latency = _single_row_latency_ms(lambda: serve(**one_feats))
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=tflite_bytes).get_signature_runner()
    one_arrays = {k: v[:1] for k, v in arrays.items()}
    lite_latency = _single_row_latency_ms(lambda: runner(**one_arrays))
    sm_size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(saved_model_dir) for f in fs)
    metrics = {
        "tflite_max_abs_diff": float(diff.max()) if len(diff) else 0.0,
        "tflite_mean_abs_diff": float(diff.mean()) if len(diff) else 0.0,
        "serving_skew_max_abs_diff": skew,
        "parity_rows": int(len(test)),  # a seeded sample of the test split (test_rows)
        "test_rows": int(test_rows),
        "warmup_requests": warmup_count,
        "tflite_bytes": len(tflite_bytes),
        "saved_model_bytes": int(sm_size),
        "tflite_latency_ms": lite_latency,
        "saved_model_latency_ms": sm_latency,
        "export_seconds": time.perf_counter() - t0,
        "tflite_quantization": used,
        **fallback,
        "task": task,
        "signatures": list(signatures),
        # What answered the warm-up requests, byte for byte (deploy skips the replay on an equal copy).
        "saved_model_digest": digest,
    }
    if task == "binary":
        metrics["threshold"] = float(threshold)
    if task == "multiclass":  # how often TFLite picks another class than the SavedModel
        metrics["tflite_class_agreement"] = float(np.mean(lite_out.argmax(1) == sm_out.argmax(1))) if n else 1.0
    if task == "regression":
        metrics["tflite_max_abs_diff_label_units"] = float(np.max(np.abs(lite_out - sm_out))) if n else 0.0
    logger.info("exported %s: %s", saved_model_dir, metrics)
    # "not <=" so that a NaN difference (a model that outputs NaN) fails as well.
    bad_lite = not metrics["tflite_max_abs_diff"] <= max_parity_diff
    bad_skew = not skew <= 1e-4
    if bad_lite or bad_skew:  # leave nothing behind that could be mistaken for a good export
        shutil.rmtree(saved_model_dir, ignore_errors=True)
        if os.path.exists(tflite_path):
            os.remove(tflite_path)
    if bad_lite:
        raise ModelError(
            f"the TFLite model differs from the SavedModel by up to {metrics['tflite_max_abs_diff']:.2e} "
            f"in {PARITY_UNITS[task]}, above the bound {max_parity_diff:.0e} ({used} quantization"
            + (f"; float16 differed by {fallback['tflite_float16_max_abs_diff']:.2e}" if fallback else "") + ")")
    if bad_skew:
        raise ModelError(f"the SavedModel's raw-feature path differs from the training path by {skew:.2e} "
                         f"in {PARITY_UNITS[task]}: training/serving skew")
    return ExportResult(saved_model_dir, tflite_path, metrics)
