"""The model format shared by train, evaluate, export, compare and the monitor: the Keras core
model (preprocessing layers built from the transform spec, then an MLP head) and its TFLite scorer.

The *core* model takes two tensors, ``numeric`` (float32, NaN for missing) and
``categorical`` (int32 vocabulary indices, 0 for out-of-vocabulary); imputation, log
transforms, normalisation and embeddings happen inside it, and so do the optional bucket
and cross indices of the spec's ``"buckets"`` and ``"crosses"`` (int32 arithmetic only, so
float16 TFLite and mixed precision compute the same indices as float32 Keras). The serving model (see
``components/export``) adds the string-to-index lookup tables in front, so clients send
raw features. Training feeds the core directly with indices computed by
``_shared.transform.encode`` — the same mapping as the lookup tables, done once per row
instead of once per epoch.

TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Optional

from components._shared import io
from components._shared.errors import DataError

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
SPEC_FILE = "transform_spec.json"
SCORER_FILE = "scorer.tflite"
SCORER_MAX_DIFF = 1e-4  # in probability (regression: label std); the SavedModel's skew bound is the same
_INT32_MIN = -(2**31)


def cross_hash_multiplier(size: int) -> int:
    """The multiplier of the hashed cross index, a prime not dividing ``size``.

    A hashed cross over columns with indices ``i_1 .. i_n`` gets ``h = 0``, then for each
    column ``h = (h * m + i_k mod size) mod size``. With ``size <= 2**20`` and ``m < 2**11``
    every intermediate value stays below ``2**31``, so int32 is exact everywhere.
    """
    return 2039 if size % 2039 else 2029


def float32_order_key(values):
    """int32 keys ordered like the float32 values (numpy; the model computes the same in-graph).

    float16 TFLite quantization rounds float constants (a boundary of 19877.3 would become
    19872), so bucket boundaries are compared as integer keys of their bit patterns instead.
    """
    import numpy as np

    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, _INT32_MIN - bits).astype(np.int32)


def _layers():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="kfp_tf_gate")
    class NumericPreprocess(keras.layers.Layer):
        """NaN -> fill value, optional log1p, z-score, clip to +-10."""

        def __init__(self, fill, mean, std, log, **kwargs):
            super().__init__(**kwargs)
            self.fill, self.mean, self.std, self.log = list(fill), list(mean), list(std), list(log)

        @staticmethod
        def _split(values):
            """hi + lo == value, with hi exact in float16: float16 TFLite quantization of the
            constants then loses nothing that matters (a mean of 19877 would lose 4 units)."""
            import numpy as np

            v = np.asarray(values, dtype=np.float64)
            hi = np.where(np.abs(v) < 65000, v.astype(np.float16).astype(np.float64), v)
            return (ops.convert_to_tensor(hi.astype("float32")),
                    ops.convert_to_tensor((v - hi).astype("float32")))

        def call(self, x):
            x = ops.cast(x, "float32")
            fill_hi, fill_lo = self._split(self.fill)
            x = ops.where(ops.isnan(x), fill_hi + fill_lo, x)
            logm = ops.convert_to_tensor([1.0 if v else 0.0 for v in self.log], dtype="float32")
            # where, not a 0/1 blend: 0 * inf would turn an infinite input into NaN.
            x = ops.where(logm > 0.0, ops.log1p(ops.maximum(x, 0.0)), x)
            mean_hi, mean_lo = self._split(self.mean)
            z = (x - mean_hi - mean_lo) / ops.convert_to_tensor(self.std, "float32")
            return ops.clip(z, -10.0, 10.0)

        def get_config(self):
            return {**super().get_config(), "fill": self.fill, "mean": self.mean, "std": self.std, "log": self.log}

    @keras.saving.register_keras_serializable(package="kfp_tf_gate")
    class BucketIndex(keras.layers.Layer):
        """int32 bucket indices of some ``numeric`` columns: how many boundaries are <= the value.

        Compares int32 keys of the float32 bit patterns (see :func:`float32_order_key`), never
        float constants, so float16 TFLite keeps every boundary exact. A missing value gets its
        fill value's bucket. Build it with ``dtype="float32"``: under a mixed_float16 policy
        Keras would otherwise round the input to float16 before it reaches ``call``.
        """

        def __init__(self, columns, boundaries, fill, **kwargs):
            super().__init__(**kwargs)
            self.columns, self.fill = [int(c) for c in columns], [float(v) for v in fill]
            self.boundaries = [[float(b) for b in bs] for bs in boundaries]

        def call(self, x):
            import numpy as np

            x = ops.take(ops.cast(x, "float32"), ops.convert_to_tensor(self.columns, "int32"), axis=1)
            bits = ops.view(x, "int32")
            key = ops.where(bits >= 0, bits, ops.convert_to_tensor(_INT32_MIN, "int32") - bits)
            # Ragged boundaries padded with INT32_MAX, which no non-NaN key reaches.
            width = max([1] + [len(bs) for bs in self.boundaries])
            table = np.full((len(self.columns), width), np.iinfo(np.int32).max, dtype=np.int32)
            for j, bs in enumerate(self.boundaries):
                table[j, :len(bs)] = float32_order_key(bs)
            idx = ops.sum(ops.cast(ops.expand_dims(key, -1) >= ops.convert_to_tensor(table), "int32"), axis=-1)
            fill_idx = [int(np.sum(np.float32(f) >= np.asarray(bs, dtype=np.float32)))
                        for f, bs in zip(self.fill, self.boundaries, strict=True)]
            return ops.where(ops.isnan(x), ops.convert_to_tensor(fill_idx, "int32"), idx)

        def get_config(self):
            return {**super().get_config(), "columns": self.columns, "boundaries": self.boundaries, "fill": self.fill}

    @keras.saving.register_keras_serializable(package="kfp_tf_gate")
    class CrossIndex(keras.layers.Layer):
        """int32 cross indices from int32 component indices (categorical and bucket columns).

        ``sources[c]`` lists cross ``c``'s columns (positions in the concatenated inputs) and
        ``sizes[k]`` how many values column ``k`` takes. Exact crosses are row-major indices
        over their columns; hashed ones follow :func:`cross_hash_multiplier`.
        """

        def __init__(self, sources, sizes, cross_sizes, hashed, **kwargs):
            super().__init__(**kwargs)
            self.sources = [[int(k) for k in src] for src in sources]
            self.sizes, self.cross_sizes = [int(v) for v in sizes], [int(v) for v in cross_sizes]
            self.hashed = [bool(h) for h in hashed]

        def call(self, inputs):
            parts = [ops.cast(t, "int32") for t in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
            comp = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)
            # Out-of-range indices fall back to the nearest valid one, as in CategoricalEmbedding.
            comp = ops.clip(comp, 0, ops.convert_to_tensor([v - 1 for v in self.sizes], "int32"))
            out = []
            for src, size, hashed in zip(self.sources, self.cross_sizes, self.hashed, strict=True):
                cols = [comp[:, k] for k in src]
                if hashed:
                    mult = cross_hash_multiplier(size)
                    h = ops.mod(cols[0], size)
                    for col in cols[1:]:
                        h = ops.mod(h * mult + ops.mod(col, size), size)
                else:
                    h, stride = None, 1
                    for k, col in zip(reversed(src), reversed(cols), strict=True):
                        term = col * stride if stride > 1 else col
                        h = term if h is None else h + term
                        stride *= self.sizes[k]
                out.append(h)
            return ops.stack(out, axis=1)

        def get_config(self):
            return {**super().get_config(), "sources": self.sources, "sizes": self.sizes,
                    "cross_sizes": self.cross_sizes, "hashed": self.hashed}

    @keras.saving.register_keras_serializable(package="kfp_tf_gate")
    class CategoricalEmbedding(keras.layers.Layer):
        """One embedding table for a group of index features: feature ``j`` takes indices
        0..vocab_sizes[j] (for categoricals index 0 = OOV; buckets and crosses use the same layer)."""

        def __init__(self, vocab_sizes, dim, **kwargs):
            super().__init__(**kwargs)
            self.vocab_sizes, self.dim = list(vocab_sizes), int(dim)
            offsets, total = [], 0
            for v in self.vocab_sizes:
                offsets.append(total)
                total += v + 1
            self.offsets, self.total = offsets, total

        def build(self, input_shape):
            self.table = self.add_weight(shape=(self.total, self.dim), initializer="uniform", name="table")

        def call(self, idx):
            idx = ops.cast(idx, "int32")
            upper = ops.convert_to_tensor(self.vocab_sizes, dtype="int32")
            idx = ops.clip(idx, 0, upper)  # out-of-range indices fall back to each feature's OOV row
            idx = idx * ops.cast(idx >= 0, "int32") + ops.convert_to_tensor(self.offsets, dtype="int32")
            emb = ops.take(self.table, idx, axis=0)
            return ops.reshape(emb, (-1, len(self.vocab_sizes) * self.dim))

        def get_config(self):
            return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "dim": self.dim}

    return NumericPreprocess, CategoricalEmbedding, BucketIndex, CrossIndex


def build_core_model(
    spec: dict,
    hidden_units: Sequence[int] = (64, 32),
    dropout: float = 0.1,
    embedding_dim: int = 8,
    seed: int = 42,
):
    """Build (not compile) the core Keras model for a transform spec."""
    import keras

    NumericPreprocess, CategoricalEmbedding, BucketIndex, CrossIndex = _layers()
    keras.utils.set_random_seed(seed)
    inputs, parts = {}, []
    if spec["numeric"]:
        inputs["numeric"] = keras.Input((len(spec["numeric"]),), name="numeric", dtype="float32")
        parts.append(NumericPreprocess(
            fill=[f["fill"] for f in spec["numeric"]], mean=[f["mean"] for f in spec["numeric"]],
            std=[f["std"] for f in spec["numeric"]], log=[f["log"] for f in spec["numeric"]],
            # float32 even under mixed_float16: autocasting the raw input to float16 would round
            # values (a 19877-day timestamp to 19872) before imputation and normalisation.
            dtype="float32", name="numeric_preprocess")(inputs["numeric"]))
    if spec["categorical"]:
        inputs["categorical"] = keras.Input((len(spec["categorical"]),), name="categorical", dtype="int32")
        parts.append(CategoricalEmbedding(
            [len(f["vocab"]) for f in spec["categorical"]], embedding_dim, name="categorical_embedding",
        )(inputs["categorical"]))
    buckets, crosses = spec.get("buckets") or [], spec.get("crosses") or []
    bucket_idx = None
    if buckets:
        numeric = {f["name"]: (j, f) for j, f in enumerate(spec["numeric"])}
        bucket_idx = BucketIndex(
            columns=[numeric[b["name"]][0] for b in buckets], boundaries=[b["boundaries"] for b in buckets],
            fill=[numeric[b["name"]][1]["fill"] for b in buckets], dtype="float32", name="bucket_index",
        )(inputs["numeric"])
        parts.append(CategoricalEmbedding(
            [len(b["boundaries"]) for b in buckets], embedding_dim, name="bucket_embedding")(bucket_idx))
    if crosses:
        position, sizes, sources = {}, [], []
        for f in spec["categorical"]:
            position[f["name"]] = len(sizes)
            sizes.append(len(f["vocab"]) + 1)
        for b in buckets:
            position[b["name"]] = len(sizes)
            sizes.append(len(b["boundaries"]) + 1)
        for c in crosses:
            unknown = [name for name in c["columns"] if name not in position]
            if unknown:
                raise DataError(f"the transform spec's cross {'*'.join(c['columns'])!r} names {unknown[0]!r}, "
                                f"which is neither a categorical nor a bucketized feature")
            sources.append([position[name] for name in c["columns"]])
        cross_inputs = [t for t in (inputs.get("categorical"), bucket_idx) if t is not None]
        cross_idx = CrossIndex(
            sources, sizes, [c["size"] for c in crosses], [c["hashed"] for c in crosses], name="cross_index",
        )(cross_inputs if len(cross_inputs) > 1 else cross_inputs[0])
        parts.append(CategoricalEmbedding(
            [c["size"] - 1 for c in crosses], embedding_dim, name="cross_embedding")(cross_idx))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, seed=seed + i)(x)
    out = _head(spec, x)
    return keras.Model(inputs, out, name="core")


def _head(spec: dict, x):
    """The output layer of the spec's task (see ``_shared/task.py``): binary a sigmoid
    "probability" (N, 1); multiclass a softmax "probabilities" (N, K) in ``spec["classes"]``
    order; regression "prediction" (N, 1) in the label's units: a linear unit trained on the
    standardised target, rescaled by ``label_std`` and shifted by ``label_mean`` inside the model."""
    import keras

    from components._shared.task import MULTICLASS, REGRESSION, task_of

    task = task_of(spec).name
    if task == MULTICLASS:
        return keras.layers.Dense(len(spec["classes"]), activation="softmax", name="probabilities",
                                  dtype="float32")(x)
    if task == REGRESSION:
        z = keras.layers.Dense(1, name="standardised_prediction", dtype="float32")(x)
        return keras.layers.Rescaling(scale=float(spec["label_std"]), offset=float(spec["label_mean"]),
                                      name="prediction", dtype="float32")(z)
    return keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(x)


def load_core_model(model_dir: str):
    """Load the core model saved by training (registers the custom layers first)."""
    import keras

    _layers()
    return keras.models.load_model(os.path.join(model_dir, MODEL_FILE), compile=False)


def predict_proba(model, arrays: dict, batch_size: int = 8192):
    """Outputs of the core model for encoded arrays (graph-mode, no Keras fit loop): shape (N,)
    for a single-output model (binary probability, regression prediction), (N, K) for multiclass."""
    import numpy as np
    import tensorflow as tf

    n = len(next(iter(arrays.values())))
    if n == 0:
        return np.zeros(0, dtype=np.float32)

    @tf.function(reduce_retracing=True)
    def _call(batch):
        return model(batch, training=False)

    out = []
    for start in range(0, n, batch_size):
        batch = {k: tf.constant(v[start:start + batch_size]) for k, v in arrays.items()}
        res = _call(batch).numpy()
        out.append(res.reshape(-1) if res.ndim < 2 or res.shape[1] == 1 else res)
    return np.concatenate(out)


def model_input_signature(spec: dict) -> Optional[dict]:
    return {k: None for k in ("numeric", "categorical") if spec[k]}


def _is_regression(spec: Optional[dict]) -> bool:
    from components._shared.task import REGRESSION, task_of

    return task_of(spec).name == REGRESSION


def tflite_core(core, spec: Optional[dict] = None):
    """The part of the core model that TFLite runs: all of it, except for regression, where it
    stops before the last layer (``prediction = label_mean + label_std * z``) and outputs the
    standardised prediction ``z``; :func:`tflite_predict` applies the affine map on the host
    from the spec shipped beside the ``.tflite`` file. float16 quantization would round those
    two constants (a mean of 2.5e6 is beyond float16's range, and 152.1 becomes 152.125), so
    keeping them out of the converted graph makes TFLite parity independent of the label's
    magnitude.

    Raises:
        ModelError: A regression core whose last layer is not the Rescaling ``prediction``.
    """
    if not _is_regression(spec):
        return core
    import keras

    from components._shared.errors import ModelError

    last = core.get_layer("prediction") if "prediction" in [layer.name for layer in core.layers] else None
    if not isinstance(last, keras.layers.Rescaling):
        raise ModelError("a regression core model must end with the Rescaling layer 'prediction' "
                         "(label_mean + label_std * z) for its TFLite conversion")
    return keras.Model(core.inputs, last.input, name="core_standardised")


def convert_tflite(core, quantization: str = "float16", spec: Optional[dict] = None) -> bytes:
    """Convert the core model (see :func:`tflite_core`) to TFLite with builtin ops only."""
    import tensorflow as tf

    if quantization not in ("float16", "dynamic", "none"):
        raise ValueError(f"unknown TFLite quantization {quantization!r}: use float16, dynamic or none")
    model = tflite_core(core, spec)
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def parity_scale(spec: Optional[dict]) -> float:
    """What a difference between two scorers of this model is divided by before it meets a
    bound (``SCORER_MAX_DIFF``, the export gate ``max_tflite_diff``): 1 for probabilities
    (binary, multiclass); the label's standard deviation for regression, so that the bound
    means the same on every dataset (a 1e-3 bound in label units would be loose for a label in
    thousandths and unreachable for a price in millions)."""
    if _is_regression(spec):
        std = float(spec.get("label_std") or 1.0)
        return std if std > 0 and std == std else 1.0
    return 1.0


def tflite_predict(model_bytes: bytes, arrays: dict, spec: Optional[dict] = None):
    """Run the TFLite model over all rows of ``arrays`` (one resized invoke per 4096 rows).

    Returns (N,) for a one-column output (binary probability, regression prediction) and
    (N, K) for a K-column one (multiclass probabilities). For a regression ``spec`` the model's
    standardised output is returned in the label's units (see :func:`tflite_core`): pass the
    same spec as to :func:`convert_tflite`.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    runner = interp.get_signature_runner()
    n = len(next(iter(arrays.values())))
    out = []
    for s in range(0, n, 4096):
        res = runner(**{k: v[s:s + 4096] for k, v in arrays.items()})
        part = np.asarray(next(iter(res.values())))
        out.append(part.reshape(len(part), -1))
    if not out:
        return np.zeros(0, dtype=np.float32)
    res = np.concatenate(out)
    if _is_regression(spec):
        res = (float(spec["label_mean"]) + float(spec["label_std"]) * res.astype(np.float64)).astype(np.float32)
    return res.reshape(-1) if res.shape[1] == 1 else res


def write_scorer(core, model_dir: str, arrays: dict, spec: Optional[dict] = None) -> Optional[float]:
    """Write an unquantized TFLite copy of the core model for TensorFlow-free scoring.

    Evaluate and compare score with it (``ai_edge_litert`` imports in ~0.1 s, TensorFlow in
    4-5 s). It is only written when it matches the Keras model within ``SCORER_MAX_DIFF`` on
    ``arrays`` (every output column; for regression in label standard deviations, see
    :func:`parity_scale`; ``spec`` defaults to the one saved in ``model_dir``); returns that
    difference (None when not written).
    """
    import numpy as np

    if spec is None and os.path.exists(os.path.join(model_dir, SPEC_FILE)):
        spec = io.read_json(os.path.join(model_dir, SPEC_FILE))
    try:
        data = convert_tflite(core, "none", spec)
        if arrays:
            n = len(next(iter(arrays.values())))
            lite = np.asarray(tflite_predict(data, arrays, spec)).reshape(n, -1)
            keras_out = np.asarray(predict_proba(core, arrays)).reshape(n, -1)
            diff = float(np.max(np.abs(lite - keras_out))) / parity_scale(spec) if n else 0.0
        else:
            diff = 0.0
    except Exception as exc:  # the Keras model remains the reference; scoring falls back to it
        logger.warning("no TFLite scorer: %s", exc)
        return None
    if not diff <= SCORER_MAX_DIFF:  # NaN included
        logger.warning("no TFLite scorer: it differs from the Keras model by %.2e", diff)
        return None
    io.write_bytes_atomic(data, os.path.join(model_dir, SCORER_FILE))
    return diff


def load_scorer(model_dir: str):
    """``score(arrays) -> outputs`` for a saved model: the TFLite scorer when present (no
    TensorFlow import), else the Keras core model. (N,) probabilities for binary, (N,)
    predictions for regression, (N, K) probabilities for multiclass from the TFLite scorer."""
    path = os.path.join(model_dir, SCORER_FILE)
    if os.path.exists(path):
        with open(path, "rb") as fh:
            data = fh.read()
        spec_path = os.path.join(model_dir, SPEC_FILE)
        spec = io.read_json(spec_path) if os.path.exists(spec_path) else None
        return lambda arrays: tflite_predict(data, arrays, spec)
    core = load_core_model(model_dir)
    return lambda arrays: predict_proba(core, arrays)
