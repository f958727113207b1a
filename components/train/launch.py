"""Launch multi-worker training as a cluster job and wait for it: a Vertex AI CustomJob with worker
pools, or a Kubeflow TFJob (Training Operator, ``kubeflow.org/v1``).

Every replica runs the trainer image with ``python3 -m components.train.worker --config URI``
(``components/train/distributed.py``); the platform gives each its ``TF_CONFIG``, which
MultiWorkerMirroredStrategy reads. Vertex names workerpool0 ``chief`` and workerpool1 ``worker``;
the Training Operator does the same for the ``Chief`` and ``Worker`` replica types. So both jobs
are: one chief replica plus ``workers - 1`` worker replicas, all alike (machine, accelerators).

The train task that calls this (``component.train_model_multiworker``) is a small pod: it writes the
workers' config, starts the job, polls it until it ends, and copies the chief's model into its own
output. A failed, cancelled or expired job is a :class:`ModelError` of one sentence; the task's pod
being stopped (SIGTERM) cancels a Vertex job it started, so no paid replica outlives the run.

Where the APIs are: in production the environment's (the run's service account on Vertex; the
pod's service account and ``load_incluster_config`` on Kubeflow). ``KFP_TF_GATE_VERTEX_API_ENDPOINT``
and ``KFP_TF_GATE_K8S_API`` point them at a stand-in instead (REST, anonymous): the rehearsal
and the tests set them, nothing else does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

from components._shared.errors import ConfigError, ModelError
from components._shared.vertex_api import VERTEX_ENDPOINT_ENV, client_options, stand_in_endpoint  # noqa: F401

logger = logging.getLogger(__name__)

WORKER_MODULE = "components.train.worker"
DEFAULT_MACHINE_TYPE = "n1-standard-8"
K8S_API_ENV = "KFP_TF_GATE_K8S_API"
TFJOB_CONTAINER = "tensorflow"  # the Training Operator's default container name of a TFJob
VERTEX_DONE = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
VERTEX_HINT = "; the run's service account needs roles/aiplatform.user and iam.serviceAccounts.actAs on itself"


@dataclasses.dataclass
class Replicas:
    """The replicas of one multi-worker training job, all alike.

    Attributes:
        workers: Replicas in all, the chief included (2 or more).
        image: The trainer image every replica runs.
        config_uri: The workers' config (``gs://``, ``minio://``, ...), read by every replica.
        machine_type: Vertex: machine type of each replica (default n1-standard-8).
        accelerator_type: Vertex accelerator type (NVIDIA_TESLA_T4) or Kubernetes resource name
            (nvidia.com/gpu); empty for CPU replicas.
        accelerator_count: Accelerators per replica; 0 for none.
        cpu, memory: Kubeflow: each replica's requests (the single train pod's).
        node_selector: Kubeflow: ``key=value`` node label of the accelerator nodes.
        env: Plain environment of every replica (names, never credentials).
        secret_env: Kubeflow: ``(secret, key, variable)`` optional secret references of every replica.
    """

    workers: int
    image: str
    config_uri: str
    machine_type: str = ""
    accelerator_type: str = ""
    accelerator_count: int = 0
    cpu: str = ""
    memory: str = ""
    node_selector: str = ""
    env: dict = dataclasses.field(default_factory=dict)
    secret_env: list = dataclasses.field(default_factory=list)
    entry: tuple = ("python3", "-m", WORKER_MODULE)  # as the KFP executor runs in the image; "--config URI" follows

    def __post_init__(self):
        if self.workers < 2:
            raise ConfigError(f"multi-worker training needs at least 2 replicas, got workers={self.workers}")
        if not self.image or not self.config_uri:
            raise ConfigError("multi-worker training needs the trainer image and the workers' config URI")
        if self.accelerator_count and not self.accelerator_type:
            raise ConfigError(f"{self.accelerator_count} accelerators per replica, but no accelerator type")

    @property
    def command(self) -> list:
        return [*self.entry, "--config", self.config_uri]


def job_name(prefix: str, key: str, limit: int = 63) -> str:
    """A DNS-1123 name, the same for every retry of one pipeline task (``key``: the run's job id)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    head = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[: limit - len(digest) - 1].strip("-")
    return f"{head}-{digest}" if head else f"job-{digest}"


def _waits(longest: float) -> Iterator[float]:
    """Seconds between polls: 1, 1.5, 2.25, ... up to ``longest``, so a short job is seen to end soon
    and a long one costs a request every ``longest`` seconds."""
    wait = min(1.0, longest)
    while True:
        yield wait
        wait = min(wait * 1.5, longest)


# -- Vertex AI ---------------------------------------------------------------------------------


def vertex_worker_pool_specs(replicas: Replicas) -> list:
    """``worker_pool_specs`` of ``aiplatform.CustomJob``: the chief pool (1 replica), then the workers."""
    machine = {"machine_type": replicas.machine_type or DEFAULT_MACHINE_TYPE}
    if replicas.accelerator_count:
        machine.update(accelerator_type=replicas.accelerator_type, accelerator_count=replicas.accelerator_count)
    container = {"image_uri": replicas.image, "command": replicas.command,
                 "env": [{"name": k, "value": v} for k, v in sorted(replicas.env.items())]}
    return [{"machine_spec": dict(machine), "replica_count": count, "container_spec": dict(container)}
            for count in (1, replicas.workers - 1)]


@dataclasses.dataclass
class VertexPlace:
    """Where the CustomJob runs. ``base_output_dir``: a ``gs://`` folder of the run (the job's staging)."""

    project: str
    location: str
    display_name: str
    base_output_dir: str
    labels: dict = dataclasses.field(default_factory=dict)
    service_account: Optional[str] = None


def _vertex_init(place: VertexPlace) -> None:
    from google.cloud import aiplatform

    aiplatform.init(project=place.project, location=place.location, staging_bucket=place.base_output_dir,
                    **client_options())


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM (the pod is being stopped) raises SystemExit here, so the caller can clean up."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_vertex_job(replicas: Replicas, place: VertexPlace, poll_seconds: float = 30.0) -> str:
    """Start the CustomJob, wait until it ends; returns its resource name.

    Raises:
        ConfigError: No project or location.
        ModelError: Vertex AI refused a call, or the job failed, was cancelled or expired.
    """
    if not place.project or not place.location:
        raise ConfigError(f"multi-worker training on Vertex AI needs a project and a location, got "
                          f"project={place.project!r}, location={place.location!r} (pipeline parameter "
                          f"vertex_project, or the run's own project)")
    from google.cloud import aiplatform

    from components._shared.launch.vertex import vertex_error

    where = f"Vertex AI ({place.project}, {place.location})"
    _vertex_init(place)
    job, step = None, "creating the multi-worker CustomJob"
    try:
        with _stopped_by_sigterm():
            try:
                job = aiplatform.CustomJob(display_name=place.display_name,
                                           worker_pool_specs=vertex_worker_pool_specs(replicas),
                                           base_output_dir=place.base_output_dir, labels=place.labels or None)
                # MultiWorkerMirroredStrategy cannot lose a replica and go on: a restarted replica restarts
                # them all, and every replica resumes from the checkpoints.
                job.submit(service_account=place.service_account, restart_job_on_worker_restart=True)
                step = f"waiting for CustomJob {job.resource_name}"
                logger.info("started %s: %d replicas of %s", job.resource_name, replicas.workers, replicas.image)
                waits = _waits(poll_seconds)
                while (state := job.state.name) not in VERTEX_DONE:
                    time.sleep(next(waits))
            except BaseException:
                if job is not None and getattr(job, "_gca_resource", None) is not None and job.resource_name:
                    _cancel_vertex(job)
                raise
    except SystemExit:
        raise
    except Exception as exc:
        raise vertex_error(exc, where, step, ModelError, VERTEX_HINT) from None
    if state != "JOB_STATE_SUCCEEDED":
        error = job.to_dict().get("error") or {}
        detail = f": {error.get('message')}" if error.get("message") else ""
        raise ModelError(f"the multi-worker training job {job.resource_name} on {where} ended "
                         f"{state.removeprefix('JOB_STATE_')}{detail}")
    logger.info("%s succeeded", job.resource_name)
    return job.resource_name


def _cancel_vertex(job) -> None:
    try:
        if job.state.name not in VERTEX_DONE:
            job.cancel()
            logger.warning("cancelled %s (the train task stopped before it ended)", job.resource_name)
    except Exception as exc:  # the original error matters more
        logger.warning("could not cancel %s: %s", job.resource_name, exc)


# -- Kubeflow (Training Operator) --------------------------------------------------------------


def tfjob(replicas: Replicas, name: str, namespace: str, labels: Optional[dict] = None):
    """The TFJob (``kubeflow.training.models.KubeflowOrgV1TFJob``): Chief x1, Worker x (workers - 1)."""
    from kubeflow.training import models
    from kubernetes.client import models as k8s

    limits, requests = {}, {}
    if replicas.cpu:
        requests["cpu"] = replicas.cpu
    if replicas.memory:
        requests["memory"] = replicas.memory
    if replicas.accelerator_count:
        limits[replicas.accelerator_type] = str(replicas.accelerator_count)
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(replicas.env.items())]
    env += [k8s.V1EnvVar(name=var, value_from=k8s.V1EnvVarSource(
        secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key, optional=True)))
        for secret, key, var in replicas.secret_env]
    container = k8s.V1Container(name=TFJOB_CONTAINER, image=replicas.image, command=replicas.command, env=env or None,
                                resources=k8s.V1ResourceRequirements(limits=limits or None, requests=requests or None))
    pod = k8s.V1PodSpec(containers=[container])
    key, _, value = replicas.node_selector.partition("=")
    if replicas.accelerator_count and key:
        pod.node_selector = {key: value}
    if replicas.accelerator_count:
        pod.tolerations = [k8s.V1Toleration(key=replicas.accelerator_type, operator="Exists", effect="NoSchedule")]
    template = k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=dict(labels or {})), spec=pod)

    def spec(count: int):
        return models.KubeflowOrgV1ReplicaSpec(replicas=count, restart_policy="OnFailure", template=template)

    return models.KubeflowOrgV1TFJob(
        api_version="kubeflow.org/v1", kind="TFJob",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels or {})),
        spec=models.KubeflowOrgV1TFJobSpec(
            tf_replica_specs={"Chief": spec(1), "Worker": spec(replicas.workers - 1)},
            run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="Running", backoff_limit=3)))


def training_client(namespace: str):
    """The Training Operator SDK's client: a stand-in's API (``KFP_TF_GATE_K8S_API``), else in-cluster config."""
    from kubeflow.training import TrainingClient

    host = os.environ.get(K8S_API_ENV, "").strip()
    if host:
        from kubernetes import client

        config = client.Configuration()
        config.host = host
        return TrainingClient(client_configuration=config, namespace=namespace, job_kind="TFJob")
    return TrainingClient(namespace=namespace, job_kind="TFJob")


def pod_namespace(default: str = "kubeflow") -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.exists(path):
        with open(path) as fh:
            return fh.read().strip() or default
    return default


def _api_status(exc: BaseException) -> Optional[int]:
    cause = exc.__cause__
    return getattr(cause, "status", None)


def _condition(job) -> tuple:
    """(type, message) of the TFJob's latest true condition; ("", "") before the operator saw it."""
    conditions = [c for c in ((job.status and job.status.conditions) or []) if str(c.status) == "True"]
    return (conditions[-1].type, conditions[-1].message or "") if conditions else ("", "")


def run_tfjob(replicas: Replicas, name: str, namespace: str, labels: Optional[dict] = None,
              poll_seconds: float = 30.0) -> str:
    """Create the TFJob (or, for a retried task, wait on the one it already started), wait until it
    succeeds or fails; returns ``namespace/name``.

    Raises:
        ModelError: The API refused a call (no Training Operator, RBAC), or the TFJob failed.
    """
    where = f"TFJob {namespace}/{name}"
    try:
        client = training_client(namespace)
        try:
            client.create_job(job=tfjob(replicas, name, namespace, labels), namespace=namespace)
            logger.info("created %s: %d replicas of %s", where, replicas.workers, replicas.image)
        except RuntimeError as exc:
            if _api_status(exc) != 409:
                raise
            kind, _ = _condition(client.get_job(name, namespace))
            if kind != "Failed":  # a retried task: the job it started goes on
                logger.info("%s already exists (%s): waiting for it", where, kind or "no condition yet")
            else:
                client.delete_job(name, namespace)
                client.create_job(job=tfjob(replicas, name, namespace, labels), namespace=namespace)
                logger.info("re-created %s (the earlier one had failed)", where)
        waits = _waits(poll_seconds)
        while True:
            kind, message = _condition(client.get_job(name, namespace))
            if kind in ("Succeeded", "Failed"):
                break
            time.sleep(next(waits))
    except (RuntimeError, TimeoutError) as exc:
        status = _api_status(exc)
        hint = {404: ": is the Kubeflow Training Operator (TFJob CRD) installed?",
                403: ": the pipeline's service account needs create/get/delete on tfjobs.kubeflow.org"}.get(status, "")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"the Kubernetes API refused {where} ({first[:300]}){hint}") from None
    if kind == "Failed":
        raise ModelError(f"the multi-worker training job {where} failed{': ' + message if message else ''}")
    logger.info("%s succeeded", where)
    return f"{namespace}/{name}"


# -- the train task's side: the job's folder, the workers' config, the chief's model -----------

FORWARDED_ENV = ("KFP_TF_GATE_MLFLOW_SECRET",)  # names only (Vertex: a Secret Manager secret's name)
MINIO_SECRET_ENV = (("mlpipeline-minio-artifact", "accesskey", "MINIO_ACCESS_KEY"),
                    ("mlpipeline-minio-artifact", "secretkey", "MINIO_SECRET_KEY"))


def job_folder(model_uri: str) -> str:
    """``<the task's output folder>/multiworker``: the workers' config and the chief's model, beside
    the task's own output and readable by every replica (the pipeline root is gs:// or minio://)."""
    return model_uri.rstrip("/").rsplit("/", 1)[0] + "/multiworker"


def write_json_uri(data: dict, uri: str) -> str:
    import json

    from components._shared.object_store import filesystem

    fs, path = filesystem(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    return uri


def read_json_uri(uri: str) -> dict:
    """The JSON at ``uri`` (the chief's result).

    Raises:
        ModelError: Nothing is there, or it is not a JSON object.
    """
    import json

    from components._shared.object_store import filesystem

    fs, path = filesystem(uri)
    try:
        with fs.open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ModelError(f"the multi-worker training job succeeded but its chief wrote no result at {uri}") from None
    except ValueError as exc:
        raise ModelError(f"the chief's result {uri} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"the chief's result {uri} is not a JSON object")
    return data


def copy_folder(uri: str, local: str) -> int:
    """Copy every file under ``uri`` (the chief's model) into the local folder ``local``; returns the count.

    Raises:
        ModelError: Nothing is there (the job succeeded without the chief writing its model).
    """
    from components._shared.object_store import filesystem

    fs, root = filesystem(uri)
    root = root.rstrip("/")
    files = [f for f in fs.find(root) if not f.endswith("/")]
    if not files:
        raise ModelError(f"the multi-worker training job succeeded but its chief wrote no model at {uri}")
    for f in files:
        target = os.path.join(local, *f[len(root) + 1:].split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(f, target)
    return len(files)


def kubeflow_secret_env(mlflow_secret: str) -> list:
    """Secret references of every TFJob replica: KFP's MinIO credentials (a ``minio://`` pipeline root)
    and the MLflow credentials secret, both optional as on the train pod."""
    refs = list(MINIO_SECRET_ENV)
    if mlflow_secret:
        refs += [(mlflow_secret, key, key) for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")]
    return refs


def vertex_project(given: str) -> str:
    """The parameter, else the run's own project (CLOUD_ML_PROJECT_ID / GOOGLE_CLOUD_PROJECT, else
    the credentials' project); "" when none is known."""
    if given:
        return given
    for name in ("CLOUD_ML_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import google.auth

        return google.auth.default()[1] or ""
    except Exception:  # no credentials: run_vertex_job says what is missing
        return ""


def caller_service_account() -> Optional[str]:
    """The service account the train task runs as (the pipeline's), for the CustomJob's replicas; None
    when unknown (a stand-in's API, no credentials): Vertex's default for custom training then applies."""
    if stand_in_endpoint():
        return None
    try:
        import google.auth
        from google.auth.transport.requests import Request

        creds, _ = google.auth.default()
        email = getattr(creds, "service_account_email", None)
        if not email or "@" not in email:  # metadata-server credentials learn their email on refresh
            creds.refresh(Request())
            email = getattr(creds, "service_account_email", None)
        return email if email and "@" in email else None
    except Exception as exc:
        logger.warning("cannot tell the train task's service account (%s): the CustomJob runs as Vertex's "
                       "default for custom training", exc)
        return None


def run_job(platform: str, replicas: Replicas, key: str, job_dir: str, display_name: str,
            project: str = "", location: str = "", poll_seconds: float = 30.0) -> str:
    """Run the job on ``platform`` ("vertex" or "kubeflow") until it ends; returns its name.

    ``key`` (the pipeline job's id) names the TFJob, so a retried task finds the job it started.
    """
    if platform == "vertex":
        place = VertexPlace(vertex_project(project), location, display_name[:128], job_dir,
                            labels={"managed-by": "kfp-tf-gate"}, service_account=caller_service_account())
        return run_vertex_job(replicas, place, poll_seconds=poll_seconds)
    if platform == "kubeflow":
        return run_tfjob(replicas, job_name("train", key), pod_namespace(),
                         labels={"app.kubernetes.io/managed-by": "kfp-tf-gate"}, poll_seconds=poll_seconds)
    raise ConfigError(f"multi-worker training runs on vertex or kubeflow, got platform={platform!r}")
