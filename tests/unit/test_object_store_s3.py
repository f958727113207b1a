"""minio:// (Kubeflow's default pipeline root) and s3:// against a real S3 API (moto_server).

What a pod writes under its pipeline root through fsspec: train's checkpoint mirror (a new process
restores it), the fail-fast marker of retried tasks, and an s3:// TF Serving base. The minio:// pod
gets nothing but what a Kubeflow pod has: MINIO_SERVICE_SERVICE_HOST/PORT (Kubernetes' service
variables) and the mlpipeline-minio-artifact secret as MINIO_ACCESS_KEY / MINIO_SECRET_KEY, or,
without them, that secret read from a (fake, TLS) Kubernetes API with the pod's service account.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid

import pytest

from components._shared import object_store
from components._shared.errors import DataError, attempt_marker, fail_fast, is_transient
from tests.fakes.s3_server import ACCESS_KEY, SECRET_KEY, S3Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "mlpipeline"  # KFP's bucket: minio://mlpipeline/v2/artifacts
_STORE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AWS_PROFILE", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY",
              "MINIO_SERVICE_SERVICE_HOST", "MINIO_SERVICE_SERVICE_PORT", object_store.MINIO_ENDPOINT_ENV,
              "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(str(tmp_path_factory.mktemp("moto") / "moto.log")) as server:
        server.ensure_bucket(BUCKET)
        yield server


@pytest.fixture(params=["minio", "s3"])
def pod(request, s3, monkeypatch, tmp_path):
    """The pod's environment for one kind of root; returns (root URI, bucket, key prefix)."""
    for name in _STORE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    prefix = f"v2/artifacts/{uuid.uuid4().hex[:8]}"
    if request.param == "minio":
        monkeypatch.setenv("MINIO_SERVICE_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("MINIO_SERVICE_SERVICE_PORT", str(s3.port))
        monkeypatch.setenv("MINIO_ACCESS_KEY", ACCESS_KEY)
        monkeypatch.setenv("MINIO_SECRET_KEY", SECRET_KEY)
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return f"{request.param}://{BUCKET}/{prefix}", BUCKET, prefix


# --------------------------------------------------------------------------- settings


def test_minio_endpoint_follows_the_kfp_launcher_rule():
    assert object_store.minio_endpoint({}) == "http://minio-service.kubeflow:9000"  # multi-user namespaces
    service = {"MINIO_SERVICE_SERVICE_HOST": "10.0.0.7", "MINIO_SERVICE_SERVICE_PORT": "9000"}
    assert object_store.minio_endpoint(service) == "http://10.0.0.7:9000"  # minio-service in the namespace
    explicit = {**service, object_store.MINIO_ENDPOINT_ENV: "minio.storage:9000"}
    assert object_store.minio_endpoint(explicit) == "http://minio.storage:9000"
    assert object_store.minio_endpoint({object_store.MINIO_ENDPOINT_ENV: "https://m:443"}) == "https://m:443"


def test_minio_credentials_come_from_the_secret_env_or_aws_env():
    opts = object_store.minio_options({"MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b", "AWS_ACCESS_KEY_ID": "x",
                                       "AWS_SECRET_ACCESS_KEY": "y"})
    assert (opts["key"], opts["secret"]) == ("a", "b")
    opts = object_store.minio_options({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    assert (opts["key"], opts["secret"]) == ("x", "y")
    assert "key" not in object_store.minio_options({})  # botocore's own chain then


class _KubeApi:
    """A Kubernetes API over TLS (self-signed CA) answering GET .../namespaces/<ns>/secrets/<name>."""

    def __init__(self, folder, namespace: str, token: str, secrets: dict):
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.ca, key = str(folder / "ca.crt"), str(folder / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", self.ca,
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.requests = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                api.requests.append((self.path, self.headers.get("Authorization")))
                name = self.path.rsplit("/", 1)[-1]
                if self.headers.get("Authorization") != f"Bearer {token}":
                    status, body = 401, {"kind": "Status", "code": 401}
                elif self.path != f"/api/v1/namespaces/{namespace}/secrets/{name}" or name not in secrets:
                    status, body = 404, {"kind": "Status", "code": 404}
                else:
                    status, body = 200, {"kind": "Secret", "data": {
                        k: base64.b64encode(v.encode()).decode() for k, v in secrets[name].items()}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_minio_credentials_from_the_kubernetes_api_like_the_launcher(tmp_path, monkeypatch):
    """No secret mounted: the pod's service account reads mlpipeline-minio-artifact, as the launcher does."""
    api = _KubeApi(tmp_path, "kubeflow-user", "sa-token",
                   {"mlpipeline-minio-artifact": {"accesskey": "minio", "secretkey": "minio123"}})
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "namespace").write_text("kubeflow-user")
    (sa / "token").write_text("sa-token\n")
    (sa / "ca.crt").write_text(open(api.ca).read())
    monkeypatch.setattr(object_store, "_SECRETS", {})
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
    try:
        opts = object_store.minio_options(env, str(sa))
        assert (opts["key"], opts["secret"]) == ("minio", "minio123")
        assert api.requests == [("/api/v1/namespaces/kubeflow-user/secrets/mlpipeline-minio-artifact",
                                 "Bearer sa-token")]
        object_store.minio_options(env, str(sa))
        assert len(api.requests) == 1  # read once per process
        # Mounted credentials win: no API call.
        object_store.minio_options({**env, "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b"}, str(sa))
        assert len(api.requests) == 1
        # A refused read (another token) is a warning and no credentials, never the task's error; not cached.
        (sa / "token").write_text("other")
        assert "key" not in object_store.minio_options(env, str(sa))
        assert "key" not in object_store.minio_options(env, str(sa))
        assert len(api.requests) == 3
        # Outside a pod (no service-account token): nothing is read.
        assert object_store.in_cluster_secret("mlpipeline-minio-artifact", env, str(tmp_path / "none")) == {}
    finally:
        api.httpd.shutdown()
        api.httpd.server_close()


def test_botocore_connection_errors_can_pass():
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    assert is_transient(EndpointConnectionError(endpoint_url="http://minio-service.kubeflow:9000"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://m"))
    slow = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    assert is_transient(slow)
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
    assert not is_transient(denied)


def test_minio_uri_maps_to_the_bucket_and_key(pod):
    root, bucket, prefix = pod
    fs, path = object_store.filesystem(root + "/a/b.txt")
    assert path == f"{bucket}/{prefix}/a/b.txt"
    with object_store.open_file(root + "/a/b.txt", "w") as fh:
        fh.write("hello")
    assert fs.cat_file(path) == b"hello"


# --------------------------------------------------------------------------- checkpoint mirror

_RESTORE = """
import json, os, sys
from components.train.checkpoint import Mirror
m = Mirror(sys.argv[1], sys.argv[2])
state = m.restore()
files = sorted(os.path.relpath(os.path.join(r, f), sys.argv[2]) for r, _, fs in os.walk(sys.argv[2]) for f in fs)
print(json.dumps({"state": state, "files": files}))
"""


def test_checkpoint_mirror_round_trips_and_a_new_process_restores(pod, s3, tmp_path):
    from components.train.checkpoint import Mirror

    root, bucket, prefix = pod
    remote = f"{root}/./checkpoints/job-1/train"  # a root ending in "/." names the same objects
    local = tmp_path / "backup"
    (local / "chief").mkdir(parents=True)
    (local / "chief" / "ckpt.weights.h5").write_bytes(b"epoch-1")
    mirror = Mirror(remote, str(local))
    assert mirror.restore() == {}  # nothing there yet
    mirror.save({"history": [{"loss": 0.9}]})
    mirror.write_state(mlflow_run_id="r1")
    (local / "chief" / "ckpt.weights.h5").write_bytes(b"epoch-2")
    mirror.save({**mirror.state, "history": [{"loss": 0.9}, {"loss": 0.7}]})
    # What landed, read with boto3: one snapshot (the older one removed), state.json pointing at it.
    key = f"{prefix}/checkpoints/job-1/train"
    assert s3.keys(bucket, key + "/") == [f"{key}/epoch-0002/chief/ckpt.weights.h5", f"{key}/state.json"]
    assert json.loads(s3.get(bucket, f"{key}/state.json"))["snapshot"] == "epoch-0002"

    # A retried attempt is a new pod: a new process with only the environment restores it.
    fresh = tmp_path / "fresh"
    out = subprocess.run([sys.executable, "-c", _RESTORE, remote, str(fresh)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    restored = json.loads(out.stdout.strip().splitlines()[-1])
    assert restored["state"]["history"] == [{"loss": 0.9}, {"loss": 0.7}]
    assert restored["state"]["mlflow_run_id"] == "r1"
    assert restored["files"] == [os.path.join("chief", "ckpt.weights.h5")]
    assert (fresh / "chief" / "ckpt.weights.h5").read_bytes() == b"epoch-2"

    mirror.clean()
    assert s3.keys(bucket, key + "/") == []


# --------------------------------------------------------------------------- fail-fast marker


def test_fail_fast_marker_on_an_object_store_root(pod, s3):
    root, bucket, prefix = pod
    marker = attempt_marker(f"{root}/validate-data/reference")
    runs = []
    with pytest.raises(DataError), fail_fast(marker):
        runs.append(1)
        raise DataError("column tenure is missing")
    key = f"{prefix}/validate-data/reference.attempt-error.json"
    assert s3.keys(bucket, key) == [key]
    assert json.loads(s3.get(bucket, key))["type"] == "DataError"
    # The retry (a new attempt of the same task) repeats the sentence without doing the work.
    with pytest.raises(DataError, match="^column tenure is missing$"), fail_fast(marker):
        runs.append(2)
    assert runs == [1]
    # An error that can pass leaves no marker: the retry runs in full.
    other = attempt_marker(f"{root}/train-model/model")
    with pytest.raises(ConnectionResetError), fail_fast(other):
        raise ConnectionResetError("connection reset by peer")
    assert s3.keys(bucket, f"{prefix}/train-model/") == []


# --------------------------------------------------------------------------- s3:// serving base


@pytest.mark.parametrize("pod", ["s3"], indirect=True)  # TF Serving reads models.config's base_path: no minio://
def test_s3_serving_base_push_state_and_read_back(pod, s3, tmp_path):
    root, bucket, prefix = pod
    from components._shared import serving_state
    from components.deploy import serving
    from tests.unit.test_deploy_files import _saved_model, _tree

    base = f"{root}/serving"
    src = _saved_model(tmp_path / "export")
    assert serving.push_to_serving(src, base, "churn", "3") == (f"{base}/churn/3", True)
    assert serving.push_to_serving(src, base, "churn", "3") == (f"{base}/churn/3", False)  # idempotent
    assert s3.keys(bucket, f"{prefix}/serving/") == [f"{prefix}/serving/churn/3/{rel}" for rel in _tree(src)]
    assert s3.get(bucket, f"{prefix}/serving/churn/3/saved_model.pb") == b"graph-v1"
    assert serving_state.has_version(base, "churn", 3)
    assert serving_state.fingerprint(f"{base}/churn/3") == serving_state.fingerprint(src)

    assert serving_state.read_state(base, "churn") == serving_state.empty_state()
    record = {**serving_state.empty_state(), "stable": 3, "fingerprints": {"3": serving_state.fingerprint(src)}}
    config = serving.write_state(base, "churn", record)
    assert config == f"{base}/models.config"
    assert serving_state.labels(serving_state.read_state(base, "churn")) == {"stable": 3, "previous": None,
                                                                             "canary": None}
    text = s3.get(bucket, f"{prefix}/serving/models.config").decode()
    assert f'base_path: "{base}/churn"' in text and 'key: "stable" value: 3' in text


# --------------------------------------------------------------------------- input data


def test_read_table_from_the_pipeline_root_bucket(pod, s3):
    """A data_uri on the cluster's MinIO (minio://) or S3: a file and a folder of shards."""
    from components._shared import io

    root, bucket, prefix = pod
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/data/one.csv", Body=b"a,y\n1,0\n2,1\n")
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/data/shards/p0.csv", Body=b"a,y\n3,0\n")
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/data/shards/p1.csv", Body=b"a,y\n4,1\n")
    assert io.read_table(f"{root}/data/one.csv")["a"].tolist() == [1, 2]
    assert sorted(io.read_table(f"{root}/data/shards")["a"].tolist()) == [3, 4]


def test_schema_file_and_prediction_output_on_the_pipeline_root_bucket(pod, s3):
    """validate's schema_uri and predict's output folder on minio:// / s3:// (both through object_store)."""
    import pyarrow as pa

    from components._shared import io
    from components.predict.writer import atomic_output
    from components.validate.component_io import _read_schema_file

    root, bucket, prefix = pod
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/schema.json", Body=b'{"columns": {}}')
    assert _read_schema_file(f"{root}/schema.json") == {"columns": {}}
    with atomic_output(f"{root}/predictions", shard_rows=2) as writer:
        writer.write(pa.table({"id": [1, 2, 3]}))
    assert [k.rsplit("/", 1)[-1] for k in s3.keys(bucket, f"{prefix}/predictions/")] == [
        "_SUCCESS", "part-00000.parquet", "part-00001.parquet"]
    assert sorted(io.read_table(f"{root}/predictions")["id"].tolist()) == [1, 2, 3]


def test_a_compiled_pipeline_fetched_from_the_bucket(pod, s3):
    from components._shared.launch.package import fetch_pipeline_file

    root, bucket, prefix = pod
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/training.yaml", Body=b"pipelineInfo: {name: t}\n")
    local = fetch_pipeline_file(f"{root}/training.yaml")
    try:
        assert open(local, "rb").read() == b"pipelineInfo: {name: t}\n"
    finally:
        os.remove(local)
