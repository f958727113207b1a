"""Which errors can pass (is_transient), in-process retries, and fail-fast across a task's attempts.

The exceptions are the real ones of each client library, built as the library builds them (or raised
by the library itself, e.g. MLflow's REST client against a closed port), never look-alikes.
"""

import errno
import json
import socket
import sqlite3
import urllib.error

import pytest

from components._shared.errors import (
    ConfigError,
    DataError,
    DeployError,
    ModelError,
    PipelineError,
    attempt_marker,
    fail_fast,
    is_transient,
    retry_transient,
)


def _requests_http_error(status: int):
    import requests

    response = requests.Response()
    response.status_code = status
    return requests.exceptions.HTTPError(f"{status} error", response=response)


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as exc:
        return exc


def _raised_while_handling(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception:
            raise outer  # noqa: B904 (the implicit context is what is tested)
    except Exception as exc:
        return exc


def test_network_errors_and_retryable_http_statuses_are_transient():
    import requests
    import urllib3

    assert is_transient(requests.exceptions.ConnectionError("connection refused"))
    assert is_transient(requests.exceptions.ReadTimeout("read timed out"))
    assert is_transient(_requests_http_error(503)) and is_transient(_requests_http_error(429))
    assert not is_transient(_requests_http_error(404)) and not is_transient(_requests_http_error(403))
    assert is_transient(urllib3.exceptions.MaxRetryError(None, "/x", urllib3.exceptions.ProtocolError("reset")))
    assert is_transient(ConnectionResetError(errno.ECONNRESET, "reset by peer"))
    assert is_transient(TimeoutError("timed out"))
    assert is_transient(urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
    assert is_transient(urllib.error.HTTPError("http://x", 502, "Bad Gateway", {}, None))
    assert not is_transient(urllib.error.HTTPError("http://x", 401, "Unauthorized", {}, None))
    assert is_transient(socket.gaierror(socket.EAI_AGAIN, "temporary failure in name resolution"))
    assert not is_transient(socket.gaierror(socket.EAI_NONAME, "name or service not known"))
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(sqlite3.OperationalError("no such table: runs"))


def test_a_tls_certificate_failure_is_not_transient():
    import requests

    assert not is_transient(requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                                         "failed: self signed certificate"))


def test_google_and_gcsfs_errors_by_status():
    import gcsfs.retry
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    assert is_transient(gexc.ServiceUnavailable("try again")) and is_transient(gexc.DeadlineExceeded("slow"))
    assert is_transient(gexc.InternalServerError("oops")) and is_transient(gexc.TooManyRequests("quota"))
    assert not is_transient(gexc.NotFound("no such bucket")) and not is_transient(gexc.PermissionDenied("no"))
    assert is_transient(auth_exc.TransportError("metadata server unreachable"))
    assert not is_transient(auth_exc.RefreshError("invalid_grant"))
    assert is_transient(gcsfs.retry.HttpError({"code": 503, "message": "backend error"}))
    assert not is_transient(gcsfs.retry.HttpError({"code": 403, "message": "forbidden"}))


def test_mlflow_errors_by_code_not_by_class():
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import (
        INVALID_PARAMETER_VALUE,
        RESOURCE_DOES_NOT_EXIST,
        TEMPORARILY_UNAVAILABLE,
    )

    assert is_transient(MlflowException("unavailable", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_transient(MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE))
    assert not is_transient(MlflowException("Registered model alias champion not found.",
                                            error_code=RESOURCE_DOES_NOT_EXIST))
    # A bare MlflowException defaults to INTERNAL_ERROR: that alone says nothing about the server.
    assert not is_transient(MlflowException("the run has no artifact 'model'"))
    # ... but the server answering 500 / 502 does.
    assert is_transient(RestException({"error_code": "INTERNAL_ERROR", "message": "database error"}))
    assert is_transient(MlflowException("API request to endpoint /api/2.0/mlflow/runs/get failed with error "
                                        "code 502 != 200. Response body: '<html>bad gateway</html>'"))


def test_mlflow_rest_client_against_a_closed_port_is_transient():
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception) as err:
        http_request(MlflowHostCreds(f"http://127.0.0.1:{port}"), "/api/2.0/mlflow/experiments/search", "GET",
                     max_retries=0, backoff_factor=0, timeout=5)
    assert type(err.value).__name__ == "MlflowException"
    assert is_transient(err.value)


def test_pipeline_errors_are_deterministic_unless_raised_from_a_transient_error():
    import requests

    assert not is_transient(DeployError("the champion changed during this run (v3, now v4): not promoted"))
    assert not is_transient(ConfigError("model name 'a\"b' must be a plain path segment"))
    assert not is_transient(ModelError("training loss is NaN at epoch 2"))
    # An unreachable registry, wrapped into one sentence by a core (champion.find_champion does this).
    unreachable = _raised_from(DataError("cannot read the model registry at http://mlflow: refused"),
                               requests.exceptions.ConnectionError("refused"))
    assert is_transient(unreachable)
    assert is_transient(_raised_while_handling(DataError("cannot download the model artifacts"),
                                               TimeoutError("timed out")))
    assert not is_transient(_raised_from(DataError("the file x.csv is not a readable table"),
                                         ValueError("bad CSV")))

    class LockHeld(PipelineError):
        transient = True

    assert is_transient(LockHeld("another run holds the lock on runs/"))


def test_bugs_full_disks_and_missing_files_are_deterministic():
    assert not is_transient(KeyError("label"))
    assert not is_transient(ValueError("could not convert string to float"))
    assert not is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "No such file", "gs://b/x"))
    assert not is_transient(PermissionError(errno.EACCES, "Permission denied"))


def test_retry_transient_retries_only_what_can_pass():
    import requests

    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise requests.exceptions.ConnectionError("reset")
        return "ok"

    assert retry_transient(flaky, attempts=3, first_delay=0.5, factor=2.0, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]

    calls.clear()

    def broken():
        calls.append(1)
        raise DeployError("refusing to overwrite version 3 with a different model")

    with pytest.raises(DeployError):
        retry_transient(broken, attempts=5, sleep=sleeps.append)
    assert len(calls) == 1

    calls.clear()

    def down():
        calls.append(1)
        raise requests.exceptions.ConnectionError("down")

    with pytest.raises(requests.exceptions.ConnectionError):  # the last transient error, after all attempts
        retry_transient(down, attempts=2, first_delay=0, sleep=lambda s: None)
    assert len(calls) == 2


def _attempt(marker: str, work: list, error: Exception):
    """One attempt of a task: it does its work, then fails with ``error``."""
    with fail_fast(marker):
        work.append("ran")
        raise error


def test_a_deterministic_error_makes_the_next_attempt_fail_at_once(tmp_path):
    marker = attempt_marker(str(tmp_path / "deploy-model" / "deployment"))
    assert marker.endswith("deployment.attempt-error.json")
    work = []
    first = DeployError("the champion changed during this run (v3, now v4): not promoted")
    with pytest.raises(DeployError):
        _attempt(marker, work, first)
    with pytest.raises(DeployError) as second:  # the retry: same class, same sentence, no work
        _attempt(marker, work, RuntimeError("must not run"))
    assert str(second.value) == str(first) and work == ["ran"]
    assert json.load(open(marker))["type"] == "DeployError"
    # a non-PipelineError (a bug) is deterministic too; the sentence names its type
    other = attempt_marker(str(tmp_path / "compare-models" / "decision"))
    with pytest.raises(KeyError):
        _attempt(other, work, KeyError("auc"))
    with pytest.raises(PipelineError, match="KeyError: 'auc'"):
        _attempt(other, work, KeyError("auc"))


def test_a_transient_error_leaves_no_marker_and_the_retry_runs_in_full(tmp_path):
    import requests

    marker = attempt_marker(str(tmp_path / "train-model" / "model"))
    work = []
    with pytest.raises(requests.exceptions.ConnectionError):
        _attempt(marker, work, requests.exceptions.ConnectionError("reset"))
    with fail_fast(marker):
        work.append("ran")
    assert work == ["ran", "ran"]
    assert not (tmp_path / "train-model" / "model.attempt-error.json").exists()


def test_the_marker_goes_through_fsspec_and_a_store_that_refuses_it_changes_nothing(caplog):
    import fsspec

    marker = attempt_marker("memory://bucket/root/job-1/champion-reference/reference")
    work = []
    with pytest.raises(ConfigError):
        _attempt(marker, work, ConfigError("mlflow_tracking_uri is empty"))
    assert fsspec.filesystem("memory").exists("/bucket/root/job-1/champion-reference/reference.attempt-error.json")
    with pytest.raises(ConfigError, match="mlflow_tracking_uri is empty"):
        _attempt(marker, work, RuntimeError("must not run"))
    assert work == ["ran"]

    # Kubeflow's default pipeline root (minio://) is no fsspec protocol: no marker, retries run in full.
    unknown = attempt_marker("minio://mlpipeline/v2/artifacts/p/run/train-model/salt/model")
    with pytest.raises(ModelError):
        _attempt(unknown, work, ModelError("training loss is NaN"))
    with pytest.raises(ModelError):
        _attempt(unknown, work, ModelError("training loss is NaN"))
    assert work == ["ran", "ran", "ran"]
    assert "cannot write the attempt marker" in caplog.text


def test_no_marker_uri_is_a_no_op():
    with pytest.raises(DataError):
        with fail_fast(""):
            raise DataError("x")
    assert attempt_marker("") == ""
