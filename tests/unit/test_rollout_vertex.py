"""The Vertex AI endpoint rollout target: the real google-cloud-aiplatform client (REST) against the
Vertex AI API stand-in, on an endpoint deploy left with a stable version and a 10 % canary."""

from __future__ import annotations

import pytest

from components._shared.errors import RolloutError
from components.deploy.vertex import VertexTarget, upload_and_deploy
from components.rollout.targets import TrafficTarget, build_target
from tests.fakes.vertex_api_server import VertexApiServer

pytest.importorskip("google.cloud.aiplatform")

LOCATION, MODEL, ENDPOINT = "us-central1", "churn-model", "churn-endpoint"


@pytest.fixture
def server():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    with VertexApiServer() as srv:
        for fp, canary in (("a" * 64, 100), ("b" * 64, 10)):  # version 1 stable, version 2 a 10 % canary
            upload_and_deploy(VertexTarget(srv.project, LOCATION, ENDPOINT, canary, credentials=AnonymousCredentials(),
                                           api_endpoint=srv.url, api_transport="rest"),
                              MODEL, f"gs://bucket/models/{fp[:8]}", fp, "card")
        yield srv
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def _target(server, version="2"):
    from google.auth.credentials import AnonymousCredentials

    return build_target("vertex", MODEL, version, project=server.project, location=LOCATION, endpoint_name=ENDPOINT,
                        api_endpoint=server.url, api_transport="rest", credentials=AnonymousCredentials())


def _split(server) -> dict:
    ep = server.endpoint(LOCATION, ENDPOINT)
    version = {d["id"]: d["modelVersionId"] for d in ep["deployedModels"]}
    return {version[k]: v for k, v in ep["trafficSplit"].items()}


def _aliases(server) -> dict:
    return {v["versionId"]: sorted(v["versionAliases"]) for v in server.model_versions(LOCATION, MODEL)}


def test_steps_then_promote_move_the_endpoint_split_and_the_aliases(server):
    t = _target(server)
    assert isinstance(t, TrafficTarget)
    assert (t.describe().stable, t.describe().canary, t.describe().canary_percent) == ("1", "2", 10.0)
    t.set_traffic(50)
    assert _split(server) == {"1": 50, "2": 50}
    (update,) = server.calls("UpdateEndpoint")
    assert update.method == "PATCH" and update.query["updateMask"] == "trafficSplit"
    assert sorted(update.body["trafficSplit"].values()) == [50, 50]
    t.set_traffic(50)  # idempotent: nothing sent again
    assert len(server.calls("UpdateEndpoint")) == 1
    state = t.promote()
    assert _split(server) == {"2": 100} and (state.stable, state.canary) == ("2", None)
    assert _aliases(server) == {"1": [], "2": ["champion", "default"]}


def test_rollback_gives_stable_all_traffic_and_its_aliases_back(server):
    t = _target(server)
    t.set_traffic(50)
    state = t.rollback("canary failed its check at 50 %: p99 latency 0.05 vs stable 0.02 (at most 0.03)")
    assert _split(server) == {"1": 100} and (state.stable, state.canary) == ("1", None)
    assert _aliases(server) == {"1": ["champion", "default"], "2": []}


def test_a_version_the_endpoint_does_not_serve_is_refused_in_one_sentence(server):
    with pytest.raises(RolloutError, match="endpoint 'churn-endpoint' serves no deployed model of version 7"):
        _target(server, "7").set_traffic(10)
    server.fail["UpdateEndpoint"] = (403, "Permission denied")
    with pytest.raises(RolloutError, match=r"setting the traffic split .* failed \(403"):
        _target(server).set_traffic(50)
    assert _split(server) == {"1": 90, "2": 10}
