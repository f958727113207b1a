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

A job succeeds when every replica exits 0 and fails as soon as one does not (the others are
killed, as a failed replica fails the job); cancel and delete kill its replicas. Each replica's
output goes to ``<run>/tasks/<job>.<type>-<index>.log``; :meth:`JobService.facts` lists the jobs
with their replicas, TF_CONFIG, exit codes and seconds.

Not emulated, and said so in the facts: machine types, accelerators and GPU collectives (NCCL),
networking between hosts, the operator's ``restartPolicy`` (a failed replica fails the job here).
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
NOT_EMULATED = "machine types, accelerators, GPU collectives (NCCL), networking between hosts, restartPolicy"
PROJECT = "rehearsal"  # the project a Vertex task finds when vertex_project is empty (CLOUD_ML_PROJECT_ID)


class _Error(Exception):
    def __init__(self, code: int, message: str, reason: str = ""):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


class _Job:
    """One job's replica processes; ``state`` is PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED."""

    def __init__(self, name: str, replicas: list, logs_dir: str, base_env: dict):
        self.name, self.replicas, self.logs_dir, self.base_env = name, replicas, logs_dir, base_env
        self.state, self.message = "PENDING", ""
        self.procs: list = []
        self.record: dict = {"job": name, "replicas": [], "not_emulated": NOT_EMULATED}
        self._lock = threading.Lock()

    def start(self) -> None:
        ports = [free_port() for _ in self.replicas]
        cluster: dict = {}
        for (kind, _, _), port in zip(self.replicas, ports, strict=True):
            cluster.setdefault(kind, []).append(f"127.0.0.1:{port}")
        started = time.monotonic()
        counters: dict = {}
        for kind, command, env in self.replicas:
            index = counters[kind] = counters.get(kind, -1) + 1
            tf_config = {"cluster": cluster, "task": {"type": kind, "index": index}}
            sandbox = tempfile.mkdtemp(prefix=f"kfp-rehearsal-{_safe(self.name)[-24:]}-{kind}{index}-")
            for sub in ("work", "home", "tmp"):
                os.makedirs(os.path.join(sandbox, sub))
            full_env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
                        "HOME": os.path.join(sandbox, "home"), "TMPDIR": os.path.join(sandbox, "tmp"),
                        "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **self.base_env, **env,
                        "TF_CONFIG": json.dumps(tf_config)}
            argv = [sys.executable if i == 0 and c in ("python", "python3") else c for i, c in enumerate(command)]
            log = os.path.join(self.logs_dir, f"{_safe(self.name)}.{kind}-{index}.log")
            with open(log, "w") as fh:
                proc = subprocess.Popen(argv, cwd=os.path.join(sandbox, "work"), env=full_env, stdout=fh,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.procs.append((proc, sandbox))
            self.record["replicas"].append({"type": kind, "index": index, "command": command, "log": log,
                                            "tf_config": tf_config, "env": sorted(env)})
        self.state = "RUNNING"
        threading.Thread(target=self._wait, args=(started,), name=f"job-{self.name}", daemon=True).start()

    def _wait(self, started: float) -> None:
        pending = list(enumerate(self.procs))
        while pending:
            for item in list(pending):
                i, (proc, _) = item
                code = proc.poll()
                if code is None:
                    continue
                pending.remove(item)
                self.record["replicas"][i]["exit_code"] = code
                if code != 0 and self.state == "RUNNING":
                    replica = self.record["replicas"][i]
                    self._end("FAILED", f"replica {replica['type']}-{replica['index']} exited with status {code} "
                                        f"(log: {replica['log']})")
            time.sleep(0.2)
        if self.state == "RUNNING":
            self._end("SUCCEEDED", "")
        self.record["seconds"] = round(time.monotonic() - started, 2)
        for _, sandbox in self.procs:
            shutil.rmtree(sandbox, ignore_errors=True)

    def _end(self, state: str, message: str) -> None:
        with self._lock:
            if self.state not in ("PENDING", "RUNNING"):
                return
            self.state, self.message = state, message
            self.record.update(state=state, message=message)
        if state != "SUCCEEDED":
            self.kill()

    def kill(self) -> None:
        for proc, _ in self.procs:
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

    def __init__(self, logs_dir: str, base_env: dict, secrets_dir: str):
        self.logs_dir, self.base_env, self.secrets_dir = logs_dir, dict(base_env), secrets_dir
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

    def _start(self, name: str, replicas: list, resource: dict) -> _Job:
        job = _Job(name, replicas, self.logs_dir, self.base_env)
        with self._lock:
            if name in self.jobs:
                raise _Error(409, f"{name} already exists", "AlreadyExists")
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
        self._start(name, replicas, {**body, "name": name})
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
        replicas = []
        for kind in sorted(specs, key=lambda k: TFJOB_ORDER.index(k) if k in TFJOB_ORDER else 99):
            spec = specs[kind]
            container = ((spec.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
            command = list(container.get("command") or []) + list(container.get("args") or [])
            replicas += [(kind.lower(), command, self._container_env(container))] * int(spec.get("replicas") or 1)
        key = f"{namespace}/{meta['name']}"
        resource = {**body, "metadata": {**meta, "namespace": namespace}}
        self._start(key, replicas, resource)
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
