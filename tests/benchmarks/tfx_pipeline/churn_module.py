"""TFX module file of the peer benchmark: ``preprocessing_fn`` (Transform) and ``run_fn`` (Trainer).

Runs under the TFX virtualenv's Python 3.10 (see tests/benchmarks/tfx_peer.py), never under this
project's interpreter. It mirrors what ``python -m pipelines run`` does to the churn table, as far
as TensorFlow Transform allows:

- numeric columns: missing values filled (TFT: the mean; ours: the median), ``log1p`` on the
  heavy-tailed ``data_gb`` (the column ours picks by skew on this table), then a z-score;
- ``signup_date``: days since 1970 (ours reads dates as numbers too), then a z-score;
- ``senior_citizen``: 0/1;
- categorical columns: a vocabulary (one OOV bucket) and an 8-wide embedding each;
- ``customer_id`` is not a feature (ours: the id column), it only assigns splits;
- the label ``churned`` (yes/no) becomes 1/0.

Model: the same Keras MLP head as ours, Dense 64 -> Dropout 0.1 -> Dense 32 -> Dropout 0.1 ->
Dense 1 (sigmoid), Adam, binary cross-entropy; batch size, epochs and learning rate come from
the Trainer's ``custom_config`` (the benchmark passes ours).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras  # Keras 2, as TFT's transform layer (TF 2.16's tf.keras is Keras 3)
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

LABEL = "churned"
LABEL_XF = "churned_xf"
POSITIVE = "yes"
NUMERIC = ("tenure_months", "monthly_charges", "total_charges", "data_gb", "support_calls")
LOG1P = ("data_gb",)
DATE = "signup_date"
BOOLEAN = "senior_citizen"
CATEGORICAL = ("contract", "payment_method", "internet_service", "region")
EMBEDDING_DIM = 8


def _xf(name: str) -> str:
    return f"{name}_xf"


def _dense(x, default):
    """A ``[batch]`` tensor from a dense ``[batch, 1]`` or a sparse (sometimes missing) feature."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default
        )
    return tf.reshape(x, [-1])


def _present(x):
    """The values a feature has (missing ones left out), for an analyzer's statistics."""
    return x.values if isinstance(x, tf.sparse.SparseTensor) else tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    out = {}
    for name in NUMERIC:
        raw = inputs[name]
        values = tf.cast(_present(raw), tf.float32)
        if name in LOG1P:
            values = tf.math.log1p(tf.maximum(values, 0.0))
        fill = tft.mean(values)
        x = tf.cast(_dense(raw, tf.constant(float("nan"), raw.dtype) if raw.dtype.is_floating else 0), tf.float32)
        if name in LOG1P:
            x = tf.math.log1p(tf.maximum(x, 0.0))
        x = tf.where(tf.math.is_nan(x), fill, x)
        out[_xf(name)] = tft.scale_to_z_score(x)
    # "2026-06-30" -> days since 1970-01-01 (signup dates have no time part here).
    parts = tf.strings.split(_dense(inputs[DATE], "1970-01-01"), "-").to_tensor(shape=[None, 3])
    y, m, d = (tf.strings.to_number(parts[:, i], tf.float32) for i in range(3))
    days = (y - 1970.0) * 365.2425 + (m - 1.0) * 30.436875 + (d - 1.0)
    out[_xf(DATE)] = tft.scale_to_z_score(days)
    senior = _dense(inputs[BOOLEAN], "False")
    out[_xf(BOOLEAN)] = tf.cast(
        tf.strings.regex_full_match(tf.strings.lower(tf.strings.as_string(senior) if senior.dtype != tf.string else senior), "true|1"),
        tf.float32,
    )
    for name in CATEGORICAL:
        out[_xf(name)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[name], ""), num_oov_buckets=1, vocab_filename=name
        )
    out[LABEL_XF] = tf.cast(tf.equal(_dense(inputs[LABEL], ""), POSITIVE), tf.int64)
    return out


def _dataset(file_pattern, data_accessor, tf_transform_output, batch_size: int, shuffle: bool):
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, label_key=LABEL_XF, shuffle=shuffle, num_epochs=None
        ),
        tf_transform_output.transformed_metadata.schema,
    ).prefetch(tf.data.AUTOTUNE)


def _model(tf_transform_output, hidden_units, dropout: float, learning_rate: float, seed: int):
    keras.utils.set_random_seed(seed)
    inputs, parts = {}, []
    dense_names = [_xf(n) for n in (*NUMERIC, DATE, BOOLEAN)]
    for name in dense_names:
        inputs[name] = keras.Input(shape=(1,), name=name, dtype=tf.float32)
    parts.append(keras.layers.Concatenate()([inputs[n] for n in dense_names]))
    for name in CATEGORICAL:
        size = tf_transform_output.vocabulary_size_by_name(name) + 1  # + the OOV bucket
        inputs[_xf(name)] = keras.Input(shape=(1,), name=_xf(name), dtype=tf.int64)
        emb = keras.layers.Embedding(size, EMBEDDING_DIM)(inputs[_xf(name)])
        parts.append(keras.layers.Reshape((EMBEDDING_DIM,))(emb))
    x = keras.layers.Concatenate()(parts)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, seed=seed + i)(x)
    output = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model


def _serve_fn(model, tf_transform_output):
    """serving_default: serialized raw tf.Examples in, churn probability out."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        parsed = tf.io.parse_example(serialized, spec)
        return model(model.tft_layer(parsed))

    return serve


def _transform_fn(model, tf_transform_output):
    """transform_features: raw tf.Examples (label included) -> transformed, for the Evaluator."""
    model.tft_layer_eval = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def transform(serialized):
        parsed = tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec())
        return model.tft_layer_eval(parsed)

    return transform


def run_fn(fn_args: FnArgs):
    cfg = fn_args.custom_config or {}
    batch_size = int(cfg.get("batch_size", 4096))
    epochs = int(cfg.get("epochs", 2))
    train_rows, eval_rows = int(cfg["train_rows"]), int(cfg["eval_rows"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size, True)
    evals = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, 16384, False)
    model = _model(
        tf_transform_output,
        [int(u) for u in cfg.get("hidden_units", [64, 32])],
        float(cfg.get("dropout", 0.1)),
        float(cfg.get("learning_rate", 0.002)),
        int(cfg.get("seed", 42)),
    )
    model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=max(1, -(-train_rows // batch_size)),
        validation_data=evals,
        validation_steps=max(1, -(-eval_rows // 16384)),
        verbose=2,
    )
    signatures = {
        "serving_default": _serve_fn(model, tf_transform_output),
        "transform_features": _transform_fn(model, tf_transform_output),
    }
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures)
