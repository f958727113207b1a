"""Multi-worker training in the compiled YAML (--train-workers) and its launchers: a Vertex AI CustomJob
through the real aiplatform client against the Vertex stand-in, a TFJob through the Training Operator
SDK against the Kubernetes API stand-in."""

from __future__ import annotations

import os

import pytest

from components._shared.errors import ConfigError, ModelError
from components._shared.images import Images
from components.train import launch
from pipelines.compile import compile_text
from pipelines.training import CompileOptions, build_pipeline


def _spec(opts: CompileOptions) -> list:
    import yaml

    return list(yaml.safe_load_all(compile_text(build_pipeline(opts), Images("reg.example/ml", "1.2.3"))))


def _train(docs: list) -> tuple:
    spec = docs[0]
    task = spec["root"]["dag"]["tasks"]["train-model-multiworker"]
    params = {k: v["runtimeValue"]["constant"] for k, v in task["inputs"]["parameters"].items()
              if "runtimeValue" in v}
    return task, params, spec["deploymentSpec"]["executors"]["exec-train-model-multiworker"]


def test_vertex_yaml_asks_for_worker_pools():
    docs = _spec(CompileOptions("vertex", train_workers=3, train_machine_type="n1-highmem-16",
                                train_accelerator="NVIDIA_L4:2"))
    task, params, executor = _train(docs)
    assert task["taskInfo"]["name"] == "train"
    assert "train-model" not in docs[0]["root"]["dag"]["tasks"]  # one train task, the launcher
    expected = {"workers": 3, "platform": "vertex", "image": "reg.example/ml/kfp-tf-gate-trainer:1.2.3",
                "machine_type": "n1-highmem-16", "accelerator_type": "NVIDIA_L4", "accelerator_count": 2,
                "cpu": "", "memory": "", "node_selector": "", "mlflow_secret": ""}
    assert {k: params.get(k) for k in expected} == expected
    assert task["inputs"]["parameters"]["vertex_project"]["componentInputParameter"] == "vertex_project"
    # the launcher pod polls: the replicas, not it, get the machine and accelerators
    assert "resources" not in executor["container"]
    assert executor["container"]["image"] == params["image"]
    assert task["retryPolicy"]["maxRetryCount"] == 3
    # downstream tasks read the launcher's model
    evaluate = docs[0]["root"]["dag"]["tasks"]["evaluate-model"]
    assert evaluate["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-model-multiworker"


def test_kubeflow_yaml_gives_each_replica_the_train_pods_resources():
    docs = _spec(CompileOptions("kubeflow", train_workers=2, gpu_count=1))
    _, params, executor = _train(docs)
    assert params["workers"] == 2 and params["platform"] == "kubeflow"
    assert (params["accelerator_type"], params["accelerator_count"]) == ("nvidia.com/gpu", 1)
    assert (params["cpu"], params["memory"], params["mlflow_secret"]) == ("4", "16G", "mlflow-credentials")
    assert params["node_selector"] == "cloud.google.com/gke-accelerator=nvidia-tesla-t4"
    assert "resources" not in executor["container"]
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model-multiworker"]
    assert "nodeSelector" not in k8s and "secretAsEnv" in k8s  # MLflow still reaches the launcher


def test_one_worker_is_todays_single_train_pod():
    docs = _spec(CompileOptions("vertex"))
    assert "train-model" in docs[0]["root"]["dag"]["tasks"]
    assert "exec-train-model-multiworker" not in docs[0]["deploymentSpec"]["executors"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(target="vertex", train_workers=0), "at least 1"),
    (dict(target="local", train_workers=2), "kubeflow or vertex"),
    (dict(target="vertex", train_machine_type="n1-standard-4"), "--train-workers 2 or more"),
    (dict(target="kubeflow", train_workers=2, train_accelerator="nvidia.com/gpu:1"), "Vertex options"),
    (dict(target="vertex", train_workers=2, train_accelerator="NVIDIA_L4"), "TYPE:COUNT"),
])
def test_bad_options_are_one_sentence(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CompileOptions(**kwargs)


def test_compile_cli_writes_the_multiworker_files(tmp_path):
    from pipelines.__main__ import build_parser, cmd_compile

    args = build_parser().parse_args(["compile", "--out", str(tmp_path), "--train-workers", "2",
                                      "--train-machine-type", "n1-standard-16"])
    assert cmd_compile(args) == 0
    vertex = (tmp_path / "vertex" / "training.yaml").read_text()
    kubeflow = (tmp_path / "kubeflow" / "training.yaml").read_text()
    assert "exec-train-model-multiworker" in vertex and "n1-standard-16" in vertex
    assert "exec-train-model-multiworker" in kubeflow and "n1-standard-16" not in kubeflow


# -- Vertex AI: the real client against the stand-in ---------------------------------------------

@pytest.fixture
def vertex(monkeypatch):
    from tests.fakes.vertex_api_server import VertexApiServer

    with VertexApiServer() as server:
        monkeypatch.setenv(launch.VERTEX_ENDPOINT_ENV, server.url)
        yield server


def _replicas(**kw) -> launch.Replicas:
    return launch.Replicas(**{"workers": 3, "image": "reg.example/ml/kfp-tf-gate-trainer:1.2.3",
                              "config_uri": "gs://b/run/train/multiworker/config.json", **kw})


def test_vertex_custom_job_has_a_chief_pool_and_a_worker_pool(vertex):
    from google.cloud.aiplatform_v1.types import AcceleratorType

    place = launch.VertexPlace(vertex.project, "europe-west4", "churn-train-job1", "gs://b/run/train/multiworker",
                               labels={"managed-by": "kfp-tf-gate"},
                               service_account="pipelines@demo-project.iam.gserviceaccount.com")
    name = launch.run_vertex_job(_replicas(machine_type="n1-highmem-8", accelerator_type="NVIDIA_TESLA_T4",
                                           accelerator_count=2, env={"KFP_TF_GATE_MLFLOW_SECRET": "projects/p/secrets/s"}),
                                 place, poll_seconds=0.01)
    assert name.startswith(f"projects/{vertex.project_number}/locations/europe-west4/customJobs/")
    body = vertex.calls("CreateCustomJob")[0].body
    assert body["displayName"] == "churn-train-job1" and body["labels"] == {"managed-by": "kfp-tf-gate"}
    assert body["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == "gs://b/run/train/multiworker"
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [int(p["replicaCount"]) for p in pools] == [1, 2]  # chief, then workers - 1
    for pool in pools:
        machine = pool["machineSpec"]
        accel = machine["acceleratorType"]  # the REST transport may send the enum's number
        assert (AcceleratorType(accel).name if isinstance(accel, int) else accel) == "NVIDIA_TESLA_T4"
        assert (machine["machineType"], machine["acceleratorCount"]) == ("n1-highmem-8", 2)
        assert pool["containerSpec"] == {
            "imageUri": "reg.example/ml/kfp-tf-gate-trainer:1.2.3",
            "command": ["python3", "-m", "components.train.worker", "--config", "gs://b/run/train/multiworker/config.json"],
            "env": [{"name": "KFP_TF_GATE_MLFLOW_SECRET", "value": "projects/p/secrets/s"}]}
    assert body["jobSpec"]["scheduling"]["restartJobOnWorkerRestart"] is True  # MWMS cannot lose a replica
    assert body["jobSpec"]["serviceAccount"] == "pipelines@demo-project.iam.gserviceaccount.com"  # the run's
    assert vertex.calls("GetCustomJob") and not vertex.calls("CancelCustomJob")


def test_vertex_cpu_replicas_default_machine(vertex):
    launch.run_vertex_job(_replicas(workers=2), launch.VertexPlace(vertex.project, "us-central1", "j", "gs://b/x"),
                          poll_seconds=0.01)
    pools = vertex.calls("CreateCustomJob")[0].body["jobSpec"]["workerPoolSpecs"]
    assert [p["machineSpec"] for p in pools] == [{"machineType": launch.DEFAULT_MACHINE_TYPE}] * 2


def test_vertex_failed_job_is_one_sentence(vertex):
    vertex.custom_job_outcome = ("JOB_STATE_FAILED", "The replica workerpool1-0 exited with a non-zero status of 1.")
    with pytest.raises(ModelError) as err:
        launch.run_vertex_job(_replicas(), launch.VertexPlace(vertex.project, "us-central1", "j", "gs://b/x"),
                              poll_seconds=0.01)
    message = str(err.value)
    assert "ended FAILED: The replica workerpool1-0 exited" in message and "\n" not in message


def test_vertex_refusal_names_the_missing_role(vertex):
    vertex.fail["GetCustomJob"] = (403, "Permission 'aiplatform.customJobs.get' denied")
    with pytest.raises(ModelError, match="403 PERMISSION_DENIED.*roles/aiplatform.user"):
        launch.run_vertex_job(_replicas(), launch.VertexPlace(vertex.project, "us-central1", "j", "gs://b/x"),
                              poll_seconds=0.01)
    with pytest.raises(ConfigError, match="project"):
        launch.run_vertex_job(_replicas(), launch.VertexPlace("", "us-central1", "j", "gs://b/x"))


def test_stopped_train_task_cancels_its_job(vertex):
    import signal
    import threading
    import time

    vertex.custom_job_outcome = None  # runs until cancelled

    def stop_the_pod():
        while not vertex.calls("GetCustomJob"):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # what the kubelet / Vertex sends a pod it stops

    threading.Thread(target=stop_the_pod, daemon=True).start()
    with pytest.raises(SystemExit):
        launch.run_vertex_job(_replicas(), launch.VertexPlace(vertex.project, "us-central1", "j", "gs://b/x"),
                              poll_seconds=0.01)
    assert len(vertex.calls("CancelCustomJob")) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


# -- Kubeflow: a TFJob through the Training Operator SDK -----------------------------------------

@pytest.fixture
def k8s(monkeypatch):
    from tests.fakes.k8s_api_server import K8sApiServer

    with K8sApiServer() as server:
        monkeypatch.setenv(launch.K8S_API_ENV, server.url)
        yield server


def _operator(outcome: str, message: str = ""):
    """The Training Operator's part: Created, then Running, then the outcome, one step per write/poll."""
    def react(server, obj):
        meta = obj["metadata"]
        server.set_status("kubeflow.org", "tfjobs", meta["namespace"], meta["name"], {"conditions": [
            {"type": "Created", "status": "True", "reason": "TFJobCreated", "message": ""},
            {"type": outcome, "status": "True", "reason": f"TFJob{outcome}", "message": message}]})
    return react


def test_tfjob_has_chief_and_workers(k8s):
    k8s.on_write("kubeflow.org", "tfjobs", _operator("Succeeded"), delay=0.05)
    replicas = _replicas(accelerator_type="nvidia.com/gpu", accelerator_count=1, cpu="4", memory="16G",
                         node_selector="cloud.google.com/gke-accelerator=nvidia-tesla-t4",
                         secret_env=launch.kubeflow_secret_env("mlflow-credentials"))
    name = launch.job_name("train", "job-123")
    assert launch.run_tfjob(replicas, name, "team-a", poll_seconds=0.02) == f"team-a/{name}"
    job = k8s.get("kubeflow.org", "tfjobs", "team-a", name)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    specs = job["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Chief": 1, "Worker": 2}
    for spec in specs.values():
        assert spec["restartPolicy"] == "OnFailure"
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        assert container["name"] == "tensorflow" and container["image"] == replicas.image
        assert container["command"] == replicas.command
        assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "16G"}}
        assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert refs["MLFLOW_TRACKING_PASSWORD"] == {"name": "mlflow-credentials", "key": "MLFLOW_TRACKING_PASSWORD",
                                                    "optional": True}
        assert refs["MINIO_ACCESS_KEY"]["name"] == "mlpipeline-minio-artifact"
    # a retried task waits on the job it started instead of starting another
    assert launch.run_tfjob(replicas, name, "team-a", poll_seconds=0.02) == f"team-a/{name}"
    assert len(k8s.requests_to("POST", "tfjobs")) == 2 and not k8s.requests_to("DELETE", "tfjobs")


def test_failed_tfjob_is_one_sentence(k8s):
    k8s.on_write("kubeflow.org", "tfjobs", _operator("Failed", "TFJob team-a/x has failed because 1 Worker "
                                                                "replica(s) failed."), delay=0.05)
    with pytest.raises(ModelError, match=r"failed: TFJob team-a/x has failed because 1 Worker replica\(s\) failed"):
        launch.run_tfjob(_replicas(), "x", "team-a", poll_seconds=0.02)


def test_no_training_operator_is_named(k8s):
    k8s.fail[("POST", "tfjobs")] = (404, "the server could not find the requested resource")
    with pytest.raises(ModelError, match="Training Operator.*installed"):
        launch.run_tfjob(_replicas(), "x", "team-a", poll_seconds=0.02)


def test_job_names_are_dns_labels_stable_per_run():
    a, b = launch.job_name("train", "run-1"), launch.job_name("train", "run-2")
    assert a == launch.job_name("train", "run-1") and a != b
    long = launch.job_name("Train_Model " * 10, "x")
    assert len(long) <= 63 and long.replace("-", "").isalnum() and long == long.lower()
    with pytest.raises(ConfigError):
        launch.Replicas(workers=1, image="i", config_uri="gs://b/c")


def test_job_folder_is_beside_the_tasks_output():
    assert launch.job_folder("gs://b/root/run/train-model-multiworker/model") == \
        "gs://b/root/run/train-model-multiworker/multiworker"
    assert os.path.basename(launch.job_folder("minio://mlpipeline/v2/artifacts/p/r/t/model/")) == "multiworker"


def test_the_chiefs_model_and_result_come_back(tmp_path):
    job = tmp_path / "bucket" / "train-model-multiworker" / "multiworker"
    (job / "model" / "assets").mkdir(parents=True)
    (job / "model" / "model.keras").write_bytes(b"keras")
    (job / "model" / "assets" / "vocab.txt").write_text("a\nb\n")
    out = tmp_path / "pod" / "model"
    assert launch.copy_folder(str(job / "model"), str(out)) == 2
    assert (out / "model.keras").read_bytes() == b"keras" and (out / "assets" / "vocab.txt").read_text() == "a\nb\n"
    launch.write_json_uri({"epochs_run": 2, "metrics": {"auc": 0.8}}, str(job / "result.json"))
    assert launch.read_json_uri(str(job / "result.json"))["epochs_run"] == 2
    with pytest.raises(ModelError, match="chief wrote no model"):
        launch.copy_folder(str(tmp_path / "nothing"), str(out))
    with pytest.raises(ModelError, match="chief wrote no result"):
        launch.read_json_uri(str(tmp_path / "nothing.json"))
