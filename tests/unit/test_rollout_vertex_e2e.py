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


def test_the_env_variable_is_the_one_launch_reads():
    from components.rollout.vertex import VERTEX_ENDPOINT_ENV
    from components.train.launch import VERTEX_ENDPOINT_ENV as LAUNCH

    assert VERTEX_ENDPOINT_ENV == LAUNCH


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
