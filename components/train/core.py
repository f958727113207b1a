"""Train: fit the Keras model from the transform spec on the train split.

Runs on whatever the node has: with GPUs it uses mixed precision and a
MirroredStrategy across them, on CPU it runs as is; the device is logged either way. Given a
cluster of several workers (TF_CONFIG, see ``components/train/distributed.py``) it trains with
MultiWorkerMirroredStrategy, each worker reading its own share of the split; only the chief writes.
The splits are read as a tf.data pipeline over their Parquet row groups, encoded batch by batch
(``components/train/inputs.py``), so memory does not grow with rows.
With ``checkpoint_dir`` (a durable folder or URL, the same for every retry of one run), each
epoch is checkpointed there (see ``components/train/checkpoint.py``), so a preempted pod that
restarts resumes instead of starting over; the checkpoints are removed once training succeeded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Optional

from components._shared import io
from components._shared.errors import ModelError
from components._shared.model import MODEL_FILE, SPEC_FILE, build_core_model, write_scorer
from components._shared.params import PARAMS
from components._shared.task import keras_loss_and_metrics, task_of
from components._shared.values import int_list, text

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Training settings; defaults and meanings in ``components._shared.params``."""

    epochs: int = PARAMS.epochs
    batch_size: int = PARAMS.batch_size  # 0: auto (about 50 steps per epoch, 16..4096)
    learning_rate: float = PARAMS.learning_rate
    hidden_units: Sequence[int] = tuple(PARAMS.hidden_units)  # widths; deprecated: "64,32"
    dropout: float = PARAMS.dropout
    embedding_dim: int = 8
    early_stopping_patience: int = PARAMS.early_stopping_patience
    class_weight: str = PARAMS.class_weight  # "balanced" | "none" (reweighting skews calibration)
    seed: int = PARAMS.seed

    def __post_init__(self):
        # A pipeline hands a list over as [64.0, 32.0] (protobuf numbers); older calls pass "64,32".
        self.hidden_units = tuple(int_list(self.hidden_units, "hidden_units"))
        if self.epochs < 1 or self.batch_size < 0 or not (0 <= self.dropout < 1) or self.learning_rate <= 0:
            raise ModelError(f"invalid training settings: {self}")


def auto_batch_size(rows: int) -> int:
    """About 50 steps per epoch, between 16 and 4096 examples per step.

    The floor is low so that a small table still gets a useful number of steps: with a floor of
    128, load_wine's 129 train rows got 2 steps per epoch (20 in all) and training stopped far
    from a fit (test log loss 0.33, ECE 0.27, so the default calibration gate refused a model
    that was 100 % accurate). Tables of about 4,500 rows or more are unaffected."""
    if rows <= 0:
        return 16
    return int(min(4096, max(16, 2 ** round(math.log2(rows / 50)))))


@dataclasses.dataclass
class TrainResult:
    metrics: dict
    history: dict
    device: str
    epochs_run: int
    examples_per_second: float
    train_seconds: float
    mlflow_run_id: Optional[str] = None
    mlflow_model_uri: Optional[str] = None
    workers: int = 1


def _device_strategy():
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        return f"{len(gpus)} GPU(s): {', '.join(g.name for g in gpus)}", strategy
    return "CPU", tf.distribute.get_strategy()


class _Throughput:
    """Keras callback recording the training wall time of each epoch (validation excluded)."""

    def __init__(self):
        import keras

        outer = self

        class CB(keras.callbacks.Callback):
            # Training time only: an epoch's clock stops where validation starts.
            def on_epoch_begin(self, epoch, logs=None):
                outer._t, outer._stop = time.perf_counter(), None

            def on_test_begin(self, logs=None):
                if outer._stop is None:
                    outer._stop = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.epoch_seconds.append((outer._stop or time.perf_counter()) - outer._t)

        self.epoch_seconds: list = []
        self.callback = CB()


def train(
    train_path: str,
    eval_path: str,
    spec: dict,
    model_dir: str,
    config: TrainConfig,
    checkpoint_dir: Optional[str] = None,
    mlflow_tracking_uri: str = "",
    model_name: str = "model",
    lineage: Optional[dict] = None,
    cluster=None,
) -> TrainResult:
    """Train and save ``model_dir/model.keras`` plus the transform spec beside it.

    Args:
        cluster: A :class:`components.train.distributed.Cluster` of several workers for
            multi-worker training (every worker calls ``train`` with the same arguments); None
            trains on this machine alone.

    Raises:
        ModelError: The loss became NaN, or the data do not match the spec.
    """
    import keras
    import numpy as np

    from components.train import distributed, inputs

    task = task_of(spec)
    multi = cluster is not None and cluster.num_workers > 1
    # MultiWorkerMirroredStrategy must exist before TensorFlow's runtime starts.
    device, strategy = distributed.multi_worker_strategy(cluster) if multi else _device_strategy()
    workers, worker = (cluster.num_workers, cluster.worker_id) if multi else (1, 0)
    chief = worker == 0
    n = io.parquet_num_rows(train_path)
    batch_size = config.batch_size or auto_batch_size(n)
    # Each worker takes batch_size / workers rows per step; the batch is the global one.
    per_worker = -(-batch_size // workers)
    batch_size = per_worker * workers
    replicas_per_worker = max(1, strategy.num_replicas_in_sync // workers)
    per_replica = max(1, -(-per_worker // replicas_per_worker))
    train_split = inputs.EncodedSplit(train_path, spec, workers, worker, per_replica)
    eval_batch = -(-16384 // strategy.num_replicas_in_sync) if multi else 16384
    eval_split = inputs.EncodedSplit(eval_path, spec, workers, worker, eval_batch)
    n_eval = eval_split.total_rows
    logger.info("training a %s model on %s: %d train rows, %d eval rows%s", task.name, device, n, n_eval,
                f"; worker {worker} of {workers} reads rows {train_split.lo}..{train_split.hi - 1}" if multi else "")

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_core_model(spec, config.hidden_units, config.dropout, config.embedding_dim, config.seed)
        loss, compiled_metrics = keras_loss_and_metrics(task)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=loss,
            metrics=compiled_metrics,
            # Several steps per graph call: a small MLP is otherwise bound by per-step Python overhead.
            steps_per_execution=8 if not multi else 1,  # Keras 3 + MultiWorkerMirroredStrategy: 1 only
        )
    class_weight = inputs.class_weights_from_counts(task, train_split.label_counts(), config.class_weight)
    eval_counts = eval_split.label_counts()
    # One worker: the global batch (Keras splits it over local GPUs); several: per replica.
    train_data = inputs.distributed_dataset(strategy if multi else None, train_split,
                                            per_replica if multi else batch_size, shuffle=True,
                                            seed=config.seed, worker=worker, class_weight=class_weight)
    eval_data = (inputs.distributed_dataset(strategy if multi else None, eval_split, eval_batch, worker=worker)
                 if n_eval else None)
    if multi:
        distributed.prepare_model(model, strategy, train_split)
    tp = _Throughput()
    callbacks = [keras.callbacks.TerminateOnNaN(), tp.callback]
    mirror = local_backup = None
    if checkpoint_dir:
        import tempfile

        from components.train import checkpoint

        local_backup = tempfile.mkdtemp(prefix="train-backup-")
        mirror = checkpoint.Mirror(checkpoint_dir, local_backup, write=chief)  # only the chief uploads
        mirror.restore()
    elif multi:
        raise ModelError("multi-worker training needs a checkpoint_dir every worker can reach, got none")
    early_stopping = None
    two_classes = eval_counts is None or int((eval_counts > 0).sum()) > 1  # AUC needs two classes
    if config.early_stopping_patience > 0 and n_eval and two_classes:
        from components.train.checkpoint import resumable_early_stopping

        early_stopping = resumable_early_stopping(
            mirror, monitor=task.monitor, mode=task.monitor_mode, patience=config.early_stopping_patience,
            restore_best_weights=True)
        callbacks.append(early_stopping)
    epochs_cb = None
    if mirror is not None:
        backup_cb, epochs_cb = checkpoint.callbacks(mirror, early_stopping)
        callbacks += [backup_cb, epochs_cb]
    mlflow_run_id = mlflow_model_uri = None
    run_ctx = None
    if mlflow_tracking_uri and chief:
        import mlflow

        from components._shared import registry

        registry.configure(mlflow_tracking_uri, model_name)
        resumed = mirror.state.get("mlflow_run_id") if mirror is not None else None
        try:  # a retried attempt continues the training run its first attempt started
            run_ctx = mlflow.start_run(run_id=resumed) if resumed else None
        except Exception as exc:
            logger.warning("cannot resume MLflow run %s (%s): starting a new one", resumed, exc)
        if run_ctx is None:
            run_ctx = mlflow.start_run(run_name=(lineage or {}).get("pipeline_run", None) or "train")
        mlflow_run_id = run_ctx.info.run_id
        if mirror is not None:
            mirror.write_state(mlflow_run_id=mlflow_run_id)
        mlflow.log_params({**{k: text(v) for k, v in dataclasses.asdict(config).items()}, "batch_size_used": batch_size,
                           "train_rows": n, "eval_rows": n_eval, "device": device, "workers": workers,
                           "features": len(spec["numeric"]) + len(spec["categorical"])})
        mlflow.set_tags({f"lineage.{k}": str(v) for k, v in (lineage or {}).items()})

        class _MlflowEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)

        callbacks.append(_MlflowEpochs())
    t0 = time.perf_counter()
    try:
        history = model.fit(train_data, validation_data=eval_data, epochs=config.epochs, callbacks=callbacks,
                            shuffle=False, verbose=2)  # the datasets shuffle themselves (inputs.py)
    except BaseException:
        if run_ctx is not None:
            import mlflow

            mlflow.end_run("FAILED")
        raise
    seconds = time.perf_counter() - t0
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if epochs_cb is not None and epochs_cb.history:
        # Every epoch of the run, those of a preempted attempt included.
        hist = {k: [float(e.get(k, float("nan"))) for e in epochs_cb.history] for k in epochs_cb.history[-1]}
    losses = hist.get("loss", [])
    if not losses or any(not math.isfinite(v) for v in losses):
        if run_ctx is not None:
            import mlflow

            mlflow.end_run("FAILED")
        raise ModelError(f"training diverged: the loss became NaN or infinite (losses per epoch: {losses})")
    if not chief:
        # Keras 3 saves by reading variables locally (no collective ops, unlike tf.keras's SavedModel),
        # so the other workers need not write a throw-away copy: they are done.
        logger.info("worker %d of %d finished %d epochs; the chief writes the model", worker, workers, len(losses))
        if local_backup:
            import shutil

            shutil.rmtree(local_backup, ignore_errors=True)
        return TrainResult({}, hist, device, len(losses), 0.0, seconds, workers=workers)
    final_dir, model_dir = model_dir, (distributed.local_dir(model_dir))
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, MODEL_FILE))
    io.write_json(spec, os.path.join(model_dir, SPEC_FILE))
    probe = inputs.EncodedSplit(eval_path if n_eval else train_path, spec).head(20_000)
    scorer_diff = write_scorer(model, model_dir, probe)
    from components._shared.threshold import record_threshold

    # Binary: the decision threshold (max F1 on the eval split), in the folder MLflow logs below,
    # so export needs nothing from evaluate and runs beside it.
    record_threshold(model_dir, eval_path, spec)
    later = tp.epoch_seconds[1:] or tp.epoch_seconds
    eps = n / (sum(later) / len(later)) if later else 0.0
    if task.monitor in hist:
        pick = np.argmax if task.monitor_mode == "max" else np.argmin
        best = int(pick(hist[task.monitor]))
    else:
        best = len(losses) - 1
    watched = task.fit_metrics
    metrics = {
        "train_loss": losses[best],
        **{f"train_{m}": hist.get(m, [float("nan")])[best] for m in watched},
        "eval_loss": hist.get("val_loss", [float("nan")])[best],
        **{f"eval_{m}": hist.get(f"val_{m}", [float("nan")])[best] for m in watched},
        "epochs_run": len(losses),
        "examples_per_second": eps,
        "train_seconds": seconds,
        "scorer_max_abs_diff": scorer_diff if scorer_diff is not None else float("nan"),
    }
    if mlflow_run_id:
        import mlflow

        mlflow.log_metrics({f"final_{k}": float(v) for k, v in metrics.items() if math.isfinite(float(v))})
        mlflow.log_artifacts(model_dir, artifact_path="model")
        from components._shared import pyfunc

        # The registered version (deploy) is this logged model: loadable with mlflow.pyfunc, raw rows in.
        mlflow_model_uri = pyfunc.log_model(model_dir, spec, train_path)
        mlflow.end_run()
    with open(os.path.join(model_dir, "train_metrics.json"), "w") as fh:
        json.dump({"metrics": metrics, "history": hist, "device": device, "workers": workers}, fh, indent=2)
    distributed.publish_dir(model_dir, final_dir)  # a URI's files were written locally, then copied
    if mirror is not None:
        import shutil

        mirror.clean()
        shutil.rmtree(local_backup, ignore_errors=True)
    logger.info("trained %d epochs in %.1fs (%.0f examples/s after the first epoch); eval %s %.4f",
                len(losses), seconds, eps, watched[0], metrics[f"eval_{watched[0]}"])
    return TrainResult(metrics, hist, device, len(losses), eps, seconds, mlflow_run_id, mlflow_model_uri, workers)
