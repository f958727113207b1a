"""The Vertex AI endpoint rollout target: the real google-cloud-aiplatform client (REST) against the
Vertex AI API stand-in, on an endpoint deploy left with a stable version and a 10 % canary."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from components._shared.errors import RolloutError
from components.deploy.vertex import VertexTarget, upload_and_deploy
from components.rollout.targets import TrafficTarget, build_target
from tests.fakes.cloud_monitoring_server import CloudMonitoringServer
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


# --------------------------------------------------------------------------- Cloud Monitoring metrics

DATA = os.path.join(os.path.dirname(__file__), "data", "rollout")
T0 = 1764590400
PREFIX = "aiplatform.googleapis.com/prediction/online/"


def _ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _counters(series: list, name: str, role: str, errors: bool = False) -> list:
    return [{t: float(v) for t, v in s["values"]} for s in series
            if s["metric"]["__name__"] == name and s["metric"]["role"] == role
            and (not errors or s["metric"]["status"] != "OK")]


def _buckets(series: list, name: str, role: str) -> dict:
    return {float(s["metric"]["le"].replace("+Inf", "inf")): {t: float(v) for t, v in s["values"]} for s in series
            if s["metric"]["__name__"] == name and s["metric"]["role"] == role}


def _as_cloud_monitoring(scenario: str, endpoint_id: str, deployed: dict) -> list:
    """The recorded Prometheus series of a scenario as Vertex AI writes them to Cloud Monitoring: one
    DELTA point a minute per deployed model (``deployed``: role -> deployed model id); latency as an
    exponential distribution in ms (TF Serving's bounds 10 * 1.8**k us, k = 8..19)."""
    with open(os.path.join(DATA, f"{scenario}.json")) as f:
        series = json.load(f)["data"]["result"]
    out = []
    for role, dm in deployed.items():
        count = ":tensorflow:serving:request_count"
        reqs, errs = _counters(series, count, role), _counters(series, count, role, errors=True)
        buckets = _buckets(series, ":tensorflow:serving:request_latency_bucket", role)
        if not reqs:
            continue
        times = sorted(reqs[0])
        resource = {"type": "aiplatform.googleapis.com/Endpoint",
                    "labels": {"endpoint_id": endpoint_id, "location": LOCATION}}
        points = {"prediction_count": [], "error_count": [], "prediction_latencies": []}
        for a, b in zip(times[::2], times[2::2], strict=False):
            interval = {"startTime": _ts(a), "endTime": _ts(b)}
            for name, xs in (("prediction_count", reqs), ("error_count", errs)):
                n = int(sum(max(x[b] - x[a], 0) for x in xs))
                points[name].append({"interval": interval, "value": {"int64Value": str(n)}})
            cum = [max(buckets[le][b] - buckets[le][a], 0) for le in sorted(buckets)]  # finite bounds, then inf
            counts = [cum[0]] + [y - x for x, y in zip(cum, cum[1:], strict=False)]
            points["prediction_latencies"].append({"interval": interval, "value": {"distributionValue": {
                "count": str(int(cum[-1])),
                "bucketOptions": {"exponentialBuckets": {"numFiniteBuckets": 11, "growthFactor": 1.8,
                                                         "scale": 0.01 * 1.8 ** 8}},
                "bucketCounts": [str(int(c)) for c in counts]}}})
        for name, pts in points.items():
            labels = {"deployed_model_id": dm, **({"latency_type": "total"} if name == "prediction_latencies" else {})}
            out.append({"metric": {"type": PREFIX + name, "labels": labels}, "resource": resource, "metricKind": "DELTA",
                        "valueType": "DISTRIBUTION" if name == "prediction_latencies" else "INT64", "points": pts})
            if name == "prediction_latencies":  # the other latency types are there too, and must not be read
                out.append({**out[-1], "metric": {"type": PREFIX + name,
                                                  "labels": {"deployed_model_id": dm, "latency_type": "overhead"}}})
    return out


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.mark.parametrize("scenario", ["healthy", "slow"])
def test_a_vertex_rollout_checks_the_endpoints_own_metrics(server, scenario):
    from google.auth.credentials import AnonymousCredentials

    from components.rollout.cloud_monitoring import CloudMonitoringSource
    from components.rollout.core import Thresholds
    from components.rollout.run import PROMOTED, ROLLED_BACK, run_rollout

    t = _target(server)
    endpoint_id, canary, stable = t.deployed_models()
    with CloudMonitoringServer(_as_cloud_monitoring(scenario, endpoint_id, {"canary": canary, "stable": stable}),
                               page_size=1) as cm:
        source = CloudMonitoringSource(server.project, t.deployed_models, cm.url, AnonymousCredentials())
        clock = Clock(T0)
        result = run_rollout(t, source, [10, 50, 100], Thresholds(max_score_psi=None), interval=600,
                             clock=clock, sleep=clock.sleep)
        flt = cm.requests[0]["filter"]
    assert f'metric.labels.deployed_model_id="{canary}"' in flt and f'resource.labels.endpoint_id="{endpoint_id}"' in flt
    if scenario == "healthy":
        assert result.status == PROMOTED and _split(server) == {"2": 100}
        assert 0.018 < result.checks[0]["figures"]["canary_p99"] < 0.022  # seconds, from the ms distribution
    else:
        assert result.status == ROLLED_BACK and _split(server) == {"1": 100}
        assert result.reason.startswith("canary failed its check at 10 %: p99 latency")


def test_vertex_metrics_refuse_score_checks_they_cannot_make(server):
    from components._shared.errors import ConfigError
    from components.rollout.run import rollout

    with pytest.raises(ConfigError, match="Vertex endpoint metrics have no score distribution"):
        rollout(MODEL, "vertex", "", flavor="vertex", version="2",
                target_options={"project": server.project, "location": LOCATION, "endpoint_name": ENDPOINT,
                                "api_endpoint": server.url, "api_transport": "rest"})
    assert not server.calls("UpdateEndpoint")
