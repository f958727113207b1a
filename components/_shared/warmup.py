"""TF Serving warm-up requests: written into a SavedModel by export, replayed by deploy (and
rollback) against the copy that is about to be served, the way TF Serving loads a version.

TF Serving reads them from ``<version>/assets.extra/tf_serving_warmup_requests``.
:func:`verified_digest` records which bytes answered them, so deploy need not repeat the replay
on an identical copy.
TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import os

from components._shared.errors import ModelError
from components._shared.task import task_of
from components._shared.transform import raw_features

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _example(feats: dict, i: int):
    """Row ``i`` of raw features as a tf.Example, as ``predict_examples`` and the Classify/Regress
    APIs read it: numbers in ``float_list`` (NaN for missing), dates and categories in ``bytes_list``."""
    import numpy as np
    import tensorflow as tf

    feature = {}
    for k, v in feats.items():
        value = v[i]
        if isinstance(value, (str, bytes)):
            raw = value.encode() if isinstance(value, str) else value
            feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
        else:
            feature[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(np.float32(value))]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def warmup_requests(spec: dict, sample, model_name: str, n: int = 3) -> list:
    """PredictionLog records for TF Serving warm-up (real rows of the test split), built as a client
    sends them (:func:`components._shared.transform.raw_features`): dates go as strings, so TF
    Serving's warm-up runs the SavedModel's date parser.

    ``n`` Predict requests to ``serving_default`` for every task; multiclass adds ``n`` Classify
    requests (``classification``), regression ``n`` Regress requests (``regression``), so TF
    Serving has run the graph each API uses before the first client request. (Binary keeps its
    Predict requests only, as its exports always had.)
    """
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        input_pb2,
        model_pb2,
        predict_pb2,
        prediction_log_pb2,
        regression_pb2,
    )

    task = task_of(spec).name
    feats = raw_features(sample, spec, rows=n)
    rows = min(n, len(sample))
    logs = []
    for i in range(rows):
        req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
        for k, v in feats.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v[i:i + 1]))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req)))
    for i in range(rows):
        examples = input_pb2.Input(example_list=input_pb2.ExampleList(examples=[_example(feats, i)]))
        if task == "multiclass":
            creq = classification_pb2.ClassificationRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="classification"), input=examples)
            logs.append(prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=creq)))
        elif task == "regression":
            rreq = regression_pb2.RegressionRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="regression"), input=examples)
            logs.append(prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=rreq)))
    return logs


def write_warmup(saved_model_dir: str, logs: list) -> str:
    import tensorflow as tf

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as w:
        for log in logs:
            w.write(log.SerializeToString())
    return path


def _call(signatures, log):
    """(signature name, outputs) of one warm-up record, sent the way TF Serving's API would."""
    import tensorflow as tf

    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        req = log.predict_log.request
        name = req.model_spec.signature_name or "serving_default"
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
    elif kind in ("classify_log", "regress_log"):
        req = getattr(log, kind).request
        name = req.model_spec.signature_name or ("classification" if kind == "classify_log" else "regression")
        examples = req.input.example_list.examples
        inputs = {"inputs": tf.constant([e.SerializeToString() for e in examples], dtype=tf.string)}
    else:
        raise ValueError(f"a {kind or 'empty'} record, which only Predict, Classify and Regress warm-ups are")
    if name not in signatures:
        raise ValueError(f"the model has no signature {name!r}")
    return name, signatures[name](**inputs)


def load_saved_model(saved_model_dir: str):
    """``tf.saved_model.load`` of a SavedModel that must have a ``serving_default`` signature.

    Raises:
        ModelError: It does not load or has no ``serving_default``.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(saved_model_dir)
        if "serving_default" not in loaded.signatures:
            raise ValueError("it has no serving_default signature")
    except Exception as exc:
        raise ModelError(f"the SavedModel at {saved_model_dir} does not load: {exc}") from exc
    return loaded


def replay_warmup(saved_model_dir: str, loaded=None) -> int:
    """Load a SavedModel as TF Serving would and send it its warm-up requests (Predict, Classify
    and Regress records, each to the signature it names); returns the count.

    Args:
        loaded: The folder already loaded by :func:`load_saved_model` (export loads it once for
            the warm-up replay and its parity checks); None loads it here.

    Raises:
        ModelError: The model does not load, or a request fails or returns a non-finite number
            (in any floating output: ``probability``, ``probabilities``, ``prediction``, ``scores``,
            ``outputs``).
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    signatures = dict((loaded if loaded is not None else load_saved_model(saved_model_dir)).signatures)
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not os.path.exists(path):
        raise ModelError(f"the SavedModel at {saved_model_dir} has no warm-up requests ({WARMUP_FILE})")
    count = 0
    for raw in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        try:
            name, out = _call(signatures, log)
        except Exception as exc:
            raise ModelError(f"a warm-up request to {saved_model_dir} failed: {exc}") from exc
        for key, value in sorted(out.items()):
            if value.dtype.is_floating and not np.all(np.isfinite(value.numpy())):
                raise ModelError(f"a warm-up request to {saved_model_dir} returned a non-finite {key} ({name})")
        count += 1
    if count == 0:
        raise ModelError(f"the warm-up file of {saved_model_dir} holds no requests")
    return count


def verified_digest(saved_model_dir: str) -> str:
    """SHA-256 over every file of a local SavedModel folder (relative names and bytes), its warm-up
    requests included (the registry's ``fingerprint`` leaves them out).

    Export records it after the folder answered its warm-up requests; deploy compares the pushed
    copy with it (:mod:`components.deploy.warmup`): equal, the replay would repeat what export
    did on the same bytes; different in any byte, deploy loads and replays the copy itself.
    """
    import hashlib

    h = hashlib.sha256()
    files = sorted(os.path.relpath(os.path.join(r, f), saved_model_dir).replace(os.sep, "/")
                   for r, _, fs in os.walk(saved_model_dir) for f in fs)
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(saved_model_dir, *rel.split("/")), "rb") as fh:
            data = fh.read()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
