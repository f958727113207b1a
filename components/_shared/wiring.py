"""Cluster wiring checked before a compiled run does any work: a registry and a serving base
that outlive the pod.

A task on Kubeflow or Vertex runs in a pod whose working directory and local disk vanish with
it. A registry in a SQLite file there, or a serving base in a folder nothing mounts, would make
every run "promote" into nothing and the next run find no champion. :func:`check_cluster_wiring`
turns that into an error in the first step (``champion_reference``), with one sentence naming
the parameter and the fix. Local runs (``python -m pipelines run``) never call it: their SQLite
registry and serving folder under the runs dir are what they should be.

Nothing here writes a file.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Optional

from components._shared.errors import ConfigError

EXAMPLE_REGISTRY = "http://mlflow.mlflow:5000"
# A request that any MLflow server answers and that needs read access: a wrong password fails here.
PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
PROBE_TIMEOUT = 10.0


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def registry_problem(tracking_uri: str, timeout: float = PROBE_TIMEOUT) -> Optional[str]:
    """Why ``tracking_uri`` cannot be a cluster run's registry (one sentence), or None."""
    uri = (tracking_uri or "").strip()
    if not uri:
        return (f"mlflow_tracking_uri is empty: a cluster run needs a registry server that outlives its pods "
                f"(e.g. {EXAMPLE_REGISTRY}); set the pipeline parameter mlflow_tracking_uri")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri and not uri.startswith("/") else ""
    if (scheme in ("sqlite", "file", "") and uri != "databricks") or uri.startswith("/"):
        return (f"mlflow_tracking_uri {uri} is a file inside the pod and would be lost with it: a cluster run "
                f"needs a registry server (e.g. {EXAMPLE_REGISTRY})")
    if uri == "databricks" or scheme not in ("http", "https"):
        return None  # databricks, a plugin store, ...: nothing here can check it
    request = urllib.request.Request(uri.rstrip("/") + PROBE, headers=_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            who = "no credentials were given" if not _auth_headers() else "the credentials were refused"
            return (f"the MLflow server {uri} answered {exc.code} ({who}): give the tasks "
                    f"MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (Kubeflow: the compile option "
                    f"--mlflow-secret names the Kubernetes secret; Vertex: --vertex-mlflow-secret names "
                    f"a Secret Manager secret)")
        return f"the MLflow server {uri} answered HTTP {exc.code} to {PROBE.split('?')[0]}: is it an MLflow server?"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"the MLflow server {uri} is unreachable from the pod ({reason}): check mlflow_tracking_uri"
    return None


def _auth_headers() -> dict:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def mount_paths(mounts: str) -> list[str]:
    """The compile-time ``serving_mounts`` constant: comma-separated mount paths of the pod."""
    return [m.strip().rstrip("/") or "/" for m in (mounts or "").split(",") if m.strip()]


def serving_problem(serving_base: str, mounts: str = "", vertex_project: str = "") -> Optional[str]:
    """Why ``serving_base`` would lose (or never receive) a promoted version on a cluster, or None.

    A URI with a scheme (gs://, s3://) is kept by its store; a path is kept only under a volume
    mounted into the pod at compile time (``mounts``). Empty is an error unless Vertex AI receives
    the version: otherwise a promotion would move a registry alias and serve nothing.
    """
    base = (serving_base or "").strip()
    if not base:
        if vertex_project:
            return None
        return ("serving_base_dir is empty and no vertex_project is set, so a promoted version would be served "
                "nowhere: set serving_base_dir (gs://bucket/models, or a path under a PVC mounted with "
                "`compile --serving-pvc`) or vertex_project")
    scheme = _scheme(base)
    if scheme == "minio":
        return (f"serving_base_dir {base} is on the pipeline's MinIO (minio://), which TF Serving cannot read as a "
                f"model base: use s3://bucket/path (MinIO speaks S3), a gs:// URI, or a PVC (`compile --serving-pvc`)")
    if scheme and scheme != "file":
        return None
    path = base[len("file://"):] if scheme == "file" else base
    norm = os.path.normpath(path)
    for m in mount_paths(mounts):
        if norm == m or norm.startswith(m.rstrip("/") + "/"):
            return None
    where = f"the mounted paths are {', '.join(mount_paths(mounts))}" if mounts else "this pipeline mounts no volume"
    return (f"serving_base_dir {base} is a folder inside the pod and would be lost with it ({where}): use a "
            f"gs:// URI or compile with `--serving-pvc CLAIM:{norm}`")


def check_cluster_wiring(tracking_uri: str, serving_base: str, mounts: str = "", vertex_project: str = "") -> None:
    """Raise :class:`ConfigError` (one sentence) when a cluster run would lose its registry or served model."""
    from components._shared.credentials import load_mlflow_credentials

    load_mlflow_credentials()  # before the probe: a Vertex task's credentials live in Secret Manager
    problem = registry_problem(tracking_uri) or serving_problem(serving_base, mounts, vertex_project)
    if problem:
        raise ConfigError(problem)
