"""Compiled pipelines: structure, GPU placement, gating, determinism, Vertex acceptance."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from components._shared.images import Images
from pipelines.compile import compile_all, compile_text
from pipelines.training import CompileOptions, build_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGES = ["ingest-data", "champion-reference", "validate-data", "drift-report", "engineer-features", "train-model", "evaluate-model",
          "export-model", "compare-models"]


def _docs(target: str) -> list:
    with open(os.path.join(ROOT, "compiled", target, "training.yaml")) as fh:
        return list(yaml.safe_load_all(fh))


def test_compiled_is_up_to_date():
    assert compile_all(os.path.join(ROOT, "compiled"), check=True) == [], "run `python -m pipelines compile`"


def test_compile_is_byte_identical(tmp_path):
    a = compile_text(build_pipeline(CompileOptions("kubeflow")), Images())
    b = compile_text(build_pipeline(CompileOptions("kubeflow")), Images())
    assert a == b


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_every_stage_and_gated_deploy(target):
    spec = _docs(target)[0]
    assert spec["pipelineInfo"]["name"] == "kfp-tf-gate-training"
    tasks = spec["root"]["dag"]["tasks"]
    for stage in STAGES:
        assert stage in tasks, stage
    assert "deploy-model" not in tasks, "deploy must only run inside the promotion condition"
    conditions = [t for t in tasks.values() if "triggerPolicy" in t]
    assert len(conditions) == 1
    cond = conditions[0]
    assert "pipelinechannel--compare-models-Output" in cond["triggerPolicy"]["condition"]
    inner = spec["components"][cond["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["deploy-model"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("data_uri", "label", "model_name", "epochs", "min_auc", "min_improvement", "mlflow_tracking_uri"):
        assert name in params


@pytest.mark.parametrize("target,accel", [("kubeflow", "nvidia.com/gpu"), ("vertex", "NVIDIA_TESLA_T4")])
def test_accelerator_only_on_train(target, accel):
    execs = _docs(target)[0]["deploymentSpec"]["executors"]
    for name, ex in execs.items():
        res = ex["container"].get("resources", {})
        if name == "exec-train-model":
            assert res["accelerator"]["resourceType"] == accel
            assert res["accelerator"]["resourceCount"] == "1"
        else:
            assert "accelerator" not in res, name


def test_kubeflow_node_placement_and_secrets():
    docs = _docs("kubeflow")
    assert len(docs) == 2
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = k8s["exec-train-model"]
    assert train["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}.items() <= train["tolerations"][0].items()
    for name, ex in k8s.items():
        if name != "exec-train-model":
            assert "nodeSelector" not in ex and "tolerations" not in ex
    # Secrets are referenced by name only; no credential value is in the YAML.
    assert train["secretAsEnv"][0]["secretName"] == "mlflow-credentials"
    # Every task that talks to MLflow gets the credentials; the data-only ones do not.
    with_secret = {name for name, ex in k8s.items() if ex.get("secretAsEnv")}
    assert with_secret == {"exec-champion-reference", "exec-train-model",
                           "exec-compare-models", "exec-deploy-model"}
    text = open(os.path.join(ROOT, "compiled", "kubeflow", "training.yaml")).read()
    assert "PASSWORD:" not in text.replace("MLFLOW_TRACKING_PASSWORD", "")


def test_vertex_is_single_document_without_kubernetes():
    docs = _docs("vertex")
    assert len(docs) == 1
    assert "platforms" not in docs[0]


def test_images_pinned_per_role_and_rewritable():
    execs = _docs("kubeflow")[0]["deploymentSpec"]["executors"]
    images = {name: ex["container"]["image"] for name, ex in execs.items()}
    assert not any(i.endswith(":latest") for i in images.values())
    assert images["exec-train-model"] == Images().trainer
    assert images["exec-ingest-data"] == Images().data
    assert images["exec-deploy-model"] == Images().deploy
    custom = Images("europe-docker.pkg.dev/acme/ml", "abc123")
    text = compile_text(build_pipeline(CompileOptions("vertex")), custom)
    assert "europe-docker.pkg.dev/acme/ml/kfp-tf-gate-trainer:abc123" in text
    assert Images().trainer not in text


def test_gpu_compile_options():
    opts = CompileOptions("kubeflow", gpu_type="nvidia.com/gpu", gpu_count=2, gpu_node_selector="pool=a100")
    docs = list(yaml.safe_load_all(compile_text(build_pipeline(opts), Images())))
    res = docs[0]["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert res["accelerator"]["resourceCount"] == "2"
    assert docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]["nodeSelector"]["labels"] == {"pool": "a100"}
    cpu = CompileOptions("vertex", gpu_count=0)
    spec = yaml.safe_load(compile_text(build_pipeline(cpu), Images()))
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-train-model"]["container"].get("resources", {})


def test_vertex_pipeline_job_accepts_template_offline():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name="kfp-tf-gate-training",
        template_path=os.path.join(ROOT, "compiled", "vertex", "training.yaml"),
        pipeline_root="gs://example-bucket/pipeline-root",
        parameter_values={"data_uri": "gs://example-bucket/churn.csv", "label": "churned", "epochs": 3},
        job_id="kfp-tf-gate-test-job",
        enable_caching=False,
        project="example-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    body = job.to_dict()
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == "kfp-tf-gate-training"
    params = body["runtimeConfig"]["parameterValues"]
    assert params["label"] == "churned" and params["epochs"] == 3


def test_kubeflow_yaml_loads_as_kfp_component():
    from kfp import components

    comp = components.load_component_from_file(os.path.join(ROOT, "compiled", "kubeflow", "training.yaml"))
    assert comp.name == "kfp-tf-gate-training"
    assert {"data_uri", "label"} <= set(comp.component_spec.inputs)


def test_modules_do_not_import_heavy_libraries():
    code = (
        "import sys, importlib\n"
        "for m in ['components.ingest.component','components.validate.component','components.engineer.component',"
        "'components.train.component','components.evaluate.component','components.compare.component',"
        "'components.export.component','components.deploy.component','pipelines.training','pipelines.compile',"
        "'pipelines.__main__','pipelines.local']:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in ('tensorflow','evidently','google.cloud.aiplatform','mlflow','pandas') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _all_tasks(spec: dict) -> dict:
    """Every task of the pipeline, the ones inside dsl.If included: name -> task spec."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update((comp.get("dag") or {}).get("tasks") or {})
    return {name: t for name, t in tasks.items() if "componentRef" in t and "triggerPolicy" not in t}


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_no_task_promises_a_cache_hit(target):
    # ingest re-reads its source every run and so writes new artifacts every run; every other task
    # consumes them (directly or through another task) or talks to the registry, so none could hit
    # KFP's cache. Caching is off on every task, and the test would catch a new task left cached.
    tasks = _all_tasks(_docs(target)[0])
    assert set(STAGES) | {"deploy-model"} <= set(tasks)
    cached = {name for name, t in tasks.items() if (t.get("cachingOptions") or {}).get("enableCache")}
    assert cached == set()


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_cluster_targets_check_their_wiring_in_the_first_step(target):
    spec = _docs(target)[0]
    ref = spec["root"]["dag"]["tasks"]["champion-reference"]
    assert "dependentTasks" not in ref  # nothing runs before it but ingest, beside it
    params = ref["inputs"]["parameters"]
    assert params["require_remote_registry"] == {"runtimeValue": {"constant": True}}
    assert params["serving_mounts"] == {"runtimeValue": {"constant": ""}}  # no PVC in the committed files
    assert params["mlflow_tracking_uri"] == {"componentInputParameter": "mlflow_tracking_uri"}
    assert params["serving_base_dir"] == {"componentInputParameter": "serving_base_dir"}
    assert spec["root"]["inputDefinitions"]["parameters"]["serving_base_dir"]["defaultValue"] == ""


def test_local_target_keeps_its_local_registry():
    spec = yaml.safe_load_all(compile_text(build_pipeline(CompileOptions("local")), Images()))
    ref = next(spec)["root"]["dag"]["tasks"]["champion-reference"]
    assert ref["inputs"]["parameters"]["require_remote_registry"] == {"runtimeValue": {"constant": False}}


def test_serving_pvc_mounts_deploy_and_sets_the_default_base():
    opts = CompileOptions("kubeflow", serving_pvc="tf-serving-models:/mnt/models")
    docs = list(yaml.safe_load_all(compile_text(build_pipeline(opts), Images())))
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {name: ex["pvcMount"] for name, ex in k8s.items() if ex.get("pvcMount")}
    # deploy writes the serving base; compare reads it (the served champion must be the registered one)
    assert sorted(mounted) == ["exec-compare-models", "exec-deploy-model"]
    for name in mounted:
        assert mounted[name][0]["mountPath"] == "/mnt/models"
        assert mounted[name][0]["constant"] == "tf-serving-models"
    spec = docs[0]
    assert spec["root"]["inputDefinitions"]["parameters"]["serving_base_dir"]["defaultValue"] == "/mnt/models"
    ref = spec["root"]["dag"]["tasks"]["champion-reference"]["inputs"]["parameters"]
    assert ref["serving_mounts"] == {"runtimeValue": {"constant": "/mnt/models"}}
    assert CompileOptions("kubeflow", serving_pvc="claim").serving_mount == ("claim", "/models")
    for bad in (dict(target="vertex", serving_pvc="claim"), dict(target="kubeflow", serving_pvc="claim:relative"),
                dict(target="kubeflow", serving_pvc=":/models")):
        with pytest.raises(ValueError, match="serving-pvc"):
            CompileOptions(**bad)


def test_compile_cli_takes_the_serving_pvc(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pipelines", "compile", "--out", str(tmp_path),
                          "--serving-pvc", "models-pvc"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kfp_docs = list(yaml.safe_load_all(open(tmp_path / "kubeflow" / "training.yaml")))
    assert kfp_docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-deploy-model"]["pvcMount"]
    assert "pvcMount" not in open(tmp_path / "vertex" / "training.yaml").read()
    bad = subprocess.run([sys.executable, "-m", "pipelines", "compile", "--out", str(tmp_path),
                          "--serving-pvc", "x:rel"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --serving-pvc expects")
