"""KFP wrapper of train."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def train_model(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    transform_spec: Input[Artifact],
    ingest_info: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    model_name: str,
    mlflow_tracking_uri: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    hidden_units: List[int],
    dropout: float,
    early_stopping_patience: int,
    class_weight: str,
    seed: int,
    checkpoint_root: str,
    pipeline_run: str = "",
    pipeline_root: str = "",
    job_id: str = "",
):
    """Train the Keras model (preprocessing layers from the transform spec + MLP head).

    Uses mixed precision and MirroredStrategy when the node has GPUs. Every epoch is checkpointed
    under <checkpoint_root or pipeline_root>/checkpoints/<job_id>/train, the same folder for every
    retry of one run, so a retried (e.g. preempted) attempt resumes; it is removed when training
    succeeds.

    Args:
        model_name: Registered model name (MLflow experiment kfp-tf-gate/<model_name>).
        mlflow_tracking_uri: MLflow tracking URI; empty to skip tracking.
        epochs: Maximum epochs (early stopping on eval AUC may stop sooner).
        batch_size: Examples per step; 0 picks about 50 steps per epoch (16..4096).
        learning_rate: Adam learning rate.
        hidden_units: Widths of the MLP head's hidden layers, e.g. [64, 32] (deprecated: "64,32").
        dropout: Dropout after each hidden layer.
        early_stopping_patience: Epochs without eval-AUC improvement before stopping; 0 disables.
        class_weight: "balanced" to reweight classes (hurts calibration), "none" otherwise.
        seed: Seed of initialisation and shuffling.
        checkpoint_root: Durable folder (gs:// or a mounted path) for preemption checkpoints; empty for the pipeline root.
        pipeline_run: Pipeline run name, for lineage.
        pipeline_root: The run's pipeline root (set by the pipeline), the default checkpoint root.
        job_id: The pipeline job's id (set by the pipeline): the same for every retry of the task.
    """
    import logging

    from components._shared import io
    from components._shared.errors import attempt_marker, fail_fast
    from components._shared.metrics import loggable
    from components._shared.values import int_list
    from components.train.core import TrainConfig, train

    logging.basicConfig(level=logging.INFO)
    info = io.read_json(ingest_info.path)
    spec = io.read_json(transform_spec.path)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         hidden_units=int_list(hidden_units, "hidden_units"), dropout=dropout,
                         early_stopping_patience=early_stopping_patience, class_weight=class_weight, seed=seed)
    root = (checkpoint_root or pipeline_root).rstrip("/")
    ckpt = "/".join([root, "checkpoints", job_id or pipeline_run or "run", "train"]) if root else None
    # A retry after preemption resumes from the checkpoints; a retry after a deterministic error (bad
    # data, NaN loss) fails at once with the same sentence (the marker shares the checkpoints' folder).
    with fail_fast(ckpt + "/attempt-error.json" if ckpt else attempt_marker(model.uri)):
        result = train(train_data.path, eval_data.path, spec, model.path, config, checkpoint_dir=ckpt,
                       mlflow_tracking_uri=mlflow_tracking_uri, model_name=model_name,
                       lineage={"pipeline_run": pipeline_run, "data_hash": info["content_hash"],
                                "data_uri": info["source_uri"]})
    model.metadata.update({"framework": "keras", "device": result.device, "epochs_run": result.epochs_run,
                           "mlflow_run_id": result.mlflow_run_id or "",
                           "mlflow_model_uri": result.mlflow_model_uri or ""})
    for k, v in loggable(result.metrics).items():  # NaN (e.g. no scorer) would fail the task
        metrics.log_metric(k, v)
