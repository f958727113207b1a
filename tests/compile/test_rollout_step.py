"""`compile --rollout`: the rollout_model task after deploy in the training pipeline's DAG, under the
conditions that deploy left a canary, with its inputs; refusals in one sentence; nothing in a default
compile; the KServe settings defined once (components/deploy/kserve_api.py) for compile and deploy."""

import ast
import dataclasses
import inspect
import os

import pytest
import yaml
from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from components._shared.images import IMAGES
from components.deploy.kserve_api import COMPILE_OPTIONS, KServeConfig
from components.rollout.component import rollout_model
from pipelines.__main__ import main
from pipelines.training import CompileOptions, build_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM = "http://prometheus.monitoring:9090"
KSERVE = ["--deploy-target", "kserve", "--kserve-namespace", "team-a", "--kserve-name", "churn"]


def _spec(path: str) -> tuple[dict, dict]:
    with open(path) as fh:
        docs = list(yaml.safe_load_all(fh))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _chain(spec: dict, task: str) -> list:
    """The DAG tasks from the root down to ``task``: [(name, task dict)], following condition sub-DAGs."""
    def walk(dag: dict, path: list):
        for name, t in dag["tasks"].items():
            here = path + [(name, t)]
            if name == task:
                return here
            comp = spec["components"][t["componentRef"]["name"]]
            if "dag" in comp and (found := walk(comp["dag"], here)):
                return found
        return None

    return walk(spec["root"]["dag"], []) or []


def _conditions(chain: list) -> list:
    return [t["triggerPolicy"]["condition"] for _, t in chain if "triggerPolicy" in t]


def _constants(task: dict) -> dict:
    params = task["inputs"]["parameters"]
    return {k: v["runtimeValue"]["constant"] for k, v in params.items() if "runtimeValue" in v}


def _from_run(task: dict) -> dict:
    params = task["inputs"]["parameters"]
    return {k: v["componentInputParameter"] for k, v in params.items() if "componentInputParameter" in v}


def _run_defaults(spec: dict) -> dict:
    return {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}


def test_kubeflow_kserve_rollout_runs_after_deploy_only_when_deploy_left_a_canary(tmp_path):
    out = str(tmp_path / "compiled")
    assert main(["compile", "--out", out, *KSERVE, "--rollout", "--rollout-prometheus-url", PROM]) == 0
    spec, platform = _spec(os.path.join(out, "kubeflow", "training.yaml"))

    chain = _chain(spec, "rollout-model")
    assert [n for n, _ in chain][-1] == "rollout-model" and len(chain) == 4  # promote / approval / canary / task
    assert _conditions(chain) == [
        "inputs.parameter_values['pipelinechannel--compare-models-Output'] == true",  # deploy's own dsl.If
        "inputs.parameter_values['pipelinechannel--require_approval'] == false",
        "int(inputs.parameter_values['pipelinechannel--canary_traffic_percent']) < 100",
    ]
    # the canary conditions hang off deploy: they start once deploy succeeded, beside it under promote
    assert chain[1][1]["dependentTasks"] == ["deploy-model"]
    assert "deploy-model" in spec["components"][chain[0][1]["componentRef"]["name"]]["dag"]["tasks"]
    task = chain[-1][1]
    art = task["inputs"]["artifacts"]["deployment"]
    assert art == {"componentInputArtifact": "pipelinechannel--deploy-model-deployment"}
    outer = chain[-2][1]["inputs"]["artifacts"]["pipelinechannel--deploy-model-deployment"]
    assert chain[1][1]["inputs"]["artifacts"]["pipelinechannel--deploy-model-deployment"] == {
        "taskOutputArtifact": {"outputArtifactKey": "deployment", "producerTask": "deploy-model"}}
    assert outer == {"componentInputArtifact": "pipelinechannel--deploy-model-deployment"}
    assert _constants(task) == {"target": "kserve", "metrics_flavor": "kserve", "prometheus_url": PROM,
                                "kserve_namespace": "team-a", "kserve_name": "churn"}
    run = _from_run(task)
    assert run["model_name"] == "pipelinechannel--model_name"
    assert run["mlflow_tracking_uri"] == "pipelinechannel--mlflow_tracking_uri"
    own = inspect.signature(rollout_model.python_func).parameters
    defaults = _run_defaults(spec)
    for name in ("steps", "interval", "step_timeout", "window", "max_error_rate_increase", "max_p99_ratio",
                 "max_p99_increase", "max_score_psi", "max_score_ks", "min_requests", "canary_selector"):
        assert run[name] == f"pipelinechannel--rollout_{name}"
        assert defaults[f"rollout_{name}"] == own[name].default, name  # rollout_model's defaults, one home
    assert task["taskInfo"]["name"] == "rollout" and task["retryPolicy"]["maxRetryCount"] == 2
    # MLflow credentials for the registry tags, as on deploy
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-rollout-model"]["secretAsEnv"] == executors["exec-deploy-model"]["secretAsEnv"]
    # the rollout reads deploy's record: the compiled component declares the input, optional
    comp = spec["components"][task["componentRef"]["name"]]
    assert comp["inputDefinitions"]["artifacts"]["deployment"]["isOptional"] is True
    # the Vertex YAML of the same compile has no rollout (no Vertex metrics source was given)
    vertex, _ = _spec(os.path.join(out, "vertex", "training.yaml"))
    assert not _chain(vertex, "rollout-model") and "rollout_steps" not in _run_defaults(vertex)


def test_vertex_rollout_moves_the_endpoint_on_its_cloud_monitoring_metrics(tmp_path):
    out = str(tmp_path / "compiled")
    assert main(["compile", "--out", out, "--rollout", "--rollout-metrics", "vertex"]) == 0
    spec, _ = _spec(os.path.join(out, "vertex", "training.yaml"))
    chain = _chain(spec, "rollout-model")
    assert _conditions(chain)[1:] == [
        "inputs.parameter_values['pipelinechannel--require_approval'] == false",
        "int(inputs.parameter_values['pipelinechannel--canary_traffic_percent']) < 100",
        "inputs.parameter_values['pipelinechannel--vertex_project'] != ''",
        "inputs.parameter_values['pipelinechannel--vertex_endpoint'] != ''",
    ]
    task = chain[-1][1]
    assert _constants(task) == {"target": "vertex", "metrics_flavor": "vertex", "prometheus_url": ""}
    assert {k: _from_run(task)[k] for k in ("vertex_project", "vertex_location", "vertex_endpoint")} == {
        k: f"pipelinechannel--{k}" for k in ("vertex_project", "vertex_location", "vertex_endpoint")}
    assert task["inputs"]["artifacts"]["deployment"] == {
        "componentInputArtifact": "pipelinechannel--deploy-model-deployment"}
    defaults = _run_defaults(spec)
    # Vertex has no score metric (the rollout refuses score checks there): off by default
    assert defaults["rollout_max_score_psi"] is None and defaults["rollout_max_score_ks"] is None
    assert defaults["rollout_max_p99_ratio"] == 1.5
    assert "Rollout step: Canary traffic percentages" in \
        spec["root"]["inputDefinitions"]["parameters"]["rollout_steps"]["description"]
    kubeflow, _ = _spec(os.path.join(out, "kubeflow", "training.yaml"))
    assert not _chain(kubeflow, "rollout-model")


@pytest.mark.parametrize("args, message", [
    (["--rollout"], "--rollout needs a metrics source for its checks: --rollout-prometheus-url URL (Kubeflow, "
                    "KServe) or --rollout-metrics vertex (Vertex, the endpoint's Cloud Monitoring metrics)"),
    (["--rollout", *KSERVE], "--rollout needs a metrics source"),
    (["--rollout", "--rollout-prometheus-url", PROM], "--rollout on Kubeflow moves the traffic of the KServe "
                                                      "InferenceService deploy patches: compile with --deploy-target kserve"),
    (["--rollout-prometheus-url", PROM], "--rollout-prometheus-url and --rollout-metrics configure --rollout"),
])
def test_a_rollout_without_what_it_needs_is_refused_in_one_sentence(tmp_path, capsys, args, message):
    out = tmp_path / "compiled"
    assert main(["compile", "--out", str(out), *args]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err
    assert not (out / "kubeflow" / "training.yaml").exists()


@pytest.mark.parametrize("opts", [dict(target="local", rollout=True, rollout_prometheus_url=PROM),
                                  dict(target="kubeflow", deploy_target="kserve", kserve_namespace="a", rollout=True,
                                       rollout_prometheus_url=PROM, rollout_metrics="vertex"),
                                  dict(target="vertex", rollout=True, rollout_metrics="kserve")])
def test_rollout_options_that_mean_nothing_for_the_target_fail(opts):
    with pytest.raises(ValueError):
        CompileOptions(**opts)


def test_a_default_compile_has_no_rollout_step():
    spec = build_pipeline(CompileOptions()).pipeline_spec
    assert not [k for k in spec.root.input_definitions.parameters if k.startswith("rollout")]
    assert "rollout-model" not in str(spec.deployment_spec)


def test_kserve_settings_have_one_definition():
    """CompileOptions' kserve_* fields come from KServeConfig (types and defaults); kserve_api, which
    defines it, imports nothing of kserve (the arrow points one way)."""
    fields = {f.name: f for f in dataclasses.fields(CompileOptions)}
    config = {f.name: f for f in dataclasses.fields(KServeConfig)}
    assert sorted(n for n in fields if n.startswith("kserve_")) == sorted(COMPILE_OPTIONS)
    for option, name in COMPILE_OPTIONS.items():
        assert fields[option].type == config[name].type
        assert fields[option].default == (config[name].default if name != "namespace" else "")
    got = CompileOptions(deploy_target="kserve", kserve_namespace="a", kserve_timeout=30).kserve_config()
    assert got == KServeConfig("a", timeout_s=30.0)
    with open(os.path.join(ROOT, "components", "deploy", "kserve_api.py")) as fh:
        tree = ast.parse(fh.read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "components.deploy.kserve" not in imported


# --------------------------------------------------------------------------- the step, run by kfp.local


@dsl.component(base_image=IMAGES.deploy, install_kfp_package=False)
def record_deployment(version: str, deployment: Output[Artifact]):
    """Stands in for deploy_model (TensorFlow, MLflow, a serving base): writes the record it writes."""
    import json

    with open(deployment.path, "w") as fh:
        json.dump({"model_name": "churn-model", "version": version, "alias": "champion", "extra": {
            "kserve": {"action": "patched", "version": version, "canary_traffic_percent": 10}}}, fh)


@pytest.mark.parametrize("scenario, require_approval", [("slow", False), ("healthy", False), ("slow", True)])
def test_the_step_walks_or_rolls_back_the_kserve_canary_and_a_rollback_fails_with_its_sentence(
        tmp_path, monkeypatch, capfd, scenario, require_approval):
    """The step as the Kubeflow compile wires it (training_rollout.add_rollout_task, the same code), run by
    kfp.local: the real rollout_model in a subprocess against the Kubernetes API stand-in (through a
    kubeconfig) and the Prometheus stand-in replaying a recorded canary (slow: rolled back; healthy:
    promoted). With require_approval the condition keeps it from running."""
    pytest.importorskip("kubernetes")
    import time

    from kfp import local

    from components.deploy import kserve
    from pipelines import training_rollout
    from tests.fakes.k8s_api_server import (
        ISVC_PLURAL,
        KSERVE_GROUP,
        K8sApiServer,
        kserve_controller,
    )
    from tests.fakes.prometheus_server import PrometheusServer, load

    # the recording has TF Serving's metric names (the series a label-routed canary and stable export)
    opts = CompileOptions(deploy_target="kserve", kserve_namespace="team-a", rollout=True,
                          rollout_prometheus_url="http://placeholder", rollout_metrics="tfserving")
    data = os.path.join(ROOT, "tests", "unit", "data", "rollout")
    with K8sApiServer() as k8s, PrometheusServer(load(os.path.join(data, f"{scenario}.json")),
                                                 shift=time.time() - (1764590400 + 1200)) as prom:
        k8s.controller = kserve_controller()
        k8s.on_write(KSERVE_GROUP, ISVC_PLURAL, k8s.controller)
        cfg = dict(namespace="team-a", api_client=k8s.api_client(), timeout_s=5, poll_s=0.02)
        kserve.apply(kserve.KServeConfig(**cfg), "churn-model", "gs://b/.kserve/churn-model/1", 1)
        kserve.apply(kserve.KServeConfig(**cfg, canary_traffic_percent=10), "churn-model",
                     "gs://b/.kserve/churn-model/2", 2)
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "stand-in", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "c", "context": {"cluster": "stand-in", "user": "u"}}]}))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        opts = dataclasses.replace(opts, rollout_prometheus_url=prom.url)

        @dsl.pipeline
        def after_deploy(require_approval: bool, canary_traffic_percent: int = 10):
            deploy_task = record_deployment(version="2")
            run = dict(model_name="churn-model", mlflow_tracking_uri="", require_approval=require_approval,
                       canary_traffic_percent=canary_traffic_percent, vertex_project="", vertex_location="",
                       vertex_endpoint="")
            training_rollout.add_rollout_task(opts, deploy_task, run, {"interval": "0s", "window": "600s"},
                                              dict(num_retries=0))

        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
                   raise_on_error=True)
        writes_before = len(k8s.writes(ISVC_PLURAL))
        if require_approval:
            after_deploy(require_approval=True)
            assert len(k8s.writes(ISVC_PLURAL)) == writes_before  # the rollout did not run
            assert "rollout-model" not in capfd.readouterr().err
            return
        if scenario == "healthy":
            after_deploy(require_approval=False)
        else:
            with pytest.raises(RuntimeError, match="rollout-model"):
                after_deploy(require_approval=False)
        obj = k8s.get(KSERVE_GROUP, ISVC_PLURAL, "team-a", "churn-model")
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "rollout of churn-model version 2 on kserve" in text  # the version read from deploy's record
    if scenario == "healthy":  # 10 -> 50 -> 100: the canary's revision takes all traffic
        assert "canaryTrafficPercent" not in obj["spec"]["predictor"] and "100 %: promoted" in text
        return
    # the task fails with the rollout's one sentence: what a paged user sees
    assert "RolloutError: canary failed its check at 10 %: p99 latency" in text
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 0  # traffic back on stable


@pytest.mark.parametrize("record, message", [
    ({"version": "7", "extra": {}}, "the vertex rollout target needs version"),  # an MLflow number is no Vertex id
    ({"version": "7", "extra": {"vertex": {"version": "3"}}}, "Vertex endpoint metrics have no score distribution"),
])
def test_on_vertex_the_step_rolls_out_the_vertex_version_deploy_uploaded(tmp_path, record, message):
    """rollout_model's own body (python_func) reads deploy's record: on Vertex the version it uploaded
    (found: the rollout gets past the target to its next check; missing: refused), before any request."""
    from components._shared import io
    from components._shared.errors import ConfigError

    deployment = Artifact(uri=str(tmp_path / "deployment"))
    io.write_json(record, deployment.path)
    report, metrics = Artifact(uri=str(tmp_path / "report")), Metrics(uri=str(tmp_path / "metrics"))
    with pytest.raises(ConfigError, match=f"^{message}"):
        rollout_model.python_func(report=report, metrics=metrics, model_name="churn-model", prometheus_url="",
                                  mlflow_tracking_uri="", target="vertex", metrics_flavor="vertex",
                                  vertex_project="p", vertex_endpoint="e", deployment=deployment)
