"""A retried rollout (the task's KFP retry after a lost pod) resumes where the platform is, not from
the first step: real targets over the stand-ins (the Vertex AI API stand-in's endpoint; deploy's TF
Serving record with an MLflow registry), the checks on recorded metrics, a simulated clock.

The "lost attempt" is the same target object driven to where a pod would have left it."""

from __future__ import annotations

import os

import pytest

from components._shared.errors import ConfigError
from components._shared.serving_state import labels
from components.deploy.serving import read_state
from components.rollout.core import Thresholds
from components.rollout.run import PROMOTED, ROLLED_BACK, rollout, run_rollout
from components.rollout.targets import TFServingTarget
from tests.fakes.cloud_monitoring_server import CloudMonitoringServer
from tests.fakes.prometheus_server import PrometheusServer, load
from tests.unit.test_rollout_run import DATA, MODEL, _tags, models, served  # noqa: F401  (fixtures)
from tests.unit.test_rollout_vertex import T0, Clock, _as_cloud_monitoring, _split, _target, server  # noqa: F401

pytest.importorskip("google.cloud.aiplatform")


# --------------------------------------------------------------------------- Vertex endpoint


def _vertex(srv, scenario="healthy"):
    """A rollout of version 2 on the endpoint; returns (result, report lines, UpdateEndpoint calls it made)."""
    from google.auth.credentials import AnonymousCredentials

    from components.rollout.cloud_monitoring import CloudMonitoringSource

    before = len(srv.calls("UpdateEndpoint"))
    t = _target(srv)
    endpoint_id, canary, stable = t.deployed_models()
    lines: list = []
    with CloudMonitoringServer(_as_cloud_monitoring(scenario, endpoint_id, {"canary": canary, "stable": stable})) as cm:
        clock = Clock(T0)
        result = run_rollout(t, CloudMonitoringSource(srv.project, t.deployed_models, cm.url, AnonymousCredentials()),
                             [10, 50, 100], Thresholds(max_score_psi=None), interval=600, report=lines.append,
                             clock=clock, sleep=clock.sleep)
    ep = srv.endpoint("us-central1", "churn-endpoint")
    version = {d["id"]: d["modelVersionId"] for d in ep["deployedModels"]}
    made = [{version[k]: int(v) for k, v in c.body["trafficSplit"].items() if int(v)}
            for c in srv.calls("UpdateEndpoint")[before:]]
    return result, lines, made


def test_a_retry_at_50_percent_sets_nothing_below_50_and_finishes(server):  # noqa: F811 (the fixture imported above)
    _target(server).set_traffic(50)  # the lost attempt got this far
    result, lines, made = _vertex(server)
    assert result.status == PROMOTED, result.reason
    assert made == [{"2": 100}]  # 50 % was not set again, 10 % never
    assert [(c["percent"], c["action"]) for c in result.checks] == [(50, "promote")]
    assert lines[0].startswith("resumed: the canary is already at 50 % (stable version 1 (50 %), canary version 2 "
                               "(50 %) on 'churn-endpoint'); continuing with the check at 50 %, then 100 %")
    assert lines[1].startswith("50 %: already set")


def test_a_retry_after_a_rollback_moves_nothing_and_rolls_back_again(server):  # noqa: F811 (the fixture imported above)
    _target(server).rollback("canary failed its check at 10 %: p99 latency 0.05 vs stable 0.02 (at most 0.03)")
    result, lines, made = _vertex(server, "healthy")  # metrics that would pass: the rollback stays
    assert (result.status, made, result.checks) == (ROLLED_BACK, [], [])
    assert _split(server) == {"1": 100}
    assert result.reason.startswith("version 2 was rolled back by an earlier attempt")


def test_a_retry_after_the_promotion_moves_nothing(server):  # noqa: F811 (the fixture imported above)
    _target(server).promote()
    result, lines, made = _vertex(server, "slow")  # metrics that would fail: the promotion stays
    assert (result.status, made, result.checks) == (PROMOTED, [], [])
    assert _split(server) == {"2": 100}
    assert lines == [f"resumed: {result.reason}; nothing to move"]


# --------------------------------------------------------------------------- TF Serving record


def _tfserving(scenario, tracking_uri, base, version="2"):
    lines: list = []
    clock = Clock(T0)
    with PrometheusServer(load(os.path.join(DATA, f"{scenario}.json"))) as prom:
        result = rollout(MODEL, "tfserving", prom.url, "10,50,100", "600s", version=version,
                         tracking_uri=tracking_uri, serving_base=base, report=lines.append,
                         clock=clock, sleep=clock.sleep)
    return result, lines


@pytest.mark.slow  # TensorFlow loads the SavedModels deploy and approve check
def test_tfserving_resumes_at_the_step_the_registry_tag_names(served, tracking_uri):  # noqa: F811 (the fixture imported above)
    t = TFServingTarget(MODEL, 2, tracking_uri, served)
    t.set_traffic(10)
    t.set_traffic(50)  # the lost attempt's last step: the registry says "canary at 50 %"
    result, lines = _tfserving("healthy", tracking_uri, served)
    assert result.status == PROMOTED, lines
    assert [c["percent"] for c in result.checks] == [50]
    assert lines[0].startswith("resumed: the canary is already at 50 %")
    assert not any(line.startswith("10 %") for line in lines)
    assert labels(read_state(served, MODEL)) == {"stable": 2, "previous": 1, "canary": None}


@pytest.mark.slow  # TensorFlow loads the SavedModels deploy and approve check
def test_tfserving_retry_after_a_rollback_returns_the_same_sentence(served, tracking_uri):  # noqa: F811 (the fixture imported above)
    first, _ = _tfserving("slow", tracking_uri, served)
    assert first.status == ROLLED_BACK
    again, lines = _tfserving("healthy", tracking_uri, served)
    assert (again.status, again.reason, again.checks) == (ROLLED_BACK, first.reason, [])
    assert labels(read_state(served, MODEL)) == {"stable": 1, "previous": None, "canary": None}
    assert _tags(tracking_uri, 2)["rollout_reason"] == first.reason


@pytest.mark.slow  # TensorFlow loads the SavedModels deploy and approve check
def test_a_canary_of_another_version_is_refused_and_nothing_moves(served, tracking_uri):  # noqa: F811 (the fixture imported above)
    before = _tags(tracking_uri, 1)
    with pytest.raises(ConfigError, match=r"^the target's canary is version 2, not version 1 being rolled out "
                                          r"\(stable 1, canary 2 .*\); nothing moved$"):
        _tfserving("healthy", tracking_uri, served, version="1")
    assert labels(read_state(served, MODEL)) == {"stable": 1, "previous": None, "canary": 2}
    assert _tags(tracking_uri, 1) == before


# --------------------------------------------------------------------------- the rule itself (KServe's states)


@pytest.mark.parametrize("state, tag, expected", [
    # KServe after a rollback: the canary stays named, at 0 %; the registry has the sentence
    (("1", "2", 0.0), ("rolled_back", "canary failed its check at 10 %: ..."),
     ("rolled_back", [], "canary failed its check at 10 %: ...", None)),
    # promoted: the registry's reason is kept
    (("2", None, 0.0), ("promoted", "canary promoted after 2 check(s) at 10 %, 50 %"),
     ("promoted", [], "canary promoted after 2 check(s) at 10 %, 50 %", None)),
    # deploy left a 30 % canary, between the steps: checked at 30 % before 50 %
    (("1", "2", 30.0), None, ("resume", [30.0, 50, 100], None, 30.0)),
    # a redeployed canary whose old tag says rolled back: the platform wins, it is walked
    (("1", "2", 10.0), ("rolled_back", "old"), ("resume", [10.0, 50, 100], None, 10.0)),
])
def test_where_a_rollout_starts(state, tag, expected):
    from components._shared.traffic import TrafficState
    from components.rollout.run import resume_point

    kind, steps, line, share = resume_point(TrafficState(*state, "detail"), "2", tag, [10, 50, 100])
    assert (kind, steps, share) == (expected[0], expected[1], expected[3])
    if expected[2] is not None:
        assert line == expected[2]
    with pytest.raises(ConfigError, match="^the target's canary is version 2, not version 3 being rolled out"):
        resume_point(TrafficState(*state[:1], "2", 10.0, "detail"), "3", tag, [10, 50, 100])
