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
                                "data_uri": info["source_uri"], "split_rule": info.get("split_rule") or ""})
    model.metadata.update({"framework": "keras", "device": result.device, "epochs_run": result.epochs_run,
                           "mlflow_run_id": result.mlflow_run_id or "",
                           "mlflow_model_uri": result.mlflow_model_uri or ""})
    for k, v in loggable(result.metrics).items():  # NaN (e.g. no scorer) would fail the task
        metrics.log_metric(k, v)


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def train_model_multiworker(
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
    workers: int,
    platform: str,
    image: str,
    machine_type: str = "",
    accelerator_type: str = "",
    accelerator_count: int = 0,
    cpu: str = "",
    memory: str = "",
    node_selector: str = "",
    mlflow_secret: str = "",
    vertex_project: str = "",
    vertex_location: str = "",
    pipeline_run: str = "",
    pipeline_root: str = "",
    job_id: str = "",
):
    """Train the Keras model on several replicas (MultiWorkerMirroredStrategy) as a cluster job.

    Starts a Vertex AI CustomJob (platform "vertex": a chief pool and a pool of workers - 1) or a
    Kubeflow TFJob (platform "kubeflow": Chief and Worker replicas; needs the Training Operator) whose
    replicas run ``python -m components.train.worker`` in the trainer image, waits for it, and copies
    the chief's model into ``model``. Checkpoints as train_model: the same folder for every retry.

    Args:
        model_name: Registered model name (MLflow experiment kfp-tf-gate/<model_name>).
        mlflow_tracking_uri: MLflow tracking URI; empty to skip tracking.
        epochs: Maximum epochs (early stopping on eval AUC may stop sooner).
        batch_size: Examples per step in all (split across the replicas); 0 picks about 50 steps per epoch.
        learning_rate: Adam learning rate.
        hidden_units: Widths of the MLP head's hidden layers, e.g. [64, 32].
        dropout: Dropout after each hidden layer.
        early_stopping_patience: Epochs without eval-AUC improvement before stopping; 0 disables.
        class_weight: "balanced" to reweight classes (hurts calibration), "none" otherwise.
        seed: Seed of initialisation and shuffling.
        checkpoint_root: Durable folder (gs:// or minio://) for checkpoints; empty for the pipeline root.
        workers: Replicas in all, the chief included (compile option --train-workers).
        platform: "vertex" (CustomJob) or "kubeflow" (TFJob).
        image: The trainer image every replica runs.
        machine_type: Vertex: machine type of each replica (compile option --train-machine-type).
        accelerator_type: Accelerator of each replica (Vertex type or Kubernetes resource name); empty for CPU.
        accelerator_count: Accelerators per replica.
        cpu: Kubeflow: CPU request of each replica.
        memory: Kubeflow: memory request of each replica.
        node_selector: Kubeflow: key=value node label of the accelerator nodes.
        mlflow_secret: Kubeflow: secret with the MLflow credentials, referenced by every replica.
        vertex_project: Vertex: project of the CustomJob; empty for the run's own.
        vertex_location: Vertex: region of the CustomJob.
        pipeline_run: Pipeline run name, for lineage.
        pipeline_root: The run's pipeline root (set by the pipeline), the default checkpoint root.
        job_id: The pipeline job's id (set by the pipeline): names the job and the checkpoints.
    """
    import logging
    import os

    from components._shared import io
    from components._shared.errors import attempt_marker, fail_fast
    from components._shared.metrics import loggable
    from components._shared.values import int_list
    from components.train import launch

    logging.basicConfig(level=logging.INFO)
    info = io.read_json(ingest_info.path)
    root = (checkpoint_root or pipeline_root).rstrip("/")
    run = job_id or pipeline_run or "run"
    ckpt = "/".join([root, "checkpoints", run, "train"]) if root else None
    job_dir = launch.job_folder(model.uri)
    with fail_fast(ckpt + "/attempt-error.json" if ckpt else attempt_marker(model.uri)):
        # components/train/distributed.py: the arguments of train(), as URIs every replica reads
        config = {"train_path": train_data.uri, "eval_path": eval_data.uri, "spec": io.read_json(transform_spec.path),
                  "model_dir": job_dir + "/model", "checkpoint_dir": ckpt, "result_path": job_dir + "/result.json",
                  "mlflow_tracking_uri": mlflow_tracking_uri, "model_name": model_name,
                  "lineage": {"pipeline_run": pipeline_run, "data_hash": info["content_hash"],
                              "data_uri": info["source_uri"], "split_rule": info.get("split_rule") or ""},
                  "config": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                             "hidden_units": int_list(hidden_units, "hidden_units"), "dropout": dropout,
                             "early_stopping_patience": early_stopping_patience, "class_weight": class_weight,
                             "seed": seed}}
        replicas = launch.Replicas(
            workers=workers, image=image, config_uri=launch.write_json_uri(config, job_dir + "/config.json"),
            machine_type=machine_type, accelerator_type=accelerator_type, accelerator_count=accelerator_count,
            cpu=cpu, memory=memory, node_selector=node_selector,
            env={k: os.environ[k] for k in launch.FORWARDED_ENV if os.environ.get(k)},
            secret_env=launch.kubeflow_secret_env(mlflow_secret) if platform == "kubeflow" else [])
        launch.run_job(platform, replicas, key=run, job_dir=job_dir, display_name=f"{model_name}-train-{run}",
                       project=vertex_project, location=vertex_location)
        launch.copy_folder(job_dir + "/model", model.path)
    result = launch.read_json_uri(job_dir + "/result.json")
    model.metadata.update({"framework": "keras", "device": result.get("device", ""),
                           "epochs_run": result.get("epochs_run", 0), "workers": workers,
                           "mlflow_run_id": result.get("mlflow_run_id") or "",
                           "mlflow_model_uri": result.get("mlflow_model_uri") or ""})
    for k, v in loggable(result.get("metrics") or {}).items():
        metrics.log_metric(k, v)
