"""Multi-worker training in the rehearsal: the job service runs a CustomJob / TFJob as one local process
per replica with TF_CONFIG on loopback, and a pipeline compiled with --train-workers 2 trains with two."""

from __future__ import annotations

import json
import os

import pytest

from components._shared.errors import ModelError
from components.train import launch
from pipelines.rehearsal.jobs import JobService

# A replica that reports what the platform gave it: TF_CONFIG and its environment, into a file named by
# --config's value (the launcher's "--config URI" argument), then exits with EXIT (0 by default).
REPORT = ("import json, os, sys; path = sys.argv[sys.argv.index('--config') + 1]; "
          "t = json.loads(os.environ['TF_CONFIG'])['task']; "
          "open(f\"{path}.{t['type']}{t['index']}\", 'w').write(json.dumps(dict(os.environ))); "
          "sys.exit(int(os.environ.get('EXIT', '0')) if t['type'] == 'worker' else 0)")


# A replica that trains "two epochs": the chief prints Keras's epoch lines; on its first run every replica
# then waits (a preemption or a restart ends it), on a restarted run it exits 0 at once.
EPOCHS = ("import json, os, sys, time; path = sys.argv[sys.argv.index('--config') + 1]; "
          "t = json.loads(os.environ['TF_CONFIG'])['task']; mark = f\"{path}.{t['type']}{t['index']}.ran\"; "
          "first = not os.path.exists(mark); open(mark, 'a').write('x'); "
          "t['type'] == 'chief' and print('Epoch 1/2', 'Epoch 2/2', sep='\\n', flush=True); "
          "first and time.sleep(120)")


def _service(tmp_path, monkeypatch, preempt=False):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mlflow-credentials.json").write_text(json.dumps({"MLFLOW_TRACKING_PASSWORD": "s3cret"}))
    service = JobService(str(tmp_path / "logs"), {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}, str(secrets),
                         preempt=preempt)
    with service:
        for name, value in service.env().items():
            monkeypatch.setenv(name, value)
        yield service


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    yield from _service(tmp_path, monkeypatch)


@pytest.fixture
def preempting_jobs(tmp_path, monkeypatch):
    yield from _service(tmp_path, monkeypatch, preempt=True)


def _reports(prefix: str) -> dict:
    folder, base = os.path.split(prefix)
    return {name[len(base) + 1:]: json.load(open(os.path.join(folder, name)))
            for name in os.listdir(folder) if name.startswith(base + ".")}


def _check_cluster(reports: dict, workers: int) -> None:
    assert sorted(reports) == ["chief0"] + [f"worker{i}" for i in range(workers - 1)]
    configs = {k: json.loads(v["TF_CONFIG"]) for k, v in reports.items()}
    cluster = configs["chief0"]["cluster"]
    assert all(c["cluster"] == cluster for c in configs.values())
    addresses = cluster["chief"] + cluster["worker"]
    assert len(cluster["chief"]) == 1 and len(cluster["worker"]) == workers - 1
    assert len(set(addresses)) == workers and all(a.startswith("127.0.0.1:") for a in addresses)


def test_vertex_custom_job_runs_one_process_per_replica(jobs, tmp_path):
    prefix = str(tmp_path / "config.json")
    replicas = launch.Replicas(workers=3, image="trainer:1", config_uri=prefix, entry=("python", "-c", REPORT),
                               env={"KFP_TF_GATE_MLFLOW_SECRET": "projects/p/secrets/s"})
    place = launch.VertexPlace(launch.vertex_project(""), "us-central1", "j", "gs://rehearsal/x")
    name = launch.run_vertex_job(replicas, place, poll_seconds=0.05)
    reports = _reports(prefix)
    _check_cluster(reports, 3)
    chief = reports["chief0"]
    assert chief["KFP_TF_GATE_MLFLOW_SECRET"] == "projects/p/secrets/s"
    assert chief["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:1"
    assert "KFP_TF_GATE_VERTEX_API_ENDPOINT" not in chief  # a replica sees the job's spec, not the caller's env
    assert chief["PYTHONUNBUFFERED"] == "1" and chief["HOME"] != os.environ.get("HOME")
    [fact] = jobs.facts()
    assert fact["job"] == name and fact["state"] == "SUCCEEDED"
    assert [r["exit_code"] for r in fact["replicas"]] == [0, 0, 0]


def test_failed_replica_fails_the_job(jobs, tmp_path):
    prefix = str(tmp_path / "config.json")
    replicas = launch.Replicas(workers=2, image="trainer:1", config_uri=prefix, entry=("python", "-c", REPORT),
                               env={"EXIT": "3"})
    with pytest.raises(ModelError, match=r"ended FAILED: replica worker-0 exited with status 3 \(log: "):
        launch.run_vertex_job(replicas, launch.VertexPlace("rehearsal", "us-central1", "j", "gs://r/x"),
                              poll_seconds=0.05)
    # An exit status is a permanent error on Vertex: no restart, although the job asks for them.
    [fact] = jobs.facts()
    assert fact["restarts"] == [] and fact["state"] == "FAILED"


def test_preempted_replica_restarts_every_replica_of_a_vertex_job(preempting_jobs, tmp_path):
    prefix = str(tmp_path / "config.json")
    replicas = launch.Replicas(workers=2, image="trainer:1", config_uri=prefix, entry=("python", "-c", EPOCHS))
    launch.run_vertex_job(replicas, launch.VertexPlace("rehearsal", "us-central1", "j", "gs://r/x"),
                          poll_seconds=0.05)
    [fact] = preempting_jobs.facts()
    assert fact["state"] == "SUCCEEDED" and len(fact["restarts"]) == 1
    [restart] = fact["restarts"]
    assert restart["reason"].startswith("replica worker-0 exited with status -9")
    killed = restart["replicas"][1]
    assert killed["killed"].startswith("preempted (SIGKILL)") and killed["exit_code"] == -9
    assert [r["exit_code"] for r in fact["replicas"]] == [0, 0]  # both ran again and finished
    assert all(r["log"].endswith(".restart1.log") for r in fact["replicas"])
    ports = {a for r in restart["replicas"] for a in r["tf_config"]["cluster"]["worker"]}
    assert ports.isdisjoint(fact["replicas"][1]["tf_config"]["cluster"]["worker"])  # a new TF_CONFIG
    assert open(f"{prefix}.worker0.ran").read() == "xx"  # the worker started twice


def test_tfjob_on_failure_restarts_up_to_its_backoff_limit(jobs, tmp_path):
    prefix = str(tmp_path / "config.json")
    replicas = launch.Replicas(workers=2, image="trainer:1", config_uri=prefix, entry=("python", "-c", REPORT),
                               env={"EXIT": "3"})
    with pytest.raises(ModelError, match=r"replica worker-0 exited with status 3"):
        launch.run_tfjob(replicas, "train-fails", "kubeflow", poll_seconds=0.05)
    [fact] = jobs.facts()
    assert fact["state"] == "FAILED" and len(fact["restarts"]) == 3  # runPolicy.backoffLimit


def test_tfjob_runs_chief_and_workers_with_secret_references(jobs, tmp_path):
    prefix = str(tmp_path / "config.json")
    replicas = launch.Replicas(workers=2, image="trainer:1", config_uri=prefix, entry=("python", "-c", REPORT),
                               secret_env=launch.kubeflow_secret_env("mlflow-credentials"))
    assert launch.run_tfjob(replicas, "train-abc", "kubeflow", poll_seconds=0.05) == "kubeflow/train-abc"
    reports = _reports(prefix)
    _check_cluster(reports, 2)
    # the secret file stands for the Kubernetes secret; optional keys it lacks are left out
    assert reports["worker0"]["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    assert "MLFLOW_TRACKING_USERNAME" not in reports["worker0"] and "MINIO_ACCESS_KEY" not in reports["worker0"]


# -- the whole rehearsal: test_rehearse.test_vertex_rehearsal runs the Vertex file with train compiled
# for two workers (one rehearsal run instead of two) and checks it with these.

def multiworker_variant(folder) -> str:
    """The Vertex file compiled with --train-workers 2: every task but train is the default file's (which
    test_compiled_is_up_to_date holds equal to the committed one)."""
    import yaml

    from components._shared.images import Images
    from pipelines.compile import compile_text
    from pipelines.training import CompileOptions, build_pipeline

    text = compile_text(build_pipeline(CompileOptions("vertex", train_workers=2)), Images())
    ours = yaml.safe_load(text)["deploymentSpec"]["executors"]
    default = yaml.safe_load(compile_text(build_pipeline(CompileOptions("vertex")), Images()))
    theirs = default["deploymentSpec"]["executors"]
    assert "exec-train-model-multiworker" in ours and "exec-train-model" not in ours
    assert {k: v for k, v in ours.items() if k != "exec-train-model-multiworker"} == \
        {k: v for k, v in theirs.items() if k != "exec-train-model"}
    path = os.path.join(str(folder), "vertex-train-workers-2.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def check_two_workers(summary: dict, preempted: bool = False) -> None:
    """Train ran as a job of two replica processes (chief, worker), both trained, the chief's model came back.
    ``preempted``: the worker was killed at the chief's second epoch, the job restarted both replicas and
    they resumed from the first epoch's checkpoint (the restarted chief trains epoch 2 only)."""
    facts = summary["rehearsal"]
    [job] = facts["jobs"]
    assert job["state"] == "SUCCEEDED", job
    if preempted:
        [restart] = job["restarts"]
        assert restart["replicas"][1]["killed"].startswith("preempted"), restart
        epochs = [line.split()[1] for line in open(job["replicas"][0]["log"]) if line.startswith("Epoch ")]
        assert epochs == ["2/2"], f"the restarted chief trained epochs {epochs}: no resume"
    else:
        assert job["restarts"] == []
    assert [r["type"] for r in job["replicas"]] == ["chief", "worker"]
    assert [r["exit_code"] for r in job["replicas"]] == [0, 0]
    for replica in job["replicas"]:
        cluster = replica["tf_config"]["cluster"]
        assert len(cluster["chief"]) == 1 and len(cluster["worker"]) == 1
        assert "Epoch 2/2" in open(replica["log"]).read(), f"{replica['log']} trained no second epoch"
    [train] = [t for t in facts["tasks"] if t["task"] == "train-model-multiworker"]
    assert train["status"] == "SUCCESS"
    assert train["outputs"]["model"]["metadata"]["workers"] == 2
    # the chief's result, through the launcher's Output[Model]: evaluate scored the chief's model
    assert summary["challenger"]["auc"] > 0.6, summary["challenger"]
