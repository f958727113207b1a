"""One task attempt as a cluster runs it: a fresh "pod" and the KFP launcher around the executor.

kfp.local's orchestrator (DAG, ``dsl.If``, retryPolicy, parameter passing) decides *what* runs;
this module replaces only its ``SubprocessTaskHandler`` (see ``runner.patched_kfp_local``), i.e.
*how* one attempt runs. Per attempt:

1. A new empty sandbox (system temp dir, outside the runs dir): ``work/`` is the working
   directory, ``home/`` is ``HOME``, ``tmp/`` is ``TMPDIR``, ``mnt/`` holds the pod's mounts.
2. Launcher, before: the executor input kfp.local built (local paths) is rewritten as a cluster's
   would be: output artifact URIs become ``gs://<bucket>/pipeline-root/<run>/...``, output
   parameter and metadata files are pod-local, a string parameter under the local pipeline root
   (the ``{{$.pipeline_root}}`` placeholder) becomes its ``gs://`` URI, and every input artifact
   is downloaded from the object-store emulator. On a cluster ``Artifact.path`` of
   ``gs://b/k`` is ``/gcs/b/k``; here a ``sitecustomize`` on the pod's ``PYTHONPATH`` moves kfp's
   ``/gcs/`` (``/minio/``, ``/s3/``) prefix under ``mnt/`` for that process only, so the
   component code runs unchanged and sees exactly the files the launcher put there.
3. The executor (``python -m kfp.dsl.executor_main``, the compiled command) runs in its own
   session with an environment built from nothing but the pod spec (container ``env``, secrets,
   config maps), ``STORAGE_EMULATOR_HOST`` and a minimal ``PATH``: nothing leaks from the
   caller's shell (no ``MLFLOW_TRACKING_URI``, no cloud credentials).
4. Launcher, after (exit 0 only): output artifacts are uploaded to the emulator; the executor's
   output metadata goes back where kfp.local's orchestrator reads it. A failed attempt uploads
   nothing. The sandbox is removed afterwards (``keep_sandboxes`` keeps it); what the pod left
   in its working directory and HOME is listed in the attempt's record, since a cluster loses it.

PVC mounts: a task cannot see an absolute ``mountPath`` such as ``/models`` here (no mount
namespace is assumed), so a string parameter equal to or under a mount path of *that pod's*
``pvcMount`` entries is rewritten to the claim's local folder. That is the one place a task gets
a different value than on the cluster; it is listed in the task record (``mapped_parameters``).
A path that no ``pvcMount`` covers is passed unchanged, as the cluster would.

Preemption: for a task named in ``preempt``, the first attempt's process group is SIGKILLed as
soon as Keras starts its second epoch (``Epoch 2/N`` on the task's output: the first epoch's
end-of-epoch callbacks, BackupAndRestore included, have run). kfp.local then applies the task's
retryPolicy; the record of each attempt holds the first epoch it printed, which shows a resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

from kfp.local import status, subprocess_task_handler

from pipelines.rehearsal.platform import CompiledPipeline
from pipelines.rehearsal.services import ObjectStore

EPOCH_LINE = re.compile(r"^\s*Epoch (\d+)/(\d+)\s*$")
MOUNT_PREFIXES = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}

SITECUSTOMIZE = '''\
"""Rehearsal pod: kfp's /gcs/, /minio/, /s3/ mount prefixes live under $KFP_REHEARSAL_MOUNT_ROOT."""
import importlib.abc
import importlib.machinery
import os
import sys

_ROOT = os.environ.get("KFP_REHEARSAL_MOUNT_ROOT")
_TARGET = "kfp.dsl.types.artifact_types"


class _MountPrefixes(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            for attr, sub in (("_GCS_LOCAL_MOUNT_PREFIX", "gcs"), ("_MINIO_LOCAL_MOUNT_PREFIX", "minio"),
                              ("_S3_LOCAL_MOUNT_PREFIX", "s3")):
                setattr(module, attr, os.path.join(_ROOT, sub) + "/")

        spec.loader.exec_module = exec_module
        return spec


if _ROOT:
    sys.meta_path.insert(0, _MountPrefixes())
'''


@dataclasses.dataclass
class Context:
    """Everything a task attempt needs from the rehearsal; shared by kfp.local's worker threads."""

    pipeline: CompiledPipeline
    rehearsal_dir: str
    run_dir: str
    local_root: str  # kfp.local's pipeline_root: only executor metadata lands here
    gcs_root: str  # what the cluster's pipeline root would be
    store: ObjectStore
    extra_env: dict
    preempt: set = dataclasses.field(default_factory=set)
    keep_sandboxes: bool = False
    records: list = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    fired: set = dataclasses.field(default_factory=set)
    backoffs: list = dataclasses.field(default_factory=list)  # retry back-offs the policies asked for (s)
    live: set = dataclasses.field(default_factory=set)  # process groups of running pods
    jobs: Optional[object] = None  # jobs.JobService: multi-worker training jobs, when the file asks for them

    def kill_pods(self) -> None:
        """End every pod still running (the rehearsal was interrupted or failed)."""
        with self.lock:
            groups = list(self.live)
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __post_init__(self):
        self.hook_dir = os.path.join(self.rehearsal_dir, "pod-python")
        os.makedirs(self.hook_dir, exist_ok=True)
        with open(os.path.join(self.hook_dir, "sitecustomize.py"), "w") as fh:
            fh.write(SITECUSTOMIZE)
        self.logs_dir = os.path.join(self.run_dir, "tasks")
        os.makedirs(self.logs_dir, exist_ok=True)

    def to_gcs(self, local_path: str) -> str:
        rel = os.path.relpath(local_path, self.local_root).replace(os.sep, "/")
        return f"{self.gcs_root}/{rel}"

    def pvc_folder(self, claim: str, sub_path: str = "") -> str:
        path = os.path.normpath(os.path.join(self.rehearsal_dir, "pvc", claim, sub_path))
        os.makedirs(path, exist_ok=True)
        return path


def make_handler(ctx: Context):
    """A SubprocessTaskHandler subclass bound to ``ctx`` (kfp.local constructs one per attempt)."""

    class RehearsalTaskHandler(subprocess_task_handler.SubprocessTaskHandler):
        def validate_image(self, image: str) -> None:  # images are the project's, not python:*
            pass

        def run(self) -> status.Status:
            return Attempt(ctx, self.full_command).run()

    return RehearsalTaskHandler


def _mounted(uri: str, mnt: str) -> Optional[str]:
    for scheme, sub in MOUNT_PREFIXES.items():
        if uri.startswith(scheme):
            return os.path.join(mnt, sub, uri[len(scheme):])
    return None


class Attempt:
    def __init__(self, ctx: Context, full_command: list):
        self.ctx = ctx
        self.command = list(full_command)
        self.index = self.command.index("--executor_input") + 1
        self.executor_input = json.loads(self.command[self.index])
        outputs = self.executor_input.get("outputs", {})
        self.local_output_file = outputs["outputFile"]
        self.task = os.path.basename(os.path.dirname(self.local_output_file))
        component = f"comp-{self.task}"
        self.executor = ctx.pipeline.executor_of_component(component) or f"exec-{self.task}"
        self.pod = ctx.pipeline.pods[self.executor]
        self.names = {self.task, self.executor} | {
            t.get("taskInfo", {}).get("name", "") for c in [ctx.pipeline.spec["root"],
                                                             *ctx.pipeline.spec.get("components", {}).values()]
            for t in (c.get("dag") or {}).get("tasks", {}).values()
            if t.get("componentRef", {}).get("name") == component}
        with ctx.lock:
            self.attempt = 1 + sum(r["task"] == self.task for r in ctx.records)
            self.preempt = bool(self.names & ctx.preempt) and self.task not in ctx.fired
        self.record = {"task": self.task, "executor": self.executor, "attempt": self.attempt,
                       "log": os.path.join(ctx.logs_dir, f"{self.task}.attempt{self.attempt}.log")}

    # -- launcher, before -------------------------------------------------------------------
    def _prepare(self, sandbox: str) -> dict:
        mnt = os.path.join(sandbox, "mnt")
        outputs_dir = os.path.join(sandbox, "outputs")
        os.makedirs(outputs_dir)
        ei = self.executor_input
        downloaded = 0
        for arts in (ei.get("inputs", {}).get("artifacts") or {}).values():
            for art in arts.get("artifacts", []):
                uri = art.get("uri", "")
                if uri.startswith(self.ctx.local_root):
                    uri = art["uri"] = self.ctx.to_gcs(uri)
                local = _mounted(uri, mnt)
                if local and uri.startswith("gs://"):
                    downloaded += self.ctx.store.download_tree(uri, local)
        self.uploads = []
        for arts in (ei.get("outputs", {}).get("artifacts") or {}).values():
            for art in arts.get("artifacts", []):
                art["uri"] = self.ctx.to_gcs(art["uri"])
                self.uploads.append((_mounted(art["uri"], mnt), art["uri"]))
        self.copy_back = [(os.path.join(outputs_dir, "output_metadata.json"), self.local_output_file)]
        ei["outputs"]["outputFile"] = self.copy_back[0][0]
        for name, param in (ei.get("outputs", {}).get("parameters") or {}).items():
            pod_file = os.path.join(outputs_dir, "parameters", name)
            self.copy_back.append((pod_file, param["outputFile"]))
            param["outputFile"] = pod_file
        mapped = {}
        values = ei.get("inputs", {}).get("parameterValues") or {}
        for name, value in values.items():
            new = self._map_parameter(value)
            if new != value:
                values[name] = new
                mapped[name] = {"given": value, "task_sees": new}
        self.record.update(downloaded_objects=downloaded, mapped_parameters=mapped)
        return {"mnt": mnt}

    def _map_parameter(self, value):
        if not isinstance(value, str) or not value.startswith("/"):
            return value
        if value == self.ctx.local_root or value.startswith(self.ctx.local_root + "/"):
            return self.ctx.to_gcs(value)  # the {{$.pipeline_root}} placeholder, as the cluster fills it
        for claim, mount_path, sub_path in self.pod.pvc_mounts:
            mount_path = mount_path.rstrip("/")
            if value == mount_path or value.startswith(mount_path + "/"):
                return self.ctx.pvc_folder(claim, sub_path) + value[len(mount_path):]
        return value

    def _env(self, sandbox: str, mnt: str) -> dict:
        venv_bin = os.path.dirname(sys.executable)
        env = {
            "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": os.path.join(sandbox, "home"),
            "TMPDIR": os.path.join(sandbox, "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": self.ctx.hook_dir,
            # Lines must reach the launcher as they are printed (progress, preemption trigger).
            "PYTHONUNBUFFERED": "1",
            "KFP_REHEARSAL_MOUNT_ROOT": mnt,
        }
        env.update(self.ctx.extra_env)
        env.update(self.pod.resolve_env(self.ctx.rehearsal_dir))
        return env

    # -- the pod ----------------------------------------------------------------------------
    def run(self) -> status.Status:
        ctx = self.ctx
        started = time.monotonic()
        sandbox = tempfile.mkdtemp(prefix=f"kfp-rehearsal-{self.task}-a{self.attempt}-")
        for sub in ("work", "home", "tmp", "mnt"):
            os.makedirs(os.path.join(sandbox, sub))
        self.record["sandbox"] = sandbox
        with ctx.lock:
            ctx.records.append(self.record)
        code = -1
        try:
            paths = self._prepare(sandbox)
            env = self._env(sandbox, paths["mnt"])
            self.command[self.index] = json.dumps(self.executor_input)
            command = subprocess_task_handler.replace_python_executable(self.command, sys.executable)
            code = self._execute(command, env, os.path.join(sandbox, "work"))
            if code == 0:
                self._finish()
        except Exception as exc:  # a launcher failure fails the attempt, as on a cluster
            print(f"rehearsal launcher: {type(exc).__name__}: {exc}", flush=True)
            self.record["launcher_error"] = f"{type(exc).__name__}: {exc}"
            code = code if code != 0 else 1
        self.record.update(exit_code=code, seconds=round(time.monotonic() - started, 2),
                           status="SUCCESS" if code == 0 else "FAILURE",
                           # what the pod left where nothing survives it (a cluster loses these)
                           left_in_workdir=_listing(os.path.join(sandbox, "work")),
                           left_in_home=_listing(os.path.join(sandbox, "home")))
        if not ctx.keep_sandboxes:  # the attempt's log stays under <run>/tasks/
            shutil.rmtree(sandbox, ignore_errors=True)
            self.record["sandbox"] = None
        return status.Status.SUCCESS if code == 0 else status.Status.FAILURE

    def _execute(self, command: list, env: dict, cwd: str) -> int:
        with open(self.record["log"], "w") as log, subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True) as proc:
            with self.ctx.lock:
                self.ctx.live.add(proc.pid)
            try:
                for line in proc.stdout:
                    log.write(line)
                    print(line, end="")
                    m = EPOCH_LINE.match(line)
                    if m:
                        self.record.setdefault("first_epoch", int(m.group(1)))
                        self.record["last_epoch"] = int(m.group(1))
                        if self.preempt and int(m.group(1)) >= 2:
                            self._kill(proc, "preempted (SIGKILL) at the start of epoch " + m.group(1))
                return proc.wait()
            except BaseException:
                self._kill(proc, "stopped with the rehearsal")
                raise
            finally:
                with self.ctx.lock:
                    self.ctx.live.discard(proc.pid)

    def _kill(self, proc: subprocess.Popen, why: str) -> None:
        with self.ctx.lock:
            self.ctx.fired.add(self.task)
        self.preempt = False
        self.record["killed"] = why
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- launcher, after --------------------------------------------------------------------
    def _finish(self) -> None:
        uploaded, missing = 0, []
        for local, uri in self.uploads:
            if local and os.path.exists(local):
                uploaded += self.ctx.store.upload_tree(local, uri)
            else:
                missing.append(uri.rsplit("/", 1)[-1])  # metadata-only artifacts (Metrics) have no file
        for pod_file, local_file in self.copy_back:
            if os.path.exists(pod_file):
                os.makedirs(os.path.dirname(local_file), exist_ok=True)
                shutil.copyfile(pod_file, local_file)
        # What the orchestrator learns (MLMD on a cluster): output URIs, metadata, parameters.
        declared = {}
        if os.path.exists(self.copy_back[0][0]):
            with open(self.copy_back[0][0]) as fh:
                meta = json.load(fh)
            for name, arts in (meta.get("artifacts") or {}).items():
                for art in arts.get("artifacts", [])[:1]:
                    declared[name] = {"uri": art.get("uri"), "metadata": art.get("metadata") or {}}
            for name, value in (meta.get("parameterValues") or {}).items():
                declared[name] = {"value": value}
        self.record.update(uploaded_objects=uploaded, outputs_without_files=missing, outputs=declared)


def _listing(folder: str, limit: int = 20) -> list:
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in sorted(files):
            out.append(os.path.relpath(os.path.join(dirpath, name), folder))
            if len(out) >= limit:
                return out + ["..."]
    return out
