"""TF Serving warm-up requests: written into a SavedModel by export, replayed by deploy (and
rollback) against the copy that is about to be served, the way TF Serving loads a version.

TF Serving reads them from ``<version>/assets.extra/tf_serving_warmup_requests``.
TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import os

from components._shared.errors import ModelError
from components._shared.transform import raw_features

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def warmup_requests(spec: dict, sample, model_name: str, n: int = 3) -> list:
    """PredictionLog records for TF Serving warm-up (real rows of the test split), built as a client
    sends them (:func:`components._shared.transform.raw_features`): dates go as strings, so TF
    Serving's warm-up runs the SavedModel's date parser."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    feats = raw_features(sample, spec, rows=n)
    logs = []
    for i in range(min(n, len(sample))):
        req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
        for k, v in feats.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v[i:i + 1]))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req)))
    return logs


def write_warmup(saved_model_dir: str, logs: list) -> str:
    import tensorflow as tf

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as w:
        for log in logs:
            w.write(log.SerializeToString())
    return path


def replay_warmup(saved_model_dir: str) -> int:
    """Load a SavedModel as TF Serving would and send it its warm-up requests; returns the count.

    Raises:
        ModelError: The model does not load, or a request fails or returns non-finite values.
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    try:
        loaded = tf.saved_model.load(saved_model_dir)
        fn = loaded.signatures["serving_default"]
    except Exception as exc:
        raise ModelError(f"the SavedModel at {saved_model_dir} does not load: {exc}") from exc
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not os.path.exists(path):
        raise ModelError(f"the SavedModel at {saved_model_dir} has no warm-up requests ({WARMUP_FILE})")
    count = 0
    for raw in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        inputs = {k: tf.make_ndarray(v) for k, v in log.predict_log.request.inputs.items()}
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except Exception as exc:
            raise ModelError(f"a warm-up request to {saved_model_dir} failed: {exc}") from exc
        if not np.all(np.isfinite(out["probability"].numpy())):
            raise ModelError(f"a warm-up request to {saved_model_dir} returned a non-finite probability")
        count += 1
    if count == 0:
        raise ModelError(f"the warm-up file of {saved_model_dir} holds no requests")
    return count
