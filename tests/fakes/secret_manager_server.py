"""A real HTTP server speaking the one Secret Manager v1 REST call a task makes:
``GET /v1/projects/{p}/secrets/{s}/versions/{v}:access`` (what
``SecretManagerServiceClient(transport="rest").access_secret_version`` sends), answering
``{"name": ..., "payload": {"data": base64(bytes)}}``. ``latest`` is the highest version.
An unknown secret or version answers 404, a secret listed in ``denied`` 403, both in the
Google JSON error shape the client turns into ``google.api_core.exceptions``. Resource names
come back with the project as given (the real API uses the project number).

    with SecretManagerServer() as server:
        server.add("projects/p/secrets/mlflow", b'{"username": "u", "password": "pw"}')
        os.environ["KFP_TF_GATE_SECRET_MANAGER_ENDPOINT"] = server.url
"""

from __future__ import annotations

import base64
import re
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

from tests.fakes.http_server import FakeHttpServer

_ACCESS = re.compile(r"^/v1/(projects/[^/]+/secrets/[^/]+)/versions/([^/:]+):access$")


class SecretManagerServer(FakeHttpServer):
    thread_name = "fake-secret-manager"

    def __init__(self):
        self.secrets: dict[str, list[bytes]] = {}  # secret name -> versions 1..n
        self.denied: set[str] = set()
        self.requests: list[str] = []  # paths, in order

    def add(self, secret: str, data: bytes) -> str:
        """Add a version to ``secret`` (projects/P/secrets/S); returns its version resource name."""
        self.secrets.setdefault(secret, []).append(data)
        return f"{secret}/versions/{len(self.secrets[secret])}"

    def _error(self, h: BaseHTTPRequestHandler, code: int, status: str, message: str) -> None:
        self._send(h, code, {"error": {"code": code, "message": message, "status": status}})

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(path)
        match = _ACCESS.match(path)
        if method != "GET" or not match:
            return self._error(h, 404, "NOT_FOUND", f"no route {method} {path}")
        secret, version = match.groups()
        if secret in self.denied:
            return self._error(h, 403, "PERMISSION_DENIED",
                               f"Permission 'secretmanager.versions.access' denied for resource '{secret}'")
        versions = self.secrets.get(secret, [])
        number = len(versions) if version == "latest" else (int(version) if version.isdigit() else 0)
        if not 1 <= number <= len(versions):
            return self._error(h, 404, "NOT_FOUND", f"Secret Version [{secret}/versions/{version}] not found.")
        self._send(h, 200, {"name": f"{secret}/versions/{number}",
                            "payload": {"data": base64.b64encode(versions[number - 1]).decode()}})
