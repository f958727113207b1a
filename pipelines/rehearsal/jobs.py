"""The cluster's job APIs for multi-worker training, with the jobs run for real on this machine.

A train task compiled with ``--train-workers N`` (``components/train/launch.py``) starts a Vertex AI
CustomJob or a Kubeflow TFJob and polls it until it ends. :class:`JobService` answers both on
127.0.0.1: the JobService REST paths the aiplatform client sends (``customJobs`` create, get,
``:cancel``) and the Kubernetes custom-object paths of ``tfjobs.kubeflow.org`` (create, get, delete)
that the Training Operator SDK sends. It runs each job as the platform would, one process per
replica:

- the replica's container command, ``python`` being this interpreter (the image's package is this
  checkout), in its own sandbox (``work/`` as working directory, ``home/``, ``tmp/``), its own
  session, an environment built from nothing but the job's spec (``env``; a TFJob's
  ``secretKeyRef`` read from the rehearsal's secret files, as ``platform`` does for pods), the
  object-store emulator and ``TF_CONFIG``;
- ``TF_CONFIG`` names every replica on its own loopback port: Vertex's workerpool0 is ``chief``,
  workerpool1 ``worker`` (then ``ps``, ``evaluator``); a TFJob's replica types in lower case, Chief
  first. That is what MultiWorkerMirroredStrategy reads on the cluster.

A job succeeds when every replica exits 0. A replica that ends otherwise restarts the job's
replicas, as the platform would, while restarts remain: a Vertex job submitted with
``scheduling.restartJobOnWorkerRestart`` restarts on a replica killed by a signal (preemption,
the OOM killer: Vertex's non-permanent errors, up to 5 restarts) and fails on an exit status (a
permanent error); a TFJob whose replicas have ``restartPolicy: OnFailure`` restarts on any failure
up to ``runPolicy.backoffLimit``. Every replica restarts (with a new TF_CONFIG on new ports):
MultiWorkerMirroredStrategy cannot take one replica back into a running group, so on the cluster the
survivors fail too and every replica resumes from the checkpoints. Otherwise the job fails (the
others are killed). Cancel and delete kill its replicas. With ``preempt``, the last replica of the
first job is SIGKILLed once, as soon as the chief prints ``Epoch 2/N`` (the first epoch's
checkpoint is written): ``rehearse --preempt train`` on a multi-worker train task.

Each replica's output goes to ``<run>/tasks/<job>.<type>-<index>.log`` (``.restart<k>.log`` after a
restart); :meth:`JobService.facts` lists the jobs with their replicas, TF_CONFIG, exit codes,
seconds and restarts.

Not emulated, and said so in the facts: machine types, accelerators and GPU collectives (NCCL),
networking between hosts, restarting one replica alone.
"""

from __future__ import annotations

import itertools
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import unquote, urlparse

from pipelines.rehearsal.services import free_port

VERTEX_POOL_TYPES = ("chief", "worker", "ps", "evaluator")  # workerpool0..3, as Vertex names them in TF_CONFIG
TFJOB_ORDER = ("Chief", "Master", "Worker", "PS", "Evaluator")
NOT_EMULATED = ("machine types, accelerators, GPU collectives (NCCL), networking between hosts, "
                "restarting one replica alone")
VERTEX_RESTARTS = 5  # Vertex restarts a worker up to 5 times on non-permanent errors
EPOCH_LINE = re.compile(r"^\s*Epoch (\d+)/(\d+)\s*$", re.MULTILINE)  # as pipelines/rehearsal/launcher.py
PROJECT = "rehearsal"  # the project a Vertex task finds when vertex_project is empty (CLOUD_ML_PROJECT_ID)


class _Error(Exception):
    def __init__(self, code: int, message: str, reason: str = ""):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


class _Job:
    """One job's replica processes; ``state`` is PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED.

    ``restart_on(code)`` says whether a replica's exit code restarts the job (``max_restarts`` times
    at most); ``preempt`` kills the last replica once when the chief starts its second epoch."""

    def __init__(self, name: str, replicas: list, logs_dir: str, base_env: dict,
                 restart_on=lambda code: False, max_restarts: int = 0, preempt: bool = False):
        self.name, self.replicas, self.logs_dir, self.base_env = name, replicas, logs_dir, base_env
        self.restart_on, self.max_restarts, self.preempt = restart_on, max_restarts, preempt
        self.state, self.message = "PENDING", ""
        self.procs: list = []
        self.sandboxes: list = []
        self.record: dict = {"job": name, "replicas": [], "restarts": [], "not_emulated": NOT_EMULATED}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._launch()
        self.state = "RUNNING"
        threading.Thread(target=self._wait, args=(time.monotonic(),), name=f"job-{self.name}", daemon=True).start()

    def _launch(self) -> None:
        """Start every replica (again, after a restart: new ports, new sandboxes, new logs)."""
        attempt = len(self.record["restarts"])
        ports = [free_port() for _ in self.replicas]
        cluster: dict = {}
        for (kind, _, _), port in zip(self.replicas, ports, strict=True):
            cluster.setdefault(kind, []).append(f"127.0.0.1:{port}")
        counters: dict = {}
        procs, records = [], []
        for kind, command, env in self.replicas:
            index = counters[kind] = counters.get(kind, -1) + 1
            tf_config = {"cluster": cluster, "task": {"type": kind, "index": index}}
            sandbox = tempfile.mkdtemp(prefix=f"kfp-rehearsal-{_safe(self.name)[-24:]}-{kind}{index}-")
            self.sandboxes.append(sandbox)
            for sub in ("work", "home", "tmp"):
                os.makedirs(os.path.join(sandbox, sub))
            full_env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
                        "HOME": os.path.join(sandbox, "home"), "TMPDIR": os.path.join(sandbox, "tmp"),
                        "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **self.base_env, **env,
                        "TF_CONFIG": json.dumps(tf_config)}
            argv = [sys.executable if i == 0 and c in ("python", "python3") else c for i, c in enumerate(command)]
            suffix = f".restart{attempt}" if attempt else ""
            log = os.path.join(self.logs_dir, f"{_safe(self.name)}.{kind}-{index}{suffix}.log")
            with open(log, "w") as fh:
                proc = subprocess.Popen(argv, cwd=os.path.join(sandbox, "work"), env=full_env, stdout=fh,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            procs.append(proc)
            records.append({"type": kind, "index": index, "command": command, "log": log,
                            "tf_config": tf_config, "env": sorted(env)})
        self.procs, self.record["replicas"] = procs, records

    def _wait(self, started: float) -> None:
        while True:
            failed = self._wait_attempt()
            if failed is None or self.state != "RUNNING":
                break
            replica, code = failed
            why = f"replica {replica['type']}-{replica['index']} exited with status {code} (log: {replica['log']})"
            if len(self.record["restarts"]) < self.max_restarts and self.restart_on(code):
                self.kill()
                for proc in self.procs:
                    proc.wait()
                for r, proc in zip(self.record["replicas"], self.procs, strict=True):
                    r.setdefault("exit_code", proc.returncode)
                self.record["restarts"].append({"reason": why, "replicas": self.record["replicas"]})
                self._launch()
                continue
            self._end("FAILED", why)
            break
        for r, proc in zip(self.record["replicas"], self.procs, strict=True):
            if "exit_code" not in r:
                proc.wait()
                r["exit_code"] = proc.returncode
        if self.state == "RUNNING":
            self._end("SUCCEEDED", "")
        self.record["seconds"] = round(time.monotonic() - started, 2)
        for sandbox in self.sandboxes:
            shutil.rmtree(sandbox, ignore_errors=True)

    def _wait_attempt(self):
        """Until every replica of this attempt exits 0 (None) or one does not: (its record, its code)."""
        pending = list(range(len(self.procs)))
        while pending:
            if self.preempt:
                self._maybe_preempt()
            for i in list(pending):
                code = self.procs[i].poll()
                if code is None:
                    continue
                pending.remove(i)
                self.record["replicas"][i]["exit_code"] = code
                if code != 0:
                    return self.record["replicas"][i], code
            if self.state != "RUNNING":
                return None
            time.sleep(0.2)
        return None

    def _maybe_preempt(self) -> None:
        chief = self.record["replicas"][0]
        try:
            with open(chief["log"]) as fh:
                text = fh.read()
        except OSError:
            return
        if any(int(m.group(1)) >= 2 for m in EPOCH_LINE.finditer(text)):
            self.preempt = False
            victim = self.record["replicas"][-1]
            victim["killed"] = "preempted (SIGKILL) when the chief started epoch 2"
            try:
                os.killpg(self.procs[-1].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _end(self, state: str, message: str) -> None:
        with self._lock:
            if self.state not in ("PENDING", "RUNNING"):
                return
            self.state, self.message = state, message
            self.record.update(state=state, message=message)
        if state != "SUCCEEDED":
            self.kill()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cancel(self) -> None:
        self._end("CANCELLED", "cancelled")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


class JobService:
    """Vertex AI customJobs and Kubernetes tfjobs on 127.0.0.1:<port>, jobs run as local processes."""

    def __init__(self, logs_dir: str, base_env: dict, secrets_dir: str, preempt: bool = False):
        """``preempt``: kill a replica of the first job once, at the chief's second epoch (see the module)."""
        self.logs_dir, self.base_env, self.secrets_dir = logs_dir, dict(base_env), secrets_dir
        self.preempt = preempt
        self.jobs: dict = {}  # name -> (_Job, resource json)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> JobService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                service._handle(self, "GET")

            def do_POST(self):
                service._handle(self, "POST")

            def do_DELETE(self):
                service._handle(self, "DELETE")

        os.makedirs(self.logs_dir, exist_ok=True)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="rehearsal-jobs",
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for job, _ in list(self.jobs.values()):
            job.kill()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict:
        """What the train task's pod needs to find these APIs (components/train/launch.py)."""
        return {"KFP_TF_GATE_VERTEX_API_ENDPOINT": self.url, "KFP_TF_GATE_K8S_API": self.url,
                "CLOUD_ML_PROJECT_ID": PROJECT}

    def facts(self) -> list:
        return [dict(job.record, state=job.state) for job, _ in self.jobs.values()]

    # -- HTTP ------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}") if length else {}
        path = unquote(parsed.path)
        try:
            status, payload = 200, self._route(method, path, body)
        except Exception as exc:  # the caller gets an answer either way
            exc = exc if isinstance(exc, _Error) else _Error(500, f"{type(exc).__name__}: {exc}", "INTERNAL")
            status = exc.code
            payload = ({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": exc.message,
                        "reason": exc.reason, "code": exc.code} if path.startswith("/apis/")
                       else {"error": {"code": exc.code, "message": exc.message, "status": exc.reason}})
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, body: dict) -> dict:
        vertex = re.fullmatch(r"/v1/(projects/[^/]+/locations/[^/]+)/customJobs(?:/([^/:]+))?(:cancel)?", path)
        if vertex:
            parent, job_id, cancel = vertex.groups()
            if method == "POST" and not job_id:
                return self._create_custom_job(parent, body)
            name = f"{parent}/customJobs/{job_id}"
            if method == "GET" and job_id and not cancel:
                return self._custom_job(name)
            if method == "POST" and cancel:
                self._get(name).cancel()
                return {}
        tfjob = re.fullmatch(r"/apis/kubeflow\.org/v1/namespaces/([^/]+)/tfjobs(?:/([^/]+))?", path)
        if tfjob:
            namespace, name = tfjob.groups()
            if method == "POST" and not name:
                return self._create_tfjob(namespace, body)
            key = f"{namespace}/{name}"
            if method == "GET" and name:
                return self._tfjob(key)
            if method == "DELETE" and name:
                job, resource = self._get(key), self.jobs[key][1]
                job.cancel()
                with self._lock:
                    del self.jobs[key]
                return resource
        raise _Error(501, f"the rehearsal's job service does not implement {method} {path}", "UNIMPLEMENTED")

    def _get(self, name: str) -> _Job:
        with self._lock:
            found = self.jobs.get(name)
        if found is None:
            raise _Error(404, f"{name} not found", "NotFound")
        return found[0]

    def _start(self, name: str, replicas: list, resource: dict, restart_on, max_restarts: int) -> _Job:
        with self._lock:
            if name in self.jobs:
                raise _Error(409, f"{name} already exists", "AlreadyExists")
            job = _Job(name, replicas, self.logs_dir, self.base_env, restart_on, max_restarts,
                       preempt=self.preempt and not self.jobs)
            self.jobs[name] = (job, resource)
        job.start()
        return job

    # -- Vertex AI -------------------------------------------------------------------------
    def _create_custom_job(self, parent: str, body: dict) -> dict:
        pools = (body.get("jobSpec") or {}).get("workerPoolSpecs") or []
        if not pools or int(pools[0].get("replicaCount") or 0) != 1:
            raise _Error(400, "the first worker pool (the chief) must have exactly one replica", "INVALID_ARGUMENT")
        replicas = []
        for kind, pool in zip(VERTEX_POOL_TYPES, pools, strict=False):
            container = pool.get("containerSpec") or {}
            env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
            command = list(container.get("command") or []) + list(container.get("args") or [])
            replicas += [(kind, command, env)] * int(pool.get("replicaCount") or 0)
        name = f"{parent}/customJobs/{next(self._ids)}"
        restarts = (body.get("jobSpec") or {}).get("scheduling", {}).get("restartJobOnWorkerRestart")
        # Vertex: a replica killed by a signal is a non-permanent error; an exit status a permanent one.
        self._start(name, replicas, {**body, "name": name}, restart_on=lambda code: code < 0,
                    max_restarts=VERTEX_RESTARTS if restarts else 0)
        return self._custom_job(name)

    def _custom_job(self, name: str) -> dict:
        job = self._get(name)
        out = {**self.jobs[name][1], "state": f"JOB_STATE_{job.state}"}
        if job.state in ("FAILED", "CANCELLED"):
            out["error"] = {"code": 1 if job.state == "CANCELLED" else 13, "message": job.message}
        return out

    # -- Kubeflow TFJob --------------------------------------------------------------------
    def _create_tfjob(self, namespace: str, body: dict) -> dict:
        meta = body.get("metadata") or {}
        specs = (body.get("spec") or {}).get("tfReplicaSpecs") or {}
        if not meta.get("name") or not specs:
            raise _Error(422, "a TFJob needs metadata.name and spec.tfReplicaSpecs", "Invalid")
        replicas, on_failure = [], True
        for kind in sorted(specs, key=lambda k: TFJOB_ORDER.index(k) if k in TFJOB_ORDER else 99):
            on_failure &= specs[kind].get("restartPolicy") in ("OnFailure", "Always")
            spec = specs[kind]
            container = ((spec.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
            command = list(container.get("command") or []) + list(container.get("args") or [])
            replicas += [(kind.lower(), command, self._container_env(container))] * int(spec.get("replicas") or 1)
        key = f"{namespace}/{meta['name']}"
        resource = {**body, "metadata": {**meta, "namespace": namespace}}
        backoff = int(((body.get("spec") or {}).get("runPolicy") or {}).get("backoffLimit") or 0)
        self._start(key, replicas, resource, restart_on=lambda code: code != 0,
                    max_restarts=backoff if on_failure else 0)
        return self._tfjob(key)

    def _container_env(self, container: dict) -> dict:
        env = {}
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref is None:
                env[item["name"]] = item.get("value", "")
                continue
            path = os.path.join(self.secrets_dir, f"{ref['name']}.json")
            data = json.load(open(path)) if os.path.exists(path) else None
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise _Error(422, f"secret {ref['name']!r} has no key {ref['key']!r}: the replica could not start",
                             "Invalid")
            env[item["name"]] = str(data[ref["key"]])
        return env

    def _tfjob(self, key: str) -> dict:
        job = self._get(key)
        conditions = [{"type": "Created", "status": "True", "reason": "TFJobCreated", "message": ""}]
        if job.state != "PENDING":
            conditions.append({"type": "Running", "status": "True" if job.state == "RUNNING" else "False",
                               "reason": "TFJobRunning", "message": ""})
        if job.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            kind = "Succeeded" if job.state == "SUCCEEDED" else "Failed"
            conditions.append({"type": kind, "status": "True", "reason": f"TFJob{kind}", "message": job.message})
        return {**self.jobs[key][1], "status": {"conditions": conditions}}
