"""fsspec filesystems for every URI a task writes: ``gs://``, ``s3://``, Kubeflow's ``minio://``, paths.

Kubeflow Pipelines' default pipeline root is ``minio://mlpipeline/v2/artifacts`` (the KFP launcher's
``defaultPipelineRoot``, overridden by the ``kfp-launcher`` ConfigMap of the run's namespace). The
launcher maps ``minio://`` itself; fsspec has no such protocol, so anything we write under the
pipeline root ourselves (train's checkpoint mirror, the fail-fast markers, a serving base) comes
here: ``minio://bucket/key`` is the S3 object ``bucket/key`` on the in-cluster MinIO, reached with
s3fs. ``s3://`` is s3fs with the standard AWS configuration; everything else is plain fsspec.

Where a ``minio://`` filesystem gets its settings (read when a filesystem is made, never at import):

- endpoint: ``KFP_TF_GATE_MINIO_ENDPOINT`` (a URL, e.g. ``http://minio-service.kubeflow:9000``);
  else ``http://$MINIO_SERVICE_SERVICE_HOST:$MINIO_SERVICE_SERVICE_PORT``, the variables Kubernetes
  sets in every pod of a namespace that has the ``minio-service`` Service (single-user installs);
  else ``http://minio-service.kubeflow:9000``. That is the launcher's own rule
  (kubeflow/pipelines ``backend/src/v2/objectstore``: ``MinioDefaultEndpoint``,
  ``defaultMinioEndpointInMultiUserMode``; plain HTTP, ``disableSSL: true``).
- credentials: ``MINIO_ACCESS_KEY`` / ``MINIO_SECRET_KEY`` (the Secret ``mlpipeline-minio-artifact``,
  keys ``accesskey`` / ``secretkey``, mounted with kfp-kubernetes ``use_secret_as_env``), else
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``; else, inside a pod, that Secret read from the
  Kubernetes API the way the KFP launcher reads it (``GetMinioCredential``): the pod's namespace,
  token and CA from ``/var/run/secrets/kubernetes.io/serviceaccount/``, the API at
  ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``. The launcher runs in the same pod
  under the same service account, so that account may read the Secret (the multi-user profile
  controller copies it into every profile namespace: ``pipelines-profile-controller/sync.py``).

An ``s3://`` filesystem uses botocore's standard chain: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
(a MinIO, Ceph or other S3 API), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, web identity (IRSA), instance roles.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

MINIO_ENDPOINT_ENV = "KFP_TF_GATE_MINIO_ENDPOINT"
MINIO_DEFAULT_ENDPOINT = "http://minio-service.kubeflow:9000"
# The Secret KFP installs for its MinIO, its keys, and the variables our pods read them from.
MINIO_SECRET = "mlpipeline-minio-artifact"
MINIO_SECRET_TO_ENV = {"accesskey": "MINIO_ACCESS_KEY", "secretkey": "MINIO_SECRET_KEY"}
MINIO_REGION = "us-east-1"  # MinIO's default; it accepts requests signed for it
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def minio_endpoint(env: Optional[dict] = None) -> str:
    """The MinIO URL a KFP pod reaches (the launcher's rule; see the module docstring)."""
    env = os.environ if env is None else env
    explicit = env.get(MINIO_ENDPOINT_ENV, "").strip()
    if explicit:
        return explicit if "://" in explicit else "http://" + explicit
    host, port = env.get("MINIO_SERVICE_SERVICE_HOST", ""), env.get("MINIO_SERVICE_SERVICE_PORT", "")
    if host and port:
        return f"http://{host}:{port}"
    return MINIO_DEFAULT_ENDPOINT


def minio_options(env: Optional[dict] = None, service_account_dir: str = SERVICE_ACCOUNT_DIR) -> dict:
    """s3fs keyword arguments for the MinIO behind ``minio://`` (endpoint, credentials, region)."""
    env = os.environ if env is None else env
    key = env.get("MINIO_ACCESS_KEY") or env.get("AWS_ACCESS_KEY_ID")
    secret = env.get("MINIO_SECRET_KEY") or env.get("AWS_SECRET_ACCESS_KEY")
    if not (key and secret):
        data = in_cluster_secret(MINIO_SECRET, env, service_account_dir)
        key, secret = data.get("accesskey"), data.get("secretkey")
    options = {"endpoint_url": minio_endpoint(env), "client_kwargs": {"region_name": MINIO_REGION}}
    if key and secret:
        options.update(key=key, secret=secret)
    return options


def in_cluster_secret(name: str, env: Optional[dict] = None,
                      service_account_dir: str = SERVICE_ACCOUNT_DIR) -> dict:
    """The decoded data of Secret ``name`` in the pod's namespace; {} outside a pod or when refused."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    token_file = os.path.join(service_account_dir, "token")
    if not (host and port and os.path.exists(token_file)):
        return {}
    with open(os.path.join(service_account_dir, "namespace")) as fh:
        namespace = fh.read().strip()
    with open(token_file) as fh:
        token = fh.read().strip()
    ca = os.path.join(service_account_dir, "ca.crt")
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    url = f"https://{host}:{port}/api/v1/namespaces/{namespace}/secrets/{name}"
    if (url, token) not in _SECRETS:  # one API call per process, not one per filesystem
        data = _read_secret(url, token, ca if os.path.exists(ca) else None)
        if data is None:
            return {}
        _SECRETS[(url, token)] = data
    return dict(_SECRETS[(url, token)])


_SECRETS: dict = {}


def _read_secret(url: str, token: str, cafile: Optional[str]) -> Optional[dict]:
    # Here, not at the top: every task imports this module (attempt markers), few read a secret.
    import ssl
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"})
    try:
        context = ssl.create_default_context(cafile=cafile)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            data = json.load(response).get("data") or {}
    except Exception as exc:  # no credentials then: the object store's answer names the problem
        logger.warning("cannot read the secret %s from the Kubernetes API (%s): no object-store credentials "
                       "from it", url.rsplit("/", 1)[-1], exc)
        return None
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def filesystem(uri: str, **kwargs):
    """(fsspec filesystem, path inside it) for ``uri``; ``kwargs`` go to the filesystem.

    ``minio://bucket/key`` gives an s3fs filesystem on the cluster's MinIO and the path
    ``bucket/key``; every other URI (``gs://``, ``s3://``, ``file://``, a path) is fsspec's own.
    Use the path only with the filesystem returned with it.
    """
    import fsspec

    if uri.startswith("minio://"):
        from s3fs import S3FileSystem

        fs = S3FileSystem(**{**minio_options(), **kwargs})
        return fs, fs._strip_protocol("s3://" + uri[len("minio://"):])
    return fsspec.core.url_to_fs(uri, **kwargs)


def open_file(uri: str, mode: str = "rb"):
    """An open file object for ``uri`` (a path or any URI :func:`filesystem` knows)."""
    if "://" not in uri:
        if "w" in mode or "a" in mode:
            os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        return open(uri, mode)
    fs, path = filesystem(uri)
    return fs.open(path, mode)
