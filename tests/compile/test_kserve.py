"""`compile --deploy-target kserve`: the KServe settings reach the deploy task of the Kubeflow YAML
(KFP_TF_GATE_KSERVE, read by deploy_model), the default YAML and the Vertex YAML carry none, and
bad settings fail the compile with one sentence."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from components.deploy.kserve import ENV, KServeConfig, config_from_env
from pipelines.__main__ import main
from pipelines.training import CompileOptions

KSERVE_ARGS = [
    "--deploy-target",
    "kserve",
    "--kserve-namespace",
    "team-a",
    "--kserve-service-account",
    "kserve-gcs",
    "--kserve-runtime-version",
    "2.14.1",
    "--kserve-gpu-count",
    "1",
    "--kserve-memory",
    "4Gi",
    "--serving-pvc",
    "serving-models:/models",
    "--kserve-timeout",
    "900",
]


def _deploy_env(path: str) -> dict:
    with open(path) as fh:
        spec = list(yaml.safe_load_all(fh))[0]
    container = spec["deploymentSpec"]["executors"]["exec-deploy-model"]["container"]
    return {e["name"]: e["value"] for e in container.get("env") or []}


def test_kserve_options_reach_the_deploy_task(tmp_path, capsys):
    out = str(tmp_path / "compiled")
    assert main(["compile", "--out", out, *KSERVE_ARGS]) == 0

    env = _deploy_env(os.path.join(out, "kubeflow", "training.yaml"))
    settings = json.loads(env[ENV])
    assert settings == {
        "namespace": "team-a",
        "service_account": "kserve-gcs",
        "runtime_version": "2.14.1",
        "storage_base": "pvc://serving-models",
        "name": "",
        "cpu": "1",
        "memory": "4Gi",
        "gpu_count": 1,
        "gpu_resource": "nvidia.com/gpu",
        "timeout_s": 900.0,
        "poll_s": 5.0,
    }
    # what deploy_model builds from it, with the run's canary share
    cfg = config_from_env(env, canary_traffic_percent=10)
    assert cfg == KServeConfig(
        "team-a",
        "kserve-gcs",
        "2.14.1",
        "pvc://serving-models",
        memory="4Gi",
        gpu_count=1,
        canary_traffic_percent=10,
        timeout_s=900.0,
    )
    # Vertex AI Pipelines have no cluster of ours: no KServe there, and the default compile has none either
    assert ENV not in _deploy_env(os.path.join(out, "vertex", "training.yaml"))
    assert ENV not in _deploy_env(os.path.join("compiled", "kubeflow", "training.yaml"))


@pytest.mark.parametrize(
    "opts, message",
    [
        (dict(deploy_target="kserve"), "--deploy-target kserve needs --kserve-namespace"),
        (
            dict(target="vertex", deploy_target="kserve", kserve_namespace="a"),
            "is compiled for kubeflow",
        ),
        (dict(kserve_namespace="a"), "--kserve-namespace configures --deploy-target kserve"),
        (
            dict(deploy_target="kserve", kserve_namespace="Team A"),
            "KServe needs a Kubernetes namespace",
        ),
        (
            dict(deploy_target="kserve", kserve_namespace="a", kserve_gpu_count=-1),
            "GPU count must be a whole number",
        ),
        (
            dict(deploy_target="kserve", kserve_namespace="a", kserve_name="My_Model"),
            "cannot name an InferenceService",
        ),
        (dict(deploy_target="seldon"), "--deploy-target is '' (the serving base) or kserve"),
    ],
)
def test_bad_kserve_options_fail_the_compile(opts, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CompileOptions(**opts)
