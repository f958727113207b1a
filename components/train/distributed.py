"""Multi-worker training: TF_CONFIG, MultiWorkerMirroredStrategy, who writes what.

Interface for launchers (Vertex AI CustomJob worker pools, Kubeflow TFJob; see
``components/train/launch.py``)
------------------------------------------------------------------------------------------
Every replica runs the same trainer image with the same command::

    python -m components.train.worker --config CONFIG

``CONFIG`` is a JSON file, a local or mounted path (``/gcs/...`` on Vertex) or a ``gs://``,
``s3://`` or ``minio://`` URI, that every replica can read. Its keys are the arguments of
``components.train.core.train``::

    {"train_path": ..., "eval_path": ...,        # a split: one Parquet file or a folder of shards
     "spec_path": ... (or "spec": {...}),        # the transform spec (engineer's output)
     "model_dir": ...,                           # where the chief writes the model
     "checkpoint_dir": ...,                      # shared, durable; required with more than 1 worker
     "result_path": ...,                         # where the chief writes the result (below)
     "config": {"epochs": 10, "batch_size": 0, ...},   # TrainConfig fields; omitted ones default
     "mlflow_tracking_uri": "", "model_name": "model", "lineage": {...}}

Paths (``train_path``, ``eval_path``, ``spec_path``, ``model_dir``, ``checkpoint_dir``,
``result_path``) must name the same place on every replica: a URI (``gs://``, ``s3://``,
``minio://``) or a shared mount. ``model_dir`` and ``result_path`` may be URIs: the chief writes
locally, then copies.

Environment of each replica:

- ``TF_CONFIG``, as Vertex AI (first worker pool = ``chief``, second = ``worker``) and the
  Training Operator's TFJob (``Chief`` / ``Worker`` replicas) set it::

      {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
       "task": {"type": "worker", "index": 0}}

  Task types ``chief`` (or the older ``master``) and ``worker`` only; without a chief, worker 0
  is the chief. A ``ps`` or ``evaluator`` task is refused (that is ParameterServerStrategy's
  layout). No TF_CONFIG, or a cluster of one task, trains on one machine as the train task does.
- Whatever the inputs' URIs need (``GOOGLE_APPLICATION_CREDENTIALS`` or the node's service
  account, ``AWS_*`` / ``MINIO_*``; see ``components/_shared/object_store.py``), and
  ``MLFLOW_TRACKING_*`` if the tracking server wants them.
- Optional: ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` (tests set both to 1).

What is written where:

- chief: ``model_dir/`` (``model.keras``, the transform spec, the scorer, ``train_metrics.json``:
  the same files as single-worker training), ``result_path`` (JSON: ``metrics``, ``history``,
  ``device``, ``epochs_run``, ``examples_per_second``, ``train_seconds``, ``mlflow_run_id``,
  ``mlflow_model_uri``, ``workers``), the MLflow run, and the epoch checkpoints under
  ``checkpoint_dir`` (removed once training succeeded).
- other workers: nothing. (TensorFlow's multi-worker guide has every worker save, the others to a
  temporary path, because tf.keras's SavedModel saving takes part in collective ops; Keras 3's
  ``model.save`` reads each variable locally, so the others skip saving and finish.)
- exit status 0 on success; on bad input or configuration 1 with one sentence on stderr.

Restarts: a worker that dies makes the others fail (their collective ops lose a peer); the
launcher restarts the replicas (TFJob ``restartPolicy: OnFailure``, a new CustomJob attempt), and
every replica restores the last epoch from ``checkpoint_dir`` (same mechanism as preemption,
``components/train/checkpoint.py``): training resumes at the next epoch, finished epochs are not
repeated.

Data: each worker reads its own contiguous share of the split's rows (by Parquet row group, see
``components/train/inputs.py``); shares differ by at most a row and give every worker the same
number of steps, which collective ops need. The global batch is the configured batch size; each
worker takes ``batch_size / workers`` rows per step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional

from components._shared.errors import ConfigError

logger = logging.getLogger(__name__)

TF_CONFIG_ENV = "TF_CONFIG"
CHIEF_TYPES = ("chief", "master")
TRAINING_TYPES = (*CHIEF_TYPES, "worker")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The training tasks of a TF_CONFIG, chief first, and which of them this process is."""

    addresses: tuple  # every training task's host:port, in TensorFlow's task-id order (chief first)
    task_type: str
    task_index: int
    has_chief: bool = False  # a 'chief' (or 'master') task; else worker 0 is the chief

    @property
    def num_workers(self) -> int:
        return len(self.addresses)

    @property
    def worker_id(self) -> int:
        """This task's position in ``addresses`` (TensorFlow's ``id_in_cluster``)."""
        if self.task_type in CHIEF_TYPES:
            return 0
        return self.task_index + (1 if self.has_chief else 0)

    @property
    def is_chief(self) -> bool:
        return self.worker_id == 0


def parse_tf_config(text: str) -> Cluster:
    """Validate a TF_CONFIG string for MultiWorkerMirroredStrategy.

    Raises:
        ConfigError: One sentence naming what is wrong.
    """
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not JSON ({exc})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict) or not cfg["cluster"]:
        raise ConfigError('TF_CONFIG has no "cluster" object naming the training tasks')
    cluster, task = cfg["cluster"], cfg.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError('TF_CONFIG has no "task" object with this process\'s "type" and "index"')
    others = sorted(set(cluster) - set(TRAINING_TYPES))
    if others:
        raise ConfigError(f"TF_CONFIG names {', '.join(repr(t) for t in others)} tasks: multi-worker training "
                          f"(MultiWorkerMirroredStrategy) runs only 'chief' and 'worker' tasks")
    for kind, hosts in cluster.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h.rpartition(":")[2].isdigit() for h in hosts):
            raise ConfigError(f"TF_CONFIG cluster {kind!r} must be a list of host:port strings, got {hosts!r}")
    chiefs = [h for t in CHIEF_TYPES for h in cluster.get(t, [])]
    if len(chiefs) > 1:
        raise ConfigError(f"TF_CONFIG names {len(chiefs)} chief tasks; a cluster has at most one")
    workers = list(cluster.get("worker", []))
    addresses = tuple(chiefs + workers)
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"TF_CONFIG names the same address twice: {list(addresses)}")
    kind, index = task["type"], task.get("index", 0)
    if kind not in TRAINING_TYPES:
        raise ConfigError(f"this process's TF_CONFIG task type is {kind!r}; multi-worker training runs "
                          f"only 'chief' and 'worker' tasks")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster.get(kind, [])):
        raise ConfigError(f"TF_CONFIG task index {index!r} is not one of the {len(cluster.get(kind, []))} "
                          f"{kind!r} task(s) of the cluster")
    return Cluster(addresses, kind, index, has_chief=bool(chiefs))


def cluster_from_env(env: Optional[dict] = None) -> Optional[Cluster]:
    """The cluster of ``TF_CONFIG``; None when it is unset or empty (single-machine training)."""
    text = (os.environ if env is None else env).get(TF_CONFIG_ENV, "").strip()
    return parse_tf_config(text) if text else None


def multi_worker_strategy(cluster: Cluster):
    """``(device description, MultiWorkerMirroredStrategy)`` for ``cluster`` (from TF_CONFIG).

    Call it before anything else touches TensorFlow's runtime (TensorFlow's requirement). Workers
    with GPUs use mixed precision, as single-machine training does.
    """
    import keras
    import tensorflow as tf

    _patch_keras_reduce()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    where = f"{len(gpus)} GPU(s)" if gpus else "CPU"
    logger.info("multi-worker training: task %s %d (worker %d of %d, %s); cluster %s", cluster.task_type,
                cluster.task_index, cluster.worker_id, cluster.num_workers,
                "chief" if cluster.is_chief else "not the chief", ", ".join(cluster.addresses))
    return f"{cluster.num_workers} workers x {where}", strategy


def _patch_keras_reduce() -> None:
    """Keras 3's TF trainer reduces each step's logs across workers with ``strategy.reduce("MEAN",
    v, axis=0)``, which fails on the scalar logs (loss, metric results) as soon as there are two
    workers ("Invalid reduction dimension 0 for input with 0 dimensions"; keras-team/keras#20585,
    open for Keras 3.5-3.15). Reducing scalars with ``axis=None`` is what the reduction means; the
    epoch's logs Keras reports come from the metric variables (summed over workers) anyway.
    Idempotent; only multi-worker training calls it."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "_kfp_tf_gate", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return trainer.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0)
                if isinstance(v, tf.distribute.DistributedValues) else v, values)
        return original(values, strategy, reduction)

    reduce_per_replica._kfp_tf_gate = True
    trainer.reduce_per_replica = reduce_per_replica


def prepare_model(model, strategy, split) -> None:
    """Build the compiled model's metrics and loss state from one local batch before ``fit``.

    Keras 3 builds them from the first batch of the distributed dataset, reducing it with
    ``strategy.reduce``, which cannot take the model's dict of inputs (keras-team/keras#20329);
    building from a batch of this worker's own data first makes that step unnecessary.
    """
    import tensorflow as tf

    first = next(split.batches(max(1, split.batch)))
    with strategy.scope():
        model._symbolic_build(data_batch=tf.nest.map_structure(tf.convert_to_tensor, first))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def local_dir(uri: str) -> str:
    """``uri`` itself when it is a local or mounted path; else a new temporary folder to write first."""
    if "://" not in uri or uri.startswith("file://"):
        return uri.removeprefix("file://")
    import tempfile

    return tempfile.mkdtemp(prefix="train-model-")


def publish_dir(local: str, uri: str) -> None:
    """Copy the folder ``local`` to ``uri`` (an object-store URI) and remove it; no-op when they
    are the same place."""
    if local == uri.removeprefix("file://"):
        return
    import shutil

    from components._shared.object_store import filesystem

    fs, root = filesystem(uri)
    for dirpath, _, files in os.walk(local):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, local).replace(os.sep, "/")
            fs.put_file(path, root.rstrip("/") + "/" + rel)
    shutil.rmtree(local, ignore_errors=True)
    logger.info("copied the model to %s", uri)
