"""``rehearse``: run a compiled pipeline file the way Kubeflow Pipelines / Vertex AI would.

kfp.local loads the compiled YAML (``kfp.components.load_component_from_file``) and its own
orchestrator runs the DAG, ``dsl.If`` and each task's retryPolicy. Two things are swapped in for
the duration of the call (``patched_kfp_local``), and restored afterwards:

- ``kfp.local.subprocess_task_handler.SubprocessTaskHandler``, which kfp.local's dispatcher looks
  up at each task, becomes ``launcher.make_handler(ctx)``: every attempt is an isolated pod with a
  KFP-launcher emulation around it (see ``launcher``);
- the ``time`` module seen by kfp.local's task executor, so retry back-offs can be scaled
  (``backoff_scale``; 1.0 by default, the policy's own durations). The back-offs the policy asked
  for are recorded either way.

Around the run: the object-store emulator and the MLflow server (``services``), the data
uploaded to the bucket (ingest reads ``gs://`` through gcsfs, as on a cluster), and afterwards the
pipeline root downloaded back from the emulator; the summary is built from those copies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterable
from typing import Optional

from components._shared.errors import PipelineError
from components._shared.params import PARAMS
from pipelines.local import output_to
from pipelines.rehearsal import platform as platform_mod
from pipelines.rehearsal.launcher import Context, make_handler
from pipelines.rehearsal.services import (
    PASSWORD_KEY,
    SECRET_NAME,
    USER_KEY,
    MlflowServer,
    ObjectStore,
    credentials,
)

TARGETS = ("kubeflow", "vertex")
_NOT_PROMOTED: dict = {}
BUCKET = "rehearsal"
ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*Error|\w*Exception): (.+)$")


def compiled_file(target: str) -> str:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "compiled", target, "training.yaml")


class Services:
    """The object-store emulator and the MLflow server one or more rehearsals use.

    ``root`` keeps their state (bucket objects, MLflow's SQLite stores, the credentials), so a
    later ``Services`` on the same root sees the same registry and artifacts.
    """

    def __init__(self, root: str, mlflow_auth: bool = True, store: Optional[ObjectStore] = None):
        self.root = os.path.abspath(root)
        self.mlflow_auth = mlflow_auth
        self.bucket = BUCKET
        self._stack = contextlib.ExitStack()
        self.store: Optional[ObjectStore] = store
        self.mlflow: Optional[MlflowServer] = None
        self.creds: dict = {}

    def __enter__(self) -> Services:
        try:
            if self.store is None:
                self.store = self._stack.enter_context(ObjectStore(os.path.join(self.root, "gcs")))
            self.store.ensure_bucket(self.bucket)
            self.creds = credentials(os.path.join(self.root, "secrets"))
            self.mlflow = self._stack.enter_context(MlflowServer(
                os.path.join(self.root, "mlflow" if self.mlflow_auth else "mlflow-open"),
                f"gs://{self.bucket}/mlartifacts", self.creds,
                self.store.url, auth=self.mlflow_auth))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def facts(self) -> dict:
        return {
            "object_store": {"kind": "fake-gcs-server (GCS JSON API)", "url": self.store.url,
                             "bucket": f"gs://{self.bucket}", "state": self.store.root},
            "mlflow": {"kind": "mlflow server" + (" --app-name basic-auth" if self.mlflow_auth else ""),
                       "url": self.mlflow.url, "backend_store": "sqlite (" + self.mlflow.home + ")",
                       "artifacts_destination": self.mlflow.artifacts_uri},
        }


class _ScaledClock:
    """Stands for the ``time`` module in kfp.local's task executor: scales retry back-offs."""

    def __init__(self, scale: float, ctx: Context):
        self._scale, self._ctx = scale, ctx

    def sleep(self, seconds: float) -> None:
        with self._ctx.lock:
            self._ctx.backoffs.append(seconds)
        time.sleep(max(0.0, seconds * self._scale))

    def __getattr__(self, name):
        return getattr(time, name)


@contextlib.contextmanager
def patched_kfp_local(ctx: Context, backoff_scale: float):
    from kfp.local import subprocess_task_handler
    from kfp.local.orchestrator import task_executor

    handler = make_handler(ctx)
    saved = subprocess_task_handler.SubprocessTaskHandler, task_executor.time
    subprocess_task_handler.SubprocessTaskHandler = handler
    task_executor.time = _ScaledClock(backoff_scale, ctx)
    try:
        yield
    except BaseException:
        ctx.kill_pods()  # e.g. Ctrl-C: kfp.local's worker threads would otherwise wait for them
        raise
    finally:
        subprocess_task_handler.SubprocessTaskHandler, task_executor.time = saved


def _last_error(log_path: Optional[str]) -> Optional[str]:
    if not log_path or not os.path.exists(log_path):
        return None
    with open(log_path, errors="replace") as fh:
        for line in reversed(fh.read().splitlines()):
            m = ERROR_LINE.match(re.sub(r"\x1b\[[0-9;]*m", "", line))
            if m:
                return m.group(2).strip()
    return None


def write_secret(rehearsal_dir: str, name: str, data: dict) -> str:
    """The file that stands for the Kubernetes secret ``name`` (mode 600)."""
    path = os.path.join(rehearsal_dir, "secrets", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    return path


def mlflow_auth_route(pipeline: platform_mod.CompiledPipeline) -> bool:
    """Whether the spec gives its MLflow tasks credentials (then the server requires them).

    A Kubeflow spec does through ``secretAsEnv``. A spec that names no credential source (the
    Vertex file today) is rehearsed against a server without authentication, i.e. one reachable
    only from inside the network: a server that asks for credentials would reject every task.
    """
    return any(USER_KEY in keys.values() for pod in pipeline.pods.values()
               for _, _, keys, _ in pod.secret_env) or any(USER_KEY in pod.env for pod in pipeline.pods.values())


def _job_service(stack: contextlib.ExitStack, ctx: Context):
    """Multi-worker training (a train task compiled with --train-workers N): the cluster's job APIs,
    whose jobs run here as N processes (``jobs``); their addresses reach every pod. None otherwise."""
    if not any(label.startswith("exec-train-model-multiworker") for label in ctx.pipeline.pods):
        return None
    from pipelines.rehearsal.jobs import JobService

    # --preempt train on a multi-worker train task kills one of its replicas (the job restarts them all).
    preempt = bool(ctx.preempt & {"train", "train-model", "train-model-multiworker"})
    service = stack.enter_context(JobService(ctx.logs_dir, {"STORAGE_EMULATOR_HOST": ctx.store.url},
                                             os.path.join(ctx.rehearsal_dir, "secrets"), preempt=preempt))
    ctx.extra_env.update(service.env())
    return service


def _default_serving_base(pipeline: platform_mod.CompiledPipeline, bucket: str) -> str:
    """Deploy's PVC mount path when the spec mounts one, else ``gs://<bucket>/serving`` on the emulator
    (what a user of a file compiled without ``--serving-pvc`` must give: a pod folder would be refused)."""
    deploy = pipeline.pods.get("exec-deploy-model")
    if deploy and deploy.pvc_mounts:
        return deploy.pvc_mounts[0][1]
    return f"gs://{bucket}/serving"


def execute_compiled(ctx: Context, pipeline_file: str, arguments: dict, services, target: str, run_id: str,
                     log_path: str, quiet: bool, backoff_scale: float, recorder=None):
    """Run the compiled file under kfp.local's orchestrator with the rehearsal's pod handler; return
    the loaded pipeline. ``recorder`` (pipelines.progress.StepRecorder) records and prints its steps.

    Raises:
        PipelineError: A task failed; its one sentence (the facts are written first).
    """
    from kfp import components, local

    from pipelines.local_dag import concurrent_local_dag, parallelism_from_env
    from pipelines.progress import StepRecorder, planned_steps, recording

    component = components.load_component_from_file(pipeline_file)
    recorder = recorder or StepRecorder()
    parallelism = parallelism_from_env()
    try:
        with output_to(log_path, quiet, recorder.console_fd) as console, recording(recorder, console), \
                patched_kfp_local(ctx, backoff_scale), warnings.catch_warnings(), \
                concurrent_local_dag(parallelism):  # independent tasks at once, as on a cluster
            # resources/accelerators/display names: reported per pod in the facts instead
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=ctx.local_root,
                       raise_on_error=True)
            component(**arguments)
            recorder.close(planned_steps(component.pipeline_spec))  # what never ran: a dsl.If not taken
    except Exception as exc:
        failed = [r for r in ctx.records if r.get("status") == "FAILURE"]
        msg = (_last_error(failed[-1]["log"]) or failed[-1].get("launcher_error")) if failed else None
        _write_facts(ctx.run_dir, ctx, ctx.pipeline, services, target, arguments, ctx.gcs_root)
        raise PipelineError(f"{msg or exc} (rehearsal {run_id}; log: {log_path})") from exc
    return component


def rehearse(
    target: str,
    data: str,
    label: str,
    runs_dir: str = "runs",
    model_name: str = PARAMS.model_name,
    params: Optional[dict] = None,
    run_id: Optional[str] = None,
    preempt: Iterable[str] = (),
    serving_base: Optional[str] = None,
    services: Optional[Services] = None,
    backoff_scale: float = 1.0,
    keep_sandboxes: bool = False,
    pipeline_file: Optional[str] = None,
    quiet: bool = True,
    progress_fd: Optional[int] = None,
) -> dict:
    """Run ``compiled/<target>/training.yaml`` as a cluster would; write and return summary.json.

    Args:
        services: Running stand-ins to use (tests share one set); by default they are started
            under ``<runs_dir>/rehearsal`` and stopped at the end.
        preempt: Task names (``train`` or ``train-model``) whose first attempt is killed mid-epoch; on a
            multi-worker train task, one replica of its job is killed instead (``jobs``).
        backoff_scale: Factor on retry back-offs (1.0: as the compiled retryPolicy says).
        progress_fd: Print a line per step as it ends on this file descriptor (1 or 2); None: none.

    Raises:
        PipelineError: Bad input, a service that does not start, or a failed task (its message).
    """
    from components.ingest.core import preflight
    from pipelines.local import new_run_id
    from pipelines.progress import StepRecorder, package_versions, run_parameters

    if target not in TARGETS:
        raise PipelineError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    preflight(data, label)
    runs_dir = os.path.abspath(runs_dir)
    rehearsal_dir = os.path.join(runs_dir, "rehearsal")
    run_id = run_id or new_run_id()
    run_dir = os.path.join(runs_dir, run_id)
    local_root = os.path.join(run_dir, "pipeline_root")
    os.makedirs(local_root, exist_ok=True)
    log_path = os.path.join(run_dir, "pipeline.log")
    pipeline_file = pipeline_file or compiled_file(target)
    pipeline = platform_mod.load(pipeline_file)

    with contextlib.ExitStack() as stack:
        if services is None:
            services = stack.enter_context(Services(rehearsal_dir, mlflow_auth=mlflow_auth_route(pipeline)))
        if services.mlflow_auth:
            write_secret(rehearsal_dir, SECRET_NAME, {USER_KEY: services.creds[USER_KEY],
                                                       PASSWORD_KEY: services.creds[PASSWORD_KEY]})
        store = services.store
        gcs_root = f"gs://{services.bucket}/pipeline-root/{run_id}"
        data_uri = f"gs://{services.bucket}/data/{run_id}/{os.path.basename(os.path.normpath(data))}"
        if "://" in data:
            data_uri = data
        else:
            store.upload_tree(os.path.abspath(data), data_uri)
        arguments = {
            "data_uri": data_uri,
            "label": label,
            "model_name": model_name,
            "mlflow_tracking_uri": services.mlflow.url,
            "serving_base_dir": serving_base or _default_serving_base(pipeline, services.bucket),
            **(params or {}),
        }
        unknown = sorted(set(arguments) - set(pipeline.parameters()))
        if unknown:
            raise PipelineError(f"{pipeline_file} has no parameter {', '.join(unknown)}")
        pipeline = platform_mod.load(pipeline_file, arguments)  # claim names may come from parameters
        ctx = Context(pipeline=pipeline, rehearsal_dir=rehearsal_dir, run_dir=run_dir,
                      local_root=local_root, gcs_root=gcs_root, store=store,
                      extra_env={"STORAGE_EMULATOR_HOST": store.url},
                      preempt=set(preempt), keep_sandboxes=keep_sandboxes)
        ctx.jobs = _job_service(stack, ctx)
        started = time.time()
        recorder = StepRecorder(console_fd=progress_fd, live=quiet)
        compiled = execute_compiled(ctx, pipeline_file, arguments, services, target, run_id, log_path, quiet,
                                    backoff_scale, recorder=recorder)
        # The artifacts as the cluster left them: read back from the object store.
        downloaded = store.download_tree(gcs_root, local_root)
        serving_local = arguments["serving_base_dir"]
        for claim, mount, sub in (pipeline.pods.get("exec-deploy-model") or platform_mod.PodSpec("", "")).pvc_mounts:
            if serving_local.startswith(mount):
                serving_local = ctx.pvc_folder(claim, sub) + serving_local[len(mount.rstrip("/")):]
        summary = _summary(ctx, run_id, run_dir, serving_local, services.mlflow.url, model_name)
        summary.update({
            "data": data_uri, "label": label, "model_name": model_name,
            "mlflow_tracking_uri": services.mlflow.url, "log": log_path,
            "wall_seconds": round(time.time() - started, 2), "steps": recorder.as_list(),
            "parameters": run_parameters(compiled, arguments), "versions": package_versions(), "target": target,
            "rehearsal": {**_write_facts(run_dir, ctx, pipeline, services, target, arguments, gcs_root),
                          "objects_read_back": downloaded},
        })
    from components._shared.io import write_json

    write_json(summary, os.path.join(run_dir, "summary.json"))
    return summary


def _summary(ctx: Context, run_id: str, run_dir: str, serving_base: str, tracking_uri: str,
             model_name: str) -> dict:
    """summary.json from the tasks' declared outputs, their files read back from the bucket."""
    from pipelines.local import summary_from_outputs

    outputs = {}
    for record in ctx.records:  # the last successful attempt of each task
        if record.get("status") == "SUCCESS":
            outputs[record["task"]] = record.get("outputs") or {}

    def local(task: str, name: str) -> Optional[str]:
        uri = (outputs.get(task, {}).get(name) or {}).get("uri")
        if not uri or not uri.startswith(ctx.gcs_root + "/"):
            return None
        path = os.path.join(ctx.local_root, *uri[len(ctx.gcs_root) + 1:].split("/"))
        return path if os.path.exists(path) else None

    deployment_path = local("deploy-model", "deployment")
    deployment = None
    if deployment_path:
        with open(deployment_path) as fh:
            deployment = json.load(fh)
    promoted = bool((outputs.get("compare-models", {}).get("Output") or {}).get("value"))
    export_metrics = (outputs.get("export-model", {}).get("metrics") or {}).get("metadata") or {}
    if "://" in serving_base:  # the served state lives in the bucket, not here
        serving_base = os.path.join(run_dir, "no-local-serving-base")
    return summary_from_outputs(
        run_id, run_dir, decision_path=local("compare-models", "decision"),
        saved_model_dir=local("export-model", "saved_model"), tflite_dir=local("export-model", "tflite_model"),
        export_metrics=export_metrics, tracking_uri=tracking_uri, serving_base=serving_base,
        model_name=model_name, ingest_info_path=local("ingest-data", "ingest_info"),
        # Not promoted: nothing to look up. Promoted without a deployment record: the registry says.
        deployment=deployment if deployment is not None or promoted else _NOT_PROMOTED)


def _write_facts(run_dir, ctx, pipeline, services, target, arguments, gcs_root) -> dict:
    facts = {
        "target": target,
        "pipeline_file": pipeline.path,
        "pipeline_sha256": pipeline.sha256,
        "pipeline_root": gcs_root,
        "services": services.facts(),
        "parameters": {k: v for k, v in arguments.items()},
        "retry_policies": pipeline.retry_policies(),
        "retry_backoffs_requested_s": list(ctx.backoffs),
        "tasks": ctx.records,
        "jobs": ctx.jobs.facts() if ctx.jobs else [],  # multi-worker training jobs and their replicas
        "pods": {label: pod.facts() for label, pod in pipeline.pods.items()},
    }
    with open(os.path.join(run_dir, "rehearsal.json"), "w") as fh:
        json.dump(facts, fh, indent=2, default=str)
    return facts

