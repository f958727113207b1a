"""The Vertex rollout end to end as the component and the CLI run it: ``rollout()`` with target vertex
and metrics vertex, given only project, location and endpoint, finds the Vertex AI API stand-in and the
Cloud Monitoring stand-in through the environment (KFP_TF_GATE_VERTEX_API_ENDPOINT,
KFP_TF_GATE_CLOUD_MONITORING_API), as the rehearsal points every Vertex AI client of the project.
Real clients (google-cloud-aiplatform over REST, requests) on a simulated clock."""

from __future__ import annotations

import pytest

from components.rollout.core import Thresholds
from components.rollout.run import PROMOTED, ROLLED_BACK, rollout
from tests.fakes.cloud_monitoring_server import CloudMonitoringServer
from tests.unit.test_rollout_vertex import (  # noqa: F401  (server is a fixture)
    ENDPOINT,
    LOCATION,
    MODEL,
    T0,
    Clock,
    _as_cloud_monitoring,
    _split,
    _target,
    server,
)

pytest.importorskip("google.cloud.aiplatform")


def _forget_the_fixtures_init() -> None:
    """aiplatform.init keeps what an earlier call set (the fixture's deploy pointed it at the stand-in):
    start from a fresh global config, so only the environment can point the rollout there."""
    from google.cloud.aiplatform import initializer

    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(vars(initializer._Config()))


def _update_splits(srv) -> list:
    """The traffic split of each UpdateEndpoint call, by model version."""
    ep = srv.endpoint(LOCATION, ENDPOINT)
    version = {d["id"]: d["modelVersionId"] for d in ep["deployedModels"]}
    return [{version[k]: int(v) for k, v in c.body["trafficSplit"].items() if int(v)}
            for c in srv.calls("UpdateEndpoint")]


def _rollout(srv, scenario, monkeypatch, lines):
    from components.rollout.cloud_monitoring import API_ENV
    from components.rollout.vertex import VERTEX_ENDPOINT_ENV

    endpoint_id, canary, stable = _target(srv).deployed_models()
    cm = CloudMonitoringServer(_as_cloud_monitoring(scenario, endpoint_id, {"canary": canary, "stable": stable}))
    _forget_the_fixtures_init()
    with cm:
        monkeypatch.setenv(VERTEX_ENDPOINT_ENV, srv.url)
        monkeypatch.setenv(API_ENV, cm.url)
        clock = Clock(T0)
        result = rollout(MODEL, "vertex", "", "10,50,100", "600s", flavor="vertex", version="2",
                         thresholds=Thresholds(max_score_psi=None),
                         target_options={"project": srv.project, "location": LOCATION, "endpoint_name": ENDPOINT},
                         report=lines.append, clock=clock, sleep=clock.sleep)
    assert cm.requests, "the checks read the Cloud Monitoring stand-in"
    return result


def test_a_healthy_canary_walks_the_endpoint_split_to_100_percent(server, monkeypatch):  # noqa: F811 (the fixture imported above)
    lines: list = []
    result = _rollout(server, "healthy", monkeypatch, lines)
    assert result.status == PROMOTED, result.reason
    # deploy left the canary at 10 %: checked there (not set again), then 50 %, then all traffic
    assert _update_splits(server) == [{"1": 50, "2": 50}, {"2": 100}]
    assert _split(server) == {"2": 100}
    assert [c["percent"] for c in result.checks if c["action"] == "promote"] == [10, 50]
    assert lines[0].startswith("resumed: the canary is already at 10 %")


def test_an_unhealthy_canary_is_rolled_back_on_the_endpoint(server, monkeypatch):  # noqa: F811 (the fixture imported above)
    lines: list = []
    result = _rollout(server, "slow", monkeypatch, lines)
    assert result.status == ROLLED_BACK and result.reason.startswith("canary failed its check at 10 %: p99 latency")
    assert _update_splits(server) == [{"1": 100}]
    assert _split(server) == {"1": 100}


def _shifted(series: list, by: float) -> list:
    """The series with every point moved ``by`` seconds (recorded time -> now)."""
    import datetime

    def move(s: str) -> str:
        t = datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() + by
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    return [{**s, "points": [{**p, "interval": {k: move(v) for k, v in p["interval"].items()}} for p in s["points"]]}
            for s in series]


@pytest.mark.parametrize("scenario", ["healthy", "slow"])
def test_the_component_rolls_out_the_version_deploy_uploaded_over_the_stand_ins(
        server, monkeypatch, tmp_path, scenario):  # noqa: F811 (the fixture imported above)
    """rollout_model's own body, as the training pipeline wires it (deploy's record, the run's Vertex
    settings, no score thresholds) on the real clock: metrics shifted to now, read 600 s back."""
    import time

    from kfp.dsl import Artifact, Metrics

    from components._shared import io
    from components._shared.errors import RolloutError
    from components.rollout import rollout_model
    from components.rollout.cloud_monitoring import API_ENV
    from components.rollout.vertex import VERTEX_ENDPOINT_ENV

    endpoint_id, canary, stable = _target(server).deployed_models()
    series = _shifted(_as_cloud_monitoring(scenario, endpoint_id, {"canary": canary, "stable": stable}),
                      time.time() - (T0 + 1200))
    deployment = Artifact(uri=str(tmp_path / "deployment"))
    io.write_json({"version": "7", "extra": {"vertex": {"version": "2"}}}, deployment.path)
    report, metrics = Artifact(uri=str(tmp_path / "report")), Metrics(uri=str(tmp_path / "metrics"))
    kw = dict(report=report, metrics=metrics, model_name=MODEL, prometheus_url="", mlflow_tracking_uri="",
              target="vertex", metrics_flavor="vertex", vertex_project=server.project, vertex_location=LOCATION,
              vertex_endpoint=ENDPOINT, deployment=deployment, interval="0s", window="600s", max_score_psi=None)
    _forget_the_fixtures_init()
    with CloudMonitoringServer(series) as cm:
        monkeypatch.setenv(VERTEX_ENDPOINT_ENV, server.url)
        monkeypatch.setenv(API_ENV, cm.url)
        if scenario == "healthy":
            assert rollout_model.python_func(**kw) == PROMOTED
        else:
            with pytest.raises(RolloutError, match="^canary failed its check at 10 %: p99 latency"):
                rollout_model.python_func(**kw)
    assert io.read_json(report.path)["status"] == (PROMOTED if scenario == "healthy" else ROLLED_BACK)
    assert _split(server) == ({"2": 100} if scenario == "healthy" else {"1": 100})
