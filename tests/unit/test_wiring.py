"""Cluster wiring: a compiled run fails in its first step, with one sentence, when its registry or
serving base would not outlive the pod; the wrapper writes nothing in its working directory."""

from __future__ import annotations

import base64
import os

import pytest

from components._shared.errors import ConfigError
from components._shared.wiring import check_cluster_wiring, registry_problem, serving_problem
from tests.fakes.http_server import FakeHttpServer


class FakeMlflow(FakeHttpServer):
    """Answers MLflow's experiments/search; with ``password`` set, only to that basic-auth user."""

    def __init__(self, password: str = ""):
        self.password = password
        self.paths = []

    def _handle(self, h, method):
        self.paths.append(h.path)
        if self.password:
            expected = "Basic " + base64.b64encode(f"admin:{self.password}".encode()).decode()
            if h.headers.get("Authorization") != expected:
                return self._send(h, 401, {"error_code": "UNAUTHENTICATED"})
        if h.path.startswith("/api/2.0/mlflow/experiments/search"):
            return self._send(h, 200, {"experiments": []})
        return self._send(h, 404, {"error_code": "ENDPOINT_NOT_FOUND"})


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch):
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)


def _one_sentence(text: str) -> None:
    assert text and "\n" not in text and text.replace("e.g. ", "").count(". ") == 0


@pytest.mark.parametrize("uri,starts", [
    ("", "mlflow_tracking_uri is empty: a cluster run needs a registry server"),
    ("sqlite:///mlflow.db", "mlflow_tracking_uri sqlite:///mlflow.db is a file inside the pod"),
    ("/runs/mlruns", "mlflow_tracking_uri /runs/mlruns is a file inside the pod"),
    ("mlruns", "mlflow_tracking_uri mlruns is a file inside the pod"),
    ("file:///tmp/mlruns", "mlflow_tracking_uri file:///tmp/mlruns is a file inside the pod"),
])
def test_a_pod_local_registry_is_refused(uri, starts):
    problem = registry_problem(uri)
    assert problem.startswith(starts)
    assert "http://mlflow.mlflow:5000" in problem
    _one_sentence(problem)


def test_a_reachable_server_passes_and_other_schemes_are_not_second_guessed():
    with FakeMlflow() as server:
        assert registry_problem(server.url) is None
        assert server.paths == ["/api/2.0/mlflow/experiments/search?max_results=1"]
    assert registry_problem("databricks") is None


def test_an_unreachable_server_is_named(tmp_path):
    with FakeMlflow() as server:
        url = server.url
    problem = registry_problem(url, timeout=2)
    assert problem.startswith(f"the MLflow server {url} is unreachable from the pod (")
    _one_sentence(problem)


def test_an_unauthorised_server_says_whether_credentials_were_given(monkeypatch):
    with FakeMlflow(password="s3cret") as server:
        assert "answered 401 (no credentials were given)" in registry_problem(server.url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        problem = registry_problem(server.url)
        assert "answered 401 (the credentials were refused)" in problem and "wrong" not in problem
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
        assert registry_problem(server.url) is None


@pytest.mark.parametrize("base,mounts,vertex,ok", [
    ("gs://bucket/models", "", "", True),
    ("s3://bucket/models", "", "", True),
    ("/models", "/models", "", True),
    ("/models/team-a", "/models", "", True),
    ("file:///models", "/models", "", True),
    ("/models", "", "", False),
    ("/modelsx", "/models", "", False),
    ("serving", "/models", "", False),
    ("", "", "my-project", True),
    ("", "/models", "", False),
    ("minio://mlpipeline/models", "", "", False),  # TF Serving cannot read minio://
])
def test_serving_base_must_outlive_the_pod(base, mounts, vertex, ok):
    problem = serving_problem(base, mounts, vertex)
    assert (problem is None) is ok, problem
    if problem:
        _one_sentence(problem)
        assert problem.startswith("serving_base_dir ")


def test_check_raises_the_first_problem():
    with pytest.raises(ConfigError, match=r"^mlflow_tracking_uri is empty"):
        check_cluster_wiring("", "/models")
    with FakeMlflow() as server:
        with pytest.raises(ConfigError, match=r"^serving_base_dir /models is a folder inside the pod .*"
                                              r"--serving-pvc CLAIM:/models`$"):
            check_cluster_wiring(server.url, "/models")
        check_cluster_wiring(server.url, "gs://bucket/models")


def test_the_first_step_fails_before_writing_anything(tmp_path, monkeypatch):
    """champion_reference compiled for a cluster, no registry: one sentence, an empty working directory."""
    from kfp.dsl import Artifact

    from components.validate.component import champion_reference

    work = tmp_path / "pod"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ConfigError, match=r"^mlflow_tracking_uri is empty"):
        champion_reference.python_func(reference=Artifact(uri=str(tmp_path / "out1" / "reference")), model_name="m",
                                       mlflow_tracking_uri="", require_remote_registry=True,
                                       serving_base_dir="gs://b/models")
    with pytest.raises(ConfigError, match=r"^mlflow_tracking_uri sqlite:///mlflow.db is a file inside the pod"):
        champion_reference.python_func(reference=Artifact(uri=str(tmp_path / "out2" / "reference")), model_name="m",
                                       mlflow_tracking_uri="sqlite:///mlflow.db", require_remote_registry=True,
                                       serving_base_dir="gs://b/models")
    assert os.listdir(work) == []
    # No output; beside it only the marker that makes the task's retries fail at once (errors.fail_fast).
    assert os.listdir(tmp_path / "out1") == ["reference.attempt-error.json"]
