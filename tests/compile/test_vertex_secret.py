"""Vertex MLflow credentials: `compile --vertex-mlflow-secret` puts the Secret Manager secret's
*name* into KFP_TF_GATE_MLFLOW_SECRET on exactly the tasks that talk to MLflow (the ones that
get the Kubernetes secret on Kubeflow); no credential is ever in the YAML."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from components._shared.credentials import SECRET_ENV
from pipelines.training import CompileOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "projects/proj/secrets/mlflow-credentials"
MLFLOW_EXECUTORS = {"exec-champion-reference", "exec-train-model", "exec-compare-models", "exec-deploy-model"}


def _env_by_executor(spec: dict) -> dict:
    executors = spec["deploymentSpec"]["executors"]
    return {name: {e["name"]: e["value"] for e in ex["container"].get("env", [])} for name, ex in executors.items()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    run = subprocess.run([sys.executable, "-m", "pipelines", "compile", "--out", str(out),
                          "--vertex-mlflow-secret", SECRET], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out


def test_the_secret_name_reaches_exactly_the_mlflow_tasks(compiled):
    docs = list(yaml.safe_load_all(open(compiled / "vertex" / "training.yaml")))
    assert len(docs) == 1  # still a file Vertex accepts
    env = _env_by_executor(docs[0])
    named = {name for name, e in env.items() if SECRET_ENV in e}
    assert named == MLFLOW_EXECUTORS
    assert {env[name][SECRET_ENV] for name in named} == {SECRET}
    monitor = _env_by_executor(yaml.safe_load(open(compiled / "vertex" / "monitoring.yaml")))
    assert {name for name, e in monitor.items() if SECRET_ENV in e} == {"exec-monitor-data"}


def test_no_credential_in_any_compiled_file(compiled):
    for target in ("vertex", "kubeflow"):
        for name in ("training.yaml", "monitoring.yaml"):
            text = open(compiled / target / name).read()
            assert "PASSWORD:" not in text.replace("MLFLOW_TRACKING_PASSWORD", "")
            if target == "kubeflow":
                assert SECRET_ENV not in text and SECRET not in text  # Kubeflow keeps its Kubernetes secret


def test_the_committed_vertex_files_name_no_secret():
    # The project is unknown at compile time: the committed files carry no default secret.
    for name in ("training.yaml", "monitoring.yaml"):
        assert SECRET_ENV not in open(os.path.join(ROOT, "compiled", "vertex", name)).read()


def test_the_option_is_checked():
    with pytest.raises(ValueError, match="vertex-mlflow-secret expects"):
        CompileOptions("vertex", vertex_mlflow_secret="mlflow-credentials")
    with pytest.raises(ValueError, match="Vertex option"):
        CompileOptions("kubeflow", vertex_mlflow_secret=SECRET)
    assert CompileOptions("vertex", vertex_mlflow_secret=f"{SECRET}/versions/3").vertex_mlflow_secret
