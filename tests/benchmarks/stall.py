"""Input-pipeline stall estimate: ``python -m tests.benchmarks.stall MODEL_DIR TRAIN_PARQUET OUT.json``.

Keras gives no direct "waiting for data" timer, so this compares two epochs of the trained
core model over the same train split, compiled like training does (Adam, binary
cross-entropy, AUC + accuracy, 8 steps per execution, the automatic batch size):

- ``numpy``: ``fit(arrays, shuffle=True)``, the input path training uses;
- ``cached``: ``fit`` over a ``tf.data`` dataset already batched and cached in memory
  (warmed by one pass), i.e. compute with next to no input work.

The difference per epoch is the input-pipeline overhead (stall) of the numpy path; the first
epoch of each is discarded (tracing) and the fastest of the other two is kept. An estimate, not a trace: on 2 shared cores the input
threads and the compute threads compete, so it is the time the input path costs, not only
the time compute waited.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _epoch_seconds(model, fit_args: dict, epochs: int = 3) -> list:
    import keras

    times: list = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(**fit_args, epochs=epochs, callbacks=[Timer()], verbose=0)
    return times


def main(model_dir: str, train_path: str, out_path: str) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from components._shared import io
    from components._shared.labels import labels
    from components._shared.model import SPEC_FILE, load_core_model
    from components._shared.transform import encode

    try:
        from components.train.core import auto_batch_size
    except ImportError:  # pragma: no cover - the trainer's helper moved

        def auto_batch_size(rows: int) -> int:
            return 4096

    spec = io.read_json(os.path.join(model_dir, SPEC_FILE))
    columns = [f["name"] for f in spec["numeric"] + spec["categorical"]] + [spec["label"]]
    df = io.read_parquet(train_path, columns=columns)
    x, y = encode(df, spec), labels(df, spec)
    del df
    n = len(y)
    batch = auto_batch_size(n)

    def compiled():
        model = load_core_model(model_dir)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
            steps_per_execution=8,
        )
        return model

    numpy_t = _epoch_seconds(compiled(), {"x": x, "y": y, "batch_size": batch, "shuffle": True})
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    for _ in ds:  # fill the cache
        pass
    cached_t = _epoch_seconds(compiled(), {"x": ds.prefetch(tf.data.AUTOTUNE)})
    # The fastest epoch after the first of each: the least disturbed by other load.
    a, b = min(numpy_t[1:]), min(cached_t[1:])
    result = {
        "rows": n,
        "batch_size": batch,
        "numpy_epoch_seconds": numpy_t,
        "cached_epoch_seconds": cached_t,
        "stall_seconds_per_epoch": max(0.0, a - b),
        "stall_share": max(0.0, a - b) / a if a > 0 else 0.0,
        "compute_only_examples_per_second": n / b if b > 0 else None,
        "numpy_examples_per_second": n / a if a > 0 else None,
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
