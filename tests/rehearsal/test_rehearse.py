"""Rehearsals of the compiled pipeline files: isolated pods, GCS emulator, MLflow server, retries."""

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

from components._shared.errors import PipelineError
from pipelines.rehearsal import platform
from pipelines.rehearsal.launcher import Attempt, Context
from pipelines.rehearsal.runner import compiled_file, mlflow_auth_route, rehearse

CONTRACT_KEYS = {"run_id", "promoted", "challenger", "champion", "saved_model_dir", "tflite_path",
                 "tflite_max_abs_diff", "serving_dir", "reasons"}


def _sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _check_pods(summary, kept: bool):
    tasks = summary["rehearsal"]["tasks"]
    assert tasks and all(t["status"] == "SUCCESS" for t in tasks)
    sandboxes = [t["sandbox"] for t in tasks]
    if kept:  # one fresh sandbox per attempt
        assert len(set(sandboxes)) == len(tasks) and all(os.path.isdir(s) for s in sandboxes)
    else:  # removed after success (kept only for failed attempts)
        assert all(s is None for s in sandboxes)
    # nothing a later run needs is left where a pod's files die with it
    assert {t["task"]: t["left_in_workdir"] for t in tasks if t["left_in_workdir"]} == {}


# -- fast: the platform spec as the rehearsal reads it ------------------------------------------

def test_kubeflow_platform_spec_is_read_from_the_committed_file():
    pipeline = platform.load(compiled_file("kubeflow"))
    train = pipeline.pods["exec-train-model"]
    assert ("secret", "mlflow-credentials", {"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                                             "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"},
            True) in train.secret_env
    # what one machine cannot honour is reported, not dropped
    assert "nodeSelector" in train.not_emulated and "tolerations" in train.not_emulated
    assert mlflow_auth_route(pipeline)
    assert not mlflow_auth_route(platform.load(compiled_file("vertex")))


def test_secret_files_stand_for_kubernetes_secrets(tmp_path):
    pod = platform.PodSpec("exec-x", "img", env={"A": "1"},
                           secret_env=[("secret", "creds", {"user": "U"}, False),
                                       ("secret", "missing", {"k": "K"}, True)])
    with pytest.raises(PipelineError, match="secret 'creds' does not exist"):
        pod.resolve_env(str(tmp_path))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "creds.json").write_text(json.dumps({"user": "alice"}))
    assert pod.resolve_env(str(tmp_path)) == {"A": "1", "U": "alice"}


def test_pvc_mount_path_and_pipeline_root_parameters_are_mapped(tmp_path):
    spec = {"pipelineInfo": {"name": "p"}, "root": {"dag": {"tasks": {}}},
            "components": {"comp-deploy-model": {"executorLabel": "exec-deploy-model"}},
            "deploymentSpec": {"executors": {"exec-deploy-model": {"container": {"image": "i"}}}}}
    pod = platform.PodSpec("exec-deploy-model", "i", pvc_mounts=[("serving-models", "/models", "")])
    pipeline = platform.CompiledPipeline("f", "0", spec, {}, {"exec-deploy-model": pod})
    root = str(tmp_path / "root")
    ctx = Context(pipeline=pipeline, rehearsal_dir=str(tmp_path / "r"), run_dir=str(tmp_path / "run"),
                  local_root=root, gcs_root="gs://b/pipeline-root/run1", store=None, extra_env={})
    executor_input = {"outputs": {"outputFile": f"{root}/p-1/deploy-model/executor_output.json"}}
    attempt = Attempt(ctx, ["sh", "--executor_input", json.dumps(executor_input)])
    assert attempt.executor == "exec-deploy-model"
    assert attempt._map_parameter("/models/churn") == str(tmp_path / "r" / "pvc" / "serving-models") + "/churn"
    assert attempt._map_parameter("/modelsX") == "/modelsX"  # not under the mount
    assert attempt._map_parameter(f"{root}/p-1/ckpt") == "gs://b/pipeline-root/run1/p-1/ckpt"
    assert attempt._map_parameter("relative") == "relative"


def test_rehearse_cli_takes_runs_options():
    from pipelines.__main__ import build_parser

    args = build_parser().parse_args(["rehearse", "--target", "vertex", "--data", "x.csv", "--label", "y",
                                      "--epochs", "3", "--param", "max_ece=0.2", "--preempt", "train"])
    assert (args.target, args.epochs, args.param, args.preempt) == ("vertex", 3, ["max_ece=0.2"], ["train"])


# -- slow: whole rehearsals ---------------------------------------------------------------------

@pytest.mark.slow
def test_kubeflow_rehearsal_twice_on_one_runs_dir(tmp_path, small_csv, services_auth, base_params,
                                                  pipeline_file):
    runs = str(tmp_path / "runs")
    path = pipeline_file("kubeflow")
    first = rehearse("kubeflow", small_csv, "churned", runs_dir=runs, model_name="reh-kfp",
                     params=base_params, services=services_auth, pipeline_file=path, backoff_scale=0.0)
    assert CONTRACT_KEYS <= set(first)
    assert first["target"] == "kubeflow"
    facts = first["rehearsal"]
    assert facts["pipeline_sha256"] == _sha256(path)
    assert facts["pipeline_root"].startswith("gs://")
    _check_pods(first, kept=False)
    assert first["champion"] is None and first["promoted"], first["reasons"]

    # the credentials reached the pods from the secret file; the server refuses anyone without them
    assert os.path.exists(os.path.join(runs, "rehearsal", "secrets", "mlflow-credentials.json"))
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{services_auth.mlflow.url}/api/2.0/mlflow/experiments/search?max_results=1")
    assert denied.value.code == 401

    # artifacts are read back from the emulator: the local copies are the bucket's objects
    store = services_auth.store
    bucket = store.client().bucket(services_auth.bucket)
    tflite_rel = os.path.relpath(first["tflite_path"], os.path.join(first["run_dir"], "pipeline_root"))
    blob = bucket.get_blob(f"pipeline-root/{first['run_id']}/{tflite_rel}")
    assert blob is not None
    with open(first["tflite_path"], "rb") as fh:
        assert blob.download_as_bytes() == fh.read()
    assert os.path.isfile(os.path.join(first["saved_model_dir"], "saved_model.pb"))
    # MLflow's artifacts went to the bucket through the server
    assert any(True for _ in store.client().list_blobs(services_auth.bucket, prefix="mlartifacts/", max_results=1))

    second = rehearse("kubeflow", small_csv, "churned", runs_dir=runs, model_name="reh-kfp",
                      params=base_params, services=services_auth, pipeline_file=path, backoff_scale=0.0)
    assert second["champion"] is not None and "auc" in second["champion"]
    assert second["champion_version"] == first["model_version"]

    # The batch prediction pipeline's compiled file, on the same registry and bucket.
    from tests.rehearsal.test_rehearse_prediction import check_prediction_rehearsal

    champion = second["model_version"] if second["promoted"] else first["model_version"]
    check_prediction_rehearsal(tmp_path, runs, "reh-kfp", champion, small_csv, services_auth)


@pytest.mark.slow
def test_vertex_rehearsal(tmp_path, small_csv, services_open, base_params):
    # The Vertex file with train compiled for two workers (--train-workers 2), every other task as in the
    # committed file: train runs as a CustomJob of two replicas (one rehearsal run covers both), and one
    # replica is preempted at the second epoch: the job restarts both and they resume.
    from tests.rehearsal.test_rehearse_multiworker import check_two_workers, multiworker_variant

    summary = rehearse("vertex", small_csv, "churned", runs_dir=str(tmp_path / "runs"), model_name="reh-vertex",
                       params=base_params, services=services_open,
                       pipeline_file=multiworker_variant(tmp_path), preempt={"train"},
                       backoff_scale=0.0, keep_sandboxes=True)
    check_two_workers(summary, preempted=True)
    assert CONTRACT_KEYS <= set(summary)
    assert summary["target"] == "vertex" and summary["challenger"]["auc"] > 0.5
    try:
        _check_pods(summary, kept=True)
    finally:
        for t in summary["rehearsal"]["tasks"]:
            shutil.rmtree(t["sandbox"], ignore_errors=True)
    assert not any(pod["secrets_as_env"] for pod in summary["rehearsal"]["pods"].values())


@pytest.mark.slow
def test_preempted_train_is_retried_and_resumes(tmp_path, small_csv, services_auth, pipeline_file):
    # Never promoted (min_auc above 1), so deploy and its serving base play no part; the serving
    # base is a bucket URI only to pass the first step's wiring check.
    summary = rehearse("kubeflow", small_csv, "churned", runs_dir=str(tmp_path / "runs"), model_name="reh-preempt",
                       params={"id_column": "customer_id", "epochs": 4, "min_auc": 2.0},
                       serving_base=f"gs://{services_auth.bucket}/serving-preempt",
                       services=services_auth, pipeline_file=pipeline_file("kubeflow"), preempt={"train"},
                       backoff_scale=0.0)
    train = [t for t in summary["rehearsal"]["tasks"] if t["task"] == "train-model"]
    assert [t["status"] for t in train] == ["FAILURE", "SUCCESS"]
    assert train[0]["killed"].startswith("preempted")
    assert train[1]["first_epoch"] >= 2, "the retried attempt started from epoch 1: no resume"
    assert not summary["promoted"]
    # the checkpoints lived in the bucket under the pipeline root, keyed by the job id, and are gone
    store = services_auth.store
    left = [b.name for b in store.client().list_blobs(services_auth.bucket, prefix="pipeline-root/")
            if "/checkpoints/" in b.name]
    assert left == []


@pytest.mark.slow
def test_compiled_run_without_a_registry_fails_in_its_first_step(tmp_path, small_csv, services_open, pipeline_file):
    # The compiled default of mlflow_tracking_uri is "": on a cluster that would be a registry in the
    # pod's working directory. The first step refuses it with one sentence, before any training.
    with pytest.raises(PipelineError) as err:
        rehearse("vertex", small_csv, "churned", runs_dir=str(tmp_path / "runs"), model_name="reh-noreg",
                 params={"id_column": "customer_id", "mlflow_tracking_uri": ""}, services=services_open,
                 pipeline_file=pipeline_file("vertex"), backoff_scale=0.0)
    message = str(err.value)
    assert "mlflow_tracking_uri" in message and "Traceback" not in message
    facts = json.load(open(next((tmp_path / "runs").glob("*/rehearsal.json"))))
    ran = {t["task"] for t in facts["tasks"]}
    assert "champion-reference" in ran and not ran & {"train-model", "compare-models", "deploy-model"}
    assert not any(t["left_in_workdir"] for t in facts["tasks"])
    # A deterministic error: every retry (its own pod) fails at once with the same sentence, from the
    # marker the first attempt left beside the task's output in the bucket (errors.fail_fast).
    attempts = [t for t in facts["tasks"] if t["task"] == "champion-reference"]
    policy = facts["retry_policies"]["champion-reference"]
    assert len(attempts) == 1 + policy["maxRetryCount"] and {t["status"] for t in attempts} == {"FAILURE"}
    for retry in attempts[1:]:
        log = open(retry["log"]).read()
        assert "an earlier attempt of this task failed with a deterministic error" in log
        assert "ConfigError: mlflow_tracking_uri" in log
