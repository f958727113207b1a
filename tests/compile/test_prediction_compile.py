"""The compiled prediction pipeline: both targets parse as a PipelineSpec, Vertex accepts its template
offline, three uncached tasks, the wiring checks set for cluster targets, no heavy imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from components._shared.images import Images
from pipelines.compile import compile_text
from pipelines.prediction import PIPELINE_NAME, build_prediction_pipeline
from pipelines.training import CompileOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS = {"resolve-model", "predict-table", "prediction-drift-report"}


def _path(target: str) -> str:
    return os.path.join(ROOT, "compiled", target, "prediction.yaml")


def _docs(target: str) -> list:
    with open(_path(target)) as fh:
        return list(yaml.safe_load_all(fh))


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_committed_prediction_yaml_is_fresh_and_a_pipeline_spec(target):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    with open(_path(target)) as fh:
        assert fh.read() == compile_text(build_prediction_pipeline(CompileOptions(target)), Images()), (
            "run `python -m pipelines compile`")
    docs = _docs(target)
    assert len(docs) == (2 if target == "kubeflow" else 1)
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == PIPELINE_NAME
    tasks = spec.root.dag.tasks
    assert set(tasks) == TASKS
    assert not any(t.caching_options.enable_cache for t in tasks.values())
    params = docs[0]["root"]["dag"]["tasks"]["resolve-model"]["inputs"]["parameters"]
    assert params["require_remote_registry"] == {"runtimeValue": {"constant": True}}
    assert "accelerator" not in yaml.safe_dump(docs[0])
    inputs = docs[0]["root"]["inputDefinitions"]["parameters"]
    assert inputs["model_alias"]["defaultValue"] == "champion" and inputs["output_uri"]["defaultValue"] == ""
    assert "data_uri" in inputs and "defaultValue" not in inputs["data_uri"]


def test_kubeflow_gives_the_registry_credentials_to_resolve_only():
    platform = _docs("kubeflow")[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {name for name, ex in platform.items() if ex.get("secretAsEnv")}
    assert with_secret == {"exec-resolve-model"}


def test_vertex_pipeline_job_accepts_the_prediction_template_offline():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name=PIPELINE_NAME,
        template_path=_path("vertex"),
        pipeline_root="gs://example-bucket/pipeline-root",
        parameter_values={"data_uri": "bq://example-project.sales.customers_today",
                          "output_uri": "gs://example-bucket/predictions/2026-12-01",
                          "mlflow_tracking_uri": "https://mlflow.example.com", "model_version": "3"},
        job_id="kfp-tf-gate-prediction-test",
        enable_caching=False,
        project="example-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    body = job.to_dict()
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == PIPELINE_NAME
    assert body["runtimeConfig"]["parameterValues"]["model_version"] == "3"


def test_prediction_modules_do_not_import_heavy_libraries():
    code = (
        "import sys, importlib\n"
        "for m in ['components.predict.component', 'components.predict.core', 'pipelines.prediction',"
        " 'pipelines.predict', 'pipelines.__main__']:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in ('tensorflow', 'evidently', 'google.cloud.aiplatform', 'mlflow', 'pandas') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
