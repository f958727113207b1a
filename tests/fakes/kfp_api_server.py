"""A real HTTP server speaking the part of the Kubeflow Pipelines v2beta1 REST API that
``kfp.Client`` 2.17 calls to start runs: healthz, experiments (create/list/get), pipelines
(upload, upload_version, list, versions), runs (create/get/list).

It keeps everything in memory and records every request (method, path, query, headers,
JSON or multipart body), so a test can assert what the client sent, e.g. that a created run
carries the compiled pipeline spec and the parameters. ``token`` makes every request without
``Authorization: Bearer <token>`` fail with 401; ``fail`` makes chosen routes fail.

    with KfpApiServer(token="s3cret") as server:
        kfp.Client(host=server.url, existing_token="s3cret").create_experiment("x")
        server.requests_to("POST", "/apis/v2beta1/experiments")
"""

from __future__ import annotations

import dataclasses
import datetime
import email.parser
import email.policy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import parse_qs, urlparse

import yaml

from tests.fakes.http_server import FakeHttpServer

API = "/apis/v2beta1"


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: object  # parsed JSON, {"files": {...}} for multipart, or None


def _now() -> str:
    return (
        datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def _matches(obj: dict, filter_json: Optional[str]) -> bool:
    """The KFP filter predicates this fake understands: EQUALS (1) on a string field."""
    if not filter_json:
        return True
    for pred in json.loads(filter_json).get("predicates", []):
        if pred.get("operation") not in (1, "EQUALS"):
            raise ValueError(f"unsupported filter operation {pred.get('operation')!r}")
        if obj.get(pred["key"]) != pred.get("stringValue", pred.get("string_value")):
            return False
    return True


class KfpApiServer(FakeHttpServer):
    """In-memory KFP v2beta1 API on 127.0.0.1:<free port>, served from a thread."""

    thread_name = "fake-kfp-api"

    def __init__(self, token: Optional[str] = None, multi_user: bool = False):
        self.token = token
        self.multi_user = multi_user
        self.requests: list = []
        self.experiments: dict = {}
        self.pipelines: dict = {}
        self.versions: dict = {}
        self.runs: dict = {}
        self.fail: dict = {}  # (method, route name) -> (status, message)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ assertions

    def requests_to(self, method: str, path: str) -> list:
        return [r for r in self.requests if r.method == method and r.path == path]

    @property
    def created_runs(self) -> list:
        """Bodies of the run-creation requests that succeeded, in order."""
        return [r for r in self.runs.values()]

    # ------------------------------------------------------------------ dispatch

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type", "")
        body: object = None
        if raw and ctype.startswith("multipart/form-data"):
            body = {"files": self._multipart(ctype, raw)}
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        req = Request(
            method, parsed.path, query, {k.lower(): v for k, v in h.headers.items()}, body
        )
        with self._lock:
            self.requests.append(req)
        if self.token is not None and req.headers.get("authorization") != f"Bearer {self.token}":
            return self._send(
                h,
                401,
                {
                    "error": "Unauthenticated: invalid or missing bearer token",
                    "code": 16,
                    "message": "Unauthenticated: invalid or missing bearer token",
                },
            )
        try:
            status, payload = self._route(req)
        except KeyError as exc:
            status, payload = (
                404,
                {"error": f"not found: {exc}", "code": 5, "message": f"not found: {exc}"},
            )
        except ValueError as exc:
            status, payload = 400, {"error": str(exc), "code": 3, "message": str(exc)}
        self._send(h, status, payload)

    @staticmethod
    def _multipart(ctype: str, raw: bytes) -> dict:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw
        )
        files = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            files[name] = {
                "filename": part.get_filename(),
                "content": part.get_payload(decode=True).decode(),
            }
        return files

    def _route(self, req: Request) -> tuple:
        m, p, q = req.method, req.path, req.query
        routes = [
            ("GET", rf"{API}/healthz", "healthz", lambda: {"multi_user": self.multi_user}),
            (
                "POST",
                rf"{API}/experiments",
                "create_experiment",
                lambda: self._create_experiment(req.body),
            ),
            (
                "GET",
                rf"{API}/experiments",
                "list_experiments",
                lambda: self._list("experiments", self.experiments, q),
            ),
            ("GET", rf"{API}/experiments/(?P<id>[^/:]+)", "get_experiment", None),
            ("POST", rf"{API}/runs", "create_run", lambda: self._create_run(req.body)),
            ("GET", rf"{API}/runs", "list_runs", lambda: self._list("runs", self.runs, q)),
            ("GET", rf"{API}/runs/(?P<id>[^/:]+)", "get_run", None),
            ("POST", rf"{API}/pipelines/upload", "upload_pipeline", lambda: self._upload(req)),
            (
                "POST",
                rf"{API}/pipelines/upload_version",
                "upload_pipeline_version",
                lambda: self._upload_version(req),
            ),
            (
                "GET",
                rf"{API}/pipelines",
                "list_pipelines",
                lambda: self._list("pipelines", self.pipelines, q),
            ),
            ("GET", rf"{API}/pipelines/(?P<id>[^/]+)/versions", "list_pipeline_versions", None),
        ]
        for method, pattern, name, fn in routes:
            match = re.fullmatch(pattern, p)
            if method != m or not match:
                continue
            if (m, name) in self.fail:
                status, message = self.fail[(m, name)]
                return status, {"error": message, "code": 13, "message": message}
            if name == "get_experiment":
                return 200, self.experiments[match["id"]]
            if name == "get_run":
                return 200, self.runs[match["id"]]
            if name == "list_pipeline_versions":
                versions = {
                    k: v for k, v in self.versions.items() if v["pipeline_id"] == match["id"]
                }
                return 200, self._list("pipeline_versions", versions, q)
            return 200, fn()
        raise KeyError(f"{m} {p}")

    # ------------------------------------------------------------------ resources

    def _list(self, key: str, items: dict, q: dict) -> dict:
        rows = [v for v in items.values() if _matches(v, q.get("filter"))]
        if q.get("experiment_id"):
            rows = [r for r in rows if r.get("experiment_id") == q["experiment_id"]]
        if q.get("sort_by", "").endswith(" desc"):
            rows = rows[::-1]
        size = int(q.get("page_size") or 0)
        return {key: rows[:size] if size else rows, "total_size": len(rows)}

    def _create_experiment(self, body: dict) -> dict:
        if not body or not body.get("display_name"):
            raise ValueError("an experiment needs a display_name")
        exp = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": body["display_name"],
            "description": body.get("description") or "",
            "namespace": body.get("namespace") or "",
            "created_at": _now(),
            "storage_state": "AVAILABLE",
        }
        with self._lock:
            self.experiments[exp["experiment_id"]] = exp
        return exp

    def _create_run(self, body: dict) -> dict:
        if not body or not (body.get("pipeline_spec") or body.get("pipeline_version_reference")):
            raise ValueError("a run needs a pipeline_spec or a pipeline_version_reference")
        if body.get("experiment_id") and body["experiment_id"] not in self.experiments:
            raise KeyError(f"experiment {body['experiment_id']}")
        run = {
            **body,
            "run_id": str(uuid.uuid4()),
            "created_at": _now(),
            "state": "PENDING",
            "storage_state": "AVAILABLE",
        }
        with self._lock:
            self.runs[run["run_id"]] = run
        return run

    def _new_version(self, pipeline_id: str, name: str, content: str) -> dict:
        spec = next(iter(yaml.safe_load_all(content)))
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "created_at": _now(),
            "pipeline_spec": spec,
        }
        with self._lock:
            self.versions[version["pipeline_version_id"]] = version
        return version

    def _upload(self, req: Request) -> dict:
        content = req.body["files"]["uploadfile"]["content"]
        name = req.query.get("name") or req.query.get("display_name")
        if any(p["display_name"] == name for p in self.pipelines.values()):
            raise ValueError(f"a pipeline named {name!r} already exists")
        pipeline = {
            "pipeline_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "description": req.query.get("description", ""),
            "created_at": _now(),
        }
        with self._lock:
            self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._new_version(pipeline["pipeline_id"], name, content)
        return pipeline

    def _upload_version(self, req: Request) -> dict:
        pipeline_id = req.query["pipelineid"]
        if pipeline_id not in self.pipelines:
            raise KeyError(f"pipeline {pipeline_id}")
        return self._new_version(
            pipeline_id, req.query["name"], req.body["files"]["uploadfile"]["content"]
        )
