"""The BigQuery emulator (PyPI ``bqemulator``: REST + gRPC Storage Read/Write on DuckDB) as a real
server on loopback, for the real google-cloud-bigquery and google-cloud-bigquery-storage clients.

It runs as a subprocess (``bqemulator start``) on two free ports. Its DuckDB needs the ``spatial``
extension, which DuckDB would download at start; here it comes from the ``duckdb-extension-spatial``
package and is installed from that file into a DuckDB home of the emulator's own (HOME is a temporary
folder), so nothing is fetched and the user's ~/.duckdb is untouched.

Clients reach it as production code does: ``BIGQUERY_EMULATOR_HOST`` (REST, honoured by
google-cloud-bigquery) and ``BIGQUERY_STORAGE_EMULATOR_HOST`` (gRPC, honoured by
components/ingest/bigquery.py), see :meth:`BigQueryEmulator.env`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Optional

PROJECT = "emulated-project"

_LAUNCH = """
import os, sys, threading, time
parent = os.getppid()
def orphaned():  # the test process died without stopping us: go too
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=orphaned, daemon=True).start()
import duckdb, duckdb_extension_spatial
ext = os.path.join(os.path.dirname(duckdb_extension_spatial.__file__), "extensions",
                   "v" + duckdb.__version__, "spatial.duckdb_extension")
duckdb.connect().execute(f"INSTALL '{ext}'")
from bqemulator.cli import main
sys.argv = ["bqemulator"] + sys.argv[1:]
main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bq_type(arrow_type) -> str:
    import pyarrow as pa

    for test, name in ((pa.types.is_boolean, "BOOL"), (pa.types.is_integer, "INT64"), (pa.types.is_floating, "FLOAT64"),
                       (pa.types.is_date, "DATE"), (pa.types.is_timestamp, "TIMESTAMP")):
        if test(arrow_type):
            return name
    return "STRING"


class BigQueryEmulator:
    """``with BigQueryEmulator() as bq:`` starts the emulator and stops it (its process only)."""

    def __init__(self, project: str = PROJECT, start_timeout: float = 60.0):
        self.project = project
        self.start_timeout = start_timeout
        self.rest_port = self.grpc_port = 0
        self._proc: Optional[subprocess.Popen] = None
        self._home: Optional[tempfile.TemporaryDirectory] = None
        self._log = None

    @property
    def rest_host(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    @property
    def grpc_host(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def env(self) -> dict:
        """The environment that points production code at this emulator."""
        return {"BIGQUERY_EMULATOR_HOST": f"http://{self.rest_host}", "BIGQUERY_STORAGE_EMULATOR_HOST": self.grpc_host}

    def start(self) -> BigQueryEmulator:
        self._home = tempfile.TemporaryDirectory(prefix="bqemulator-")
        self.rest_port, self.grpc_port = _free_port(), _free_port()
        env = {**os.environ, "HOME": self._home.name, "OTEL_SDK_DISABLED": "true"}
        self._log = open(os.path.join(self._home.name, "emulator.log"), "wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "start", "--rest-port", str(self.rest_port), "--grpc-port",
             str(self.grpc_port), "--project", self.project, "--ephemeral", "--log-level", "warning"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the BigQuery emulator exited at start: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://{self.rest_host}/bigquery/v2/projects/{self.project}/datasets",
                                       timeout=1).read()
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the BigQuery emulator did not answer within {self.start_timeout:.0f} s")

    def log_tail(self, chars: int = 2000) -> str:
        if self._home is None:
            return ""
        with open(os.path.join(self._home.name, "emulator.log"), "rb") as f:
            return f.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._home is not None:
            self._home.cleanup()
            self._home = None

    def __enter__(self) -> BigQueryEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        """A google.cloud.bigquery.Client on the emulator (anonymous credentials)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=f"http://{self.rest_host}"))

    def load_arrow(self, table, table_id: str) -> str:
        """Create ``project.dataset.table`` from a pyarrow Table (a Parquet load job); returns its id.

        The upload is resumable (no ``size`` given): the client's multipart upload sends the Parquet
        part as ``*/*``, which the emulator refuses.
        """
        import io

        import pyarrow.parquet as pq
        from google.cloud import bigquery

        client = self.client()
        client.create_dataset(".".join(table_id.split(".")[:2]), exists_ok=True)
        client.create_table(bigquery.Table(table_id, schema=[bigquery.SchemaField(f.name, _bq_type(f.type))
                                                             for f in table.schema]))  # a load into a new table fails
        buf = io.BytesIO()
        pq.write_table(table, buf)
        buf.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
        client.load_table_from_file(buf, table_id, job_config=config).result()
        return table_id
