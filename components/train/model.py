"""The Keras model: preprocessing layers built from the transform spec, then an MLP head.

The *core* model takes two tensors, ``numeric`` (float32, NaN for missing) and
``categorical`` (int32 vocabulary indices, 0 for out-of-vocabulary); imputation, log
transforms, normalisation and embeddings happen inside it. The serving model (see
``components/export``) adds the string-to-index lookup tables in front, so clients send
raw features. Training feeds the core directly with indices computed by
``engineer.core.encode`` — the same mapping as the lookup tables, done once per row
instead of once per epoch.

TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

MODEL_FILE = "model.keras"
SPEC_FILE = "transform_spec.json"


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
            x = logm * ops.log1p(ops.maximum(x, 0.0)) + (1.0 - logm) * x
            mean_hi, mean_lo = self._split(self.mean)
            z = (x - mean_hi - mean_lo) / ops.convert_to_tensor(self.std, "float32")
            return ops.clip(z, -10.0, 10.0)

        def get_config(self):
            return {**super().get_config(), "fill": self.fill, "mean": self.mean, "std": self.std, "log": self.log}

    @keras.saving.register_keras_serializable(package="kfp_tf_gate")
    class CategoricalEmbedding(keras.layers.Layer):
        """One embedding table for all categorical features (index 0 of each = OOV)."""

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

    return NumericPreprocess, CategoricalEmbedding


def build_core_model(
    spec: dict,
    hidden_units: Sequence[int] = (64, 32),
    dropout: float = 0.1,
    embedding_dim: int = 8,
    seed: int = 42,
):
    """Build (not compile) the core Keras model for a transform spec."""
    import keras

    NumericPreprocess, CategoricalEmbedding = _layers()
    keras.utils.set_random_seed(seed)
    inputs, parts = {}, []
    if spec["numeric"]:
        inputs["numeric"] = keras.Input((len(spec["numeric"]),), name="numeric", dtype="float32")
        parts.append(NumericPreprocess(
            fill=[f["fill"] for f in spec["numeric"]], mean=[f["mean"] for f in spec["numeric"]],
            std=[f["std"] for f in spec["numeric"]], log=[f["log"] for f in spec["numeric"]],
            name="numeric_preprocess")(inputs["numeric"]))
    if spec["categorical"]:
        inputs["categorical"] = keras.Input((len(spec["categorical"]),), name="categorical", dtype="int32")
        parts.append(CategoricalEmbedding(
            [len(f["vocab"]) for f in spec["categorical"]], embedding_dim, name="categorical_embedding",
        )(inputs["categorical"]))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, seed=seed + i)(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(x)
    return keras.Model(inputs, out, name="core")


def load_core_model(model_dir: str):
    """Load the core model saved by training (registers the custom layers first)."""
    import keras

    _layers()
    return keras.models.load_model(os.path.join(model_dir, MODEL_FILE), compile=False)


def predict_proba(model, arrays: dict, batch_size: int = 8192):
    """Probabilities from the core model for encoded arrays (graph-mode, no Keras fit loop)."""
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
        out.append(_call(batch).numpy().reshape(-1))
    return np.concatenate(out)


def model_input_signature(spec: dict) -> Optional[dict]:
    return {k: None for k in ("numeric", "categorical") if spec[k]}
