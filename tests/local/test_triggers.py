"""Triggers: the real kfp client against a local HTTP server speaking the KFP v2beta1 API,
and Vertex AI PipelineJobs constructed offline (nothing is submitted to Google Cloud)."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml

from pipelines.__main__ import main
from tests.fakes import champion_runs_dir, drifted_window
from tests.fakes.kfp_api_server import KfpApiServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KFP_YAML = os.path.join(ROOT, "compiled", "kubeflow", "training.yaml")
VERTEX_YAML = os.path.join(ROOT, "compiled", "vertex", "training.yaml")
TOKEN = "s3cret-token"
ENV = (
    "MLFLOW_TRACKING_URI",
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_TOKEN",
    "KF_PIPELINES_SA_TOKEN_PATH",
    "KUBERNETES_SERVICE_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUD_ML_PROJECT_ID",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    d = tmp_path_factory.mktemp("windows")
    out = {}
    for seed in (5, 6):
        out[seed] = str(d / f"drift-{seed}.csv")
        drifted_window(500, seed=seed).to_csv(out[seed], index=False)
    return out


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch):
    """No endpoint, token or tracking URI from the caller's shell; and none leaks out (MLflow exports
    MLFLOW_TRACKING_URI when a URI is set): set-then-delete makes monkeypatch restore the original."""
    for name in ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv(
        "HOME", str(tmp_path / "home")
    )  # kfp.Client reads ~/.config/kfp/context.json
    return Path(champion_runs_dir(tmp_path / "runs"))


@pytest.fixture
def server():
    with KfpApiServer(token=TOKEN) as s:
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def monitor_kfp(runs_dir, window, host, *extra, token=TOKEN) -> int:
    return main(
        [
            "monitor",
            "--runs-dir",
            str(runs_dir),
            "--current",
            window,
            "--trigger",
            "kfp",
            "--host",
            host,
            "--token",
            token,
            "--pipeline",
            KFP_YAML,
            "--json",
            *extra,
        ]
    )


def state_of(runs_dir) -> dict:
    path = runs_dir / "monitor" / "state.json"
    return json.load(open(path))["models"]["churn-model"] if path.exists() else {}


# --------------------------------------------------------------------------- Kubeflow: monitor -> run


def test_drift_starts_one_kfp_run_with_the_spec_and_parameters_and_never_a_duplicate(
    runs_dir, windows, server, capsys
):
    assert monitor_kfp(runs_dir, windows[5], server.url) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trigger"]["status"] == "started"

    posts = server.requests_to("POST", "/apis/v2beta1/runs")
    assert len(posts) == 1
    req = posts[0]
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    body = req.body
    with open(KFP_YAML) as fh:
        compiled_spec, platform = list(yaml.safe_load_all(fh))
    # The run carries the compiled pipeline (PipelineSpec + the kubernetes platform spec: GPU placement, secrets).
    assert body["pipeline_spec"]["pipeline_spec"] == compiled_spec
    assert body["pipeline_spec"]["platform_spec"] == platform
    params = body["runtime_config"]["parameters"]
    assert params == {
        "data_uri": windows[5],
        "label": "churned",
        "model_name": "churn-model",
        "positive_label": "yes",
        "id_column": "customer_id",
    }
    key = summary["dedupe_key"]
    assert body["display_name"] == f"retrain-churn-model-{key[:12]}"
    experiments = server.requests_to("POST", "/apis/v2beta1/experiments")
    assert [e.body["display_name"] for e in experiments] == ["kfp-tf-gate-retraining"]
    assert body["experiment_id"] == next(iter(server.experiments))

    run_id = next(iter(server.runs))
    assert summary["trigger"]["run_id"] == run_id
    assert summary["trigger"]["url"] == f"{server.url}/#/runs/details/{run_id}"
    state = state_of(runs_dir)
    assert state["last_trigger"]["run_id"] == run_id and state["last_trigger"]["dedupe_key"] == key
    assert TOKEN not in json.dumps(summary) and TOKEN not in json.dumps(state)

    # Rerunning the monitor on the same window never starts a duplicate.
    assert monitor_kfp(runs_dir, windows[5], server.url) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["decision"]["action"] == "skip"
        and "not starting a duplicate" in summary["decision"]["reasons"][-1]
    )
    assert len(server.runs) == 1

    # State lost (another machine, a wiped disk): the run's name on the server still dedupes.
    (runs_dir / "monitor" / "state.json").unlink()
    assert monitor_kfp(runs_dir, windows[5], server.url) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trigger"]["status"] == "exists" and len(server.runs) == 1
    assert state_of(runs_dir)["last_trigger"]["run_id"] == next(iter(server.runs)), (
        "the found run is recorded"
    )


def test_cooldown_holds_unless_severity_rises_with_state_in_the_registry(
    runs_dir, windows, server, capsys
):
    from components._shared import registry
    from components.monitor.state import STATE_TAG

    # First window: drift counted as low (critical threshold out of reach) -> run 1.
    assert (
        monitor_kfp(
            runs_dir, windows[5], server.url, "--drift-critical", "0.95", "--state", "registry"
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["severity"] == "low"
    # Another window, same severity, inside the cooldown -> skipped.
    assert (
        monitor_kfp(
            runs_dir, windows[6], server.url, "--drift-critical", "0.95", "--state", "registry"
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["decision"]["action"] == "skip" and summary["decision"]["cooldown_until"]
    assert len(server.runs) == 1
    # Severity rises (critical drift) -> run 2 despite the cooldown.
    assert (
        monitor_kfp(
            runs_dir, windows[6], server.url, "--drift-critical", "0.5", "--state", "registry"
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["severity"] == "medium" and summary["trigger"]["status"] == "started"
    assert any("rose from low to medium" in r for r in summary["decision"]["reasons"])
    assert len(server.runs) == 2
    tags = (
        registry.configure(f"sqlite:///{runs_dir / 'mlflow.db'}")
        .get_registered_model("churn-model")
        .tags
    )
    state = json.loads(tags[STATE_TAG])
    assert [t["severity"] for t in state["triggers"]] == ["low", "medium"]
    assert not (runs_dir / "monitor" / "state.json").exists()


def test_auth_failure_is_one_sentence_and_consumes_nothing(runs_dir, windows, server, capsys):
    assert monitor_kfp(runs_dir, windows[5], server.url, token="wrong") == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: the Kubeflow Pipelines API at")
        and "refused the credentials (HTTP 401" in err
    )
    assert "Traceback" not in err and "wrong" not in err
    assert not server.runs and state_of(runs_dir) == {}
    assert server.requests_to("GET", "/apis/v2beta1/healthz"), "the client failed at its first call"


def test_unreachable_host_is_one_sentence_and_consumes_nothing(runs_dir, windows, capsys):
    out = runs_dir / "report"
    host = f"http://127.0.0.1:{closed_port()}"
    assert monitor_kfp(runs_dir, windows[5], host, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert (
        f"error: cannot reach the Kubeflow Pipelines API at {host}" in err
        and "Connection refused" in err
    )
    assert state_of(runs_dir) == {}
    summary = json.load(open(out / "summary.json"))  # the report says what happened
    assert (
        summary["trigger"]["status"] == "failed" and "cannot reach" in summary["trigger"]["error"]
    )


def test_server_error_on_create_leaves_no_state(runs_dir, windows, server, capsys):
    server.fail[("POST", "create_run")] = (500, "database is locked")
    assert monitor_kfp(runs_dir, windows[5], server.url) == 2
    assert "answered HTTP 500: database is locked" in capsys.readouterr().err
    assert state_of(runs_dir) == {} and not server.runs
    assert server.requests_to("POST", "/apis/v2beta1/runs"), "the run was attempted"


def _decision(key: str = "0123456789abcdef01234567"):
    from components.monitor.policy import Decision

    return Decision("trigger", "medium", [], key)


def _schema():
    from tests.fakes import champion_frame

    return champion_frame(200, seed=1)[2]


def test_host_and_token_from_the_environment(server, tmp_path, monkeypatch):
    from components._shared.errors import ConfigError
    from components._shared.launch.kfp import KfpSettings
    from components._shared.launch.launcher import monitor_launcher

    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(
        ConfigError, match="no Kubeflow Pipelines host: pass --host or set KF_PIPELINES_ENDPOINT"
    ):
        monitor_launcher(
            "kfp", "churn-model", "gs://b/w.csv", _schema(), "", kfp=KfpSettings(pipeline=KFP_YAML)
        )
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", server.url)
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    launch = monitor_launcher(
        "kfp", "churn-model", "gs://b/w.csv", _schema(), "", kfp=KfpSettings(pipeline=KFP_YAML)
    )
    run = launch(_decision())
    assert run["status"] == "started" and run["host"] == server.url
    assert (
        server.requests_to("POST", "/apis/v2beta1/runs")[0].headers["authorization"]
        == f"Bearer {TOKEN}"
    )


def test_service_account_token_file(server, tmp_path, monkeypatch):
    from components._shared.launch.kfp import KfpSettings, kfp_start_run

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    kfp_start_run(
        KfpSettings(host=server.url, sa_token_path=str(token_file), pipeline=KFP_YAML),
        "r",
        {"label": "y"},
    )
    assert (
        server.requests_to("POST", "/apis/v2beta1/runs")[0].headers["authorization"]
        == f"Bearer {TOKEN}"
    )


def test_parameters_are_derived_and_checked_against_the_pipeline(server, tmp_path, monkeypatch):
    from components._shared.errors import ConfigError
    from components._shared.launch.kfp import KfpSettings
    from components._shared.launch.launcher import monitor_launcher

    monkeypatch.setenv("HOME", str(tmp_path))
    settings = KfpSettings(host=server.url, token=TOKEN, pipeline=KFP_YAML)
    launch = monitor_launcher(
        "kfp",
        "churn-model",
        "gs://bucket/churn/labelled/",
        _schema(),
        "https://mlflow.example.com",
        # typed values (the monitoring pipeline's training_parameters dict) stay typed; a --param string
        # for a list parameter becomes a list
        {"epochs": "3", "min_auc": "0.7", "require_approval": "true", "hidden_units": [128, 64],
         "anomaly_severity": {"unseen_categories": "blocking"}, "slice_columns": "gender,region"},
        kfp=settings,
    )
    launch(_decision())
    params = server.created_runs[0]["runtime_config"]["parameters"]
    assert params == {
        "data_uri": "gs://bucket/churn/labelled/",
        "label": "churned",
        "model_name": "churn-model",
        "positive_label": "yes",
        "id_column": "customer_id",
        "mlflow_tracking_uri": "https://mlflow.example.com",  # a server the cluster can reach
        "epochs": 3,
        "min_auc": 0.7,
        "require_approval": True,
        "hidden_units": [128, 64],
        "anomaly_severity": {"unseen_categories": "blocking"},
        "slice_columns": ["gender", "region"],
    }
    with pytest.raises(ConfigError, match="the training pipeline has no parameter 'epoch'"):
        monitor_launcher("kfp", "m", "gs://b/w", _schema(), "", {"epoch": "3"}, kfp=settings)
    with pytest.raises(ConfigError, match="'epochs' must be NUMBER_INTEGER"):
        monitor_launcher("kfp", "m", "gs://b/w", _schema(), "", {"epochs": "many"}, kfp=settings)
    with pytest.raises(ConfigError, match="unknown trigger 'airflow'"):
        monitor_launcher("airflow", "m", "gs://b/w", _schema(), "")
    assert len(server.runs) == 1


def test_run_an_uploaded_pipeline_by_name(server, tmp_path, monkeypatch, capsys):
    from components._shared.errors import TriggerError
    from components._shared.launch.kfp import KfpSettings
    from components._shared.launch.launcher import monitor_launcher

    monkeypatch.setenv("HOME", str(tmp_path))
    settings = KfpSettings(host=server.url, token=TOKEN, pipeline="kfp-tf-gate-training")
    launch = monitor_launcher(
        "kfp", "churn-model", "gs://b/window.csv", _schema(), "", kfp=settings
    )
    with pytest.raises(TriggerError, match="has no pipeline named 'kfp-tf-gate-training'"):
        launch(_decision())
    assert (
        main(
            [
                "submit",
                "--target",
                "kfp",
                "--host",
                server.url,
                "--token",
                TOKEN,
                "--pipeline",
                KFP_YAML,
                "--data",
                "gs://b/churn.csv",
                "--label",
                "churned",
            ]
        )
        == 0
    )
    launch(_decision())
    run = server.created_runs[-1]
    version = next(iter(server.versions.values()))
    assert run["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert (
        "pipeline_spec" not in run
        and run["runtime_config"]["parameters"]["data_uri"] == "gs://b/window.csv"
    )


# --------------------------------------------------------------------------- submit


def test_submit_uploads_once_and_starts_runs(runs_dir, server, capsys):
    args = [
        "submit",
        "--target",
        "kfp",
        "--host",
        server.url,
        "--token",
        TOKEN,
        "--pipeline",
        KFP_YAML,
        "--data",
        "gs://bucket/churn.csv",
        "--label",
        "churned",
        "--param",
        "epochs=2",
        "--param",
        "hidden_units=128,64",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    uploads = server.requests_to("POST", "/apis/v2beta1/pipelines/upload")
    assert len(uploads) == 1 and uploads[0].query["name"] == "kfp-tf-gate-training"
    assert uploads[0].body["files"]["uploadfile"]["content"] == open(KFP_YAML).read()
    run = server.created_runs[0]
    assert run["pipeline_version_reference"]["pipeline_id"] == first["pipeline_id"]
    assert run["runtime_config"]["parameters"] == {
        "data_uri": "gs://bucket/churn.csv",
        "label": "churned",
        "epochs": 2,
        "hidden_units": [128, 64],  # the pipeline declares a list: the client sends one
    }
    # The same file again: at most one new version (named by content), then always reused.
    for _ in range(2):
        assert main(args) == 0
        capsys.readouterr()
    assert len(server.requests_to("POST", "/apis/v2beta1/pipelines/upload")) == 1
    assert len(server.requests_to("POST", "/apis/v2beta1/pipelines/upload_version")) <= 1
    assert len(server.versions) <= 2 and len(server.runs) == 3


def test_submit_without_upload_and_with_bad_input(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    base = [
        "submit",
        "--target",
        "kfp",
        "--host",
        server.url,
        "--token",
        TOKEN,
        "--pipeline",
        KFP_YAML,
    ]
    assert (
        main(
            base
            + ["--data", "gs://b/x.csv", "--label", "churned", "--no-upload", "--run-name", "adhoc"]
        )
        == 0
    )
    assert not server.pipelines and server.created_runs[0]["display_name"] == "adhoc"
    assert "pipeline_spec" in server.created_runs[0]
    assert main(base) == 2
    assert "the training pipeline needs the parameter 'data_uri'" in capsys.readouterr().err
    assert (
        main(base[:-1] + [str(tmp_path / "missing.yaml"), "--data", "gs://b/x.csv", "--label", "y"])
        == 2
    )
    assert "does not exist (run python -m pipelines compile)" in capsys.readouterr().err
    assert (
        main(
            [
                "submit",
                "--target",
                "kfp",
                "--host",
                f"http://127.0.0.1:{closed_port()}",
                "--pipeline",
                KFP_YAML,
                "--data",
                "gs://b/x.csv",
                "--label",
                "y",
            ]
        )
        == 2
    )
    assert "cannot reach the Kubeflow Pipelines API" in capsys.readouterr().err


# --------------------------------------------------------------------------- Vertex AI (offline)


@pytest.fixture
def anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def test_vertex_job_is_built_from_the_vertex_template(anonymous):
    from components._shared.launch.package import run_name, vertex_job_id
    from components._shared.launch.vertex import VertexSettings, vertex_job

    key = "0123456789abcdef01234567"
    settings = VertexSettings(
        project="demo-project",
        location="europe-west4",
        template=VERTEX_YAML,
        pipeline_root="gs://demo-bucket/pipeline-root",
        credentials=anonymous,
    )
    job_id = vertex_job_id("Churn_Model", key)
    assert job_id == "retrain-churn-model-0123456789abcdef"
    assert re.fullmatch(r"[a-z][-a-z0-9]{0,127}", job_id)
    job = vertex_job(
        settings,
        job_id,
        run_name("churn-model", key),
        {"data_uri": "bq://demo-project.sales.churn", "label": "churned", "epochs": 3, "hidden_units": [128, 64]},
        labels={"dedupe-key": key, "model": "Churn_Model", "severity": "medium"},
    )
    assert job.job_id == job_id
    resource = job._gca_resource
    assert resource.display_name == "retrain-churn-model-0123456789ab"
    assert dict(resource.labels) == {
        "dedupe-key": key,
        "model": "churn_model",
        "severity": "medium",
    }
    assert resource.runtime_config.gcs_output_directory == "gs://demo-bucket/pipeline-root"
    values = dict(resource.runtime_config.parameter_values)
    assert values["data_uri"] == "bq://demo-project.sales.churn" and values["epochs"] == 3
    assert list(values["hidden_units"]) == [128, 64]  # a LIST parameter: the job carries a list
    assert job.to_dict()["pipelineSpec"]["pipelineInfo"]["name"] == "kfp-tf-gate-training"


def test_vertex_rejects_the_kubeflow_template_and_unknown_parameters(anonymous):
    from components._shared.errors import ConfigError
    from components._shared.launch.vertex import VertexSettings, vertex_job

    kubeflow = VertexSettings(project="p", template=KFP_YAML, credentials=anonymous)
    with pytest.raises(ConfigError, match="2 YAML documents.*use compiled/vertex"):
        vertex_job(kubeflow, "x-1", "x", {"data_uri": "a", "label": "b"})
    settings = VertexSettings(project="p", template=VERTEX_YAML, credentials=anonymous)
    with pytest.raises(ConfigError, match="nope"):
        vertex_job(settings, "x-1", "x", {"data_uri": "a", "label": "b", "nope": 1})


def test_the_monitoring_pipeline_is_schedulable_on_vertex(anonymous):
    from components._shared.launch.vertex import VertexSettings, vertex_job

    settings = VertexSettings(
        project="p",
        template=os.path.join(ROOT, "compiled", "vertex", "monitoring.yaml"),
        pipeline_root="gs://b/root",
        credentials=anonymous,
    )
    job = vertex_job(
        settings,
        "monitor-churn",
        "monitor",
        {
            "current_uri": "bq://p.sales.last_week",
            "mlflow_tracking_uri": "https://mlflow.example.com",
        },
    )
    assert job.to_dict()["pipelineSpec"]["pipelineInfo"]["name"] == "kfp-tf-gate-monitoring"


def test_monitor_vertex_credentials_failure_consumes_nothing(
    runs_dir, windows, tmp_path, capsys, monkeypatch
):
    args = [
        "monitor",
        "--runs-dir",
        str(runs_dir),
        "--current",
        windows[5],
        "--trigger",
        "vertex",
        "--pipeline",
        VERTEX_YAML,
        "--pipeline-root",
        "gs://b/root",
    ]
    assert main(args) == 2
    assert "no Google Cloud project for Vertex AI" in capsys.readouterr().err
    # No credentials here: the job fails before any request, with one sentence; nothing is recorded.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    out = tmp_path / "report"
    assert main(args + ["--project", "demo-project", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        "error: no usable Google Cloud credentials for Vertex AI" in err and "Traceback" not in err
    )
    assert state_of(runs_dir) == {}
    assert json.load(open(out / "summary.json"))["trigger"]["status"] == "failed"
