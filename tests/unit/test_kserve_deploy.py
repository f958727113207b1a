"""KServe deploy target: the real ``kubernetes`` client against the Kubernetes API stand-in
(tests/fakes/k8s_api_server.py) with a KServe controller stand-in setting status and traffic;
the manifests it receives are checked with the kserve SDK's own v1beta1 models."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("kubernetes")
kserve_sdk = pytest.importorskip("kserve")

from components._shared import registry  # noqa: E402
from components._shared.errors import ConfigError, DeployError, RolloutError  # noqa: E402
from components._shared.serving_state import labels  # noqa: E402
from components.deploy import kserve  # noqa: E402
from components.deploy.core import deploy  # noqa: E402
from components.deploy.serving import read_state  # noqa: E402
from tests.fakes.k8s_api_server import ISVC_PLURAL, KSERVE_GROUP, K8sApiServer, kserve_controller  # noqa: E402

NS, MODEL = "team-a", "churn_model"
NAME = "churn-model"  # the InferenceService name of MODEL (DNS-1035)


@pytest.fixture
def server():
    with K8sApiServer() as srv:
        srv.controller = kserve_controller()
        srv.on_write(KSERVE_GROUP, ISVC_PLURAL, srv.controller)
        yield srv


def config(server, canary: int = 100, **kw) -> kserve.KServeConfig:
    kw = {
        "service_account": "kserve-gcs",
        "runtime_version": "2.14.1",
        "gpu_count": 1,
        "timeout_s": 5,
        "poll_s": 0.02,
        **kw,
    }
    return kserve.KServeConfig(
        NS, canary_traffic_percent=canary, api_client=server.api_client(), **kw
    )


def isvc(server) -> dict:
    return server.get(KSERVE_GROUP, ISVC_PLURAL, NS, NAME)


def to_model(data, klass: str):
    """``data`` read into the kserve (or Kubernetes) model ``klass``: an unknown field fails, and the
    models' constructors raise on a missing required one."""
    import re

    from kubernetes import client

    if data is None:
        return None
    if m := re.fullmatch(r"list\[(.*)\]", klass):
        return [to_model(x, m.group(1)) for x in data]
    if m := re.fullmatch(r"dict\(([^,]*), (.*)\)", klass):
        return {k: to_model(v, m.group(2)) for k, v in data.items()}
    if klass in ("str", "int", "float", "bool", "object", "datetime", "date"):
        return data
    cls = getattr(kserve_sdk.models, klass, None) or getattr(client, klass)
    by_json = {j: a for a, j in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    assert not unknown, f"{klass} has no field {unknown}"
    return cls(**{by_json[k]: to_model(v, cls.openapi_types[by_json[k]]) for k, v in data.items()})


def validated(body: dict) -> dict:
    """A manifest that kserve's V1beta1InferenceService reads completely and writes back unchanged."""
    model = to_model(body, "V1beta1InferenceService")
    assert isinstance(model.spec.predictor.tensorflow, kserve_sdk.V1beta1TFServingSpec)
    assert kserve_sdk.ApiClient().sanitize_for_serialization(model) == body
    return body


def split(obj: dict) -> dict:
    return {
        t["revisionName"]: t["percent"] for t in obj["status"]["components"]["predictor"]["traffic"]
    }


def test_first_deploy_creates_a_valid_inference_service(server):
    uri = "gs://bucket/serving/.kserve/churn_model/1"
    out = kserve.apply(config(server, canary=10), MODEL, uri, 1)  # a new service: no canary share

    (create,) = server.writes(ISVC_PLURAL)
    assert (create.method, create.path) == (
        "POST",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices",
    )
    body = validated(create.body)
    assert body["metadata"]["name"] == NAME and body["metadata"]["namespace"] == NS
    pred = body["spec"]["predictor"]
    assert "canaryTrafficPercent" not in pred and pred["serviceAccountName"] == "kserve-gcs"
    tf = pred["tensorflow"]
    assert (tf["storageUri"], tf["runtimeVersion"]) == (uri, "2.14.1")
    assert tf["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    assert out["action"] == "created" and out["traffic"] == [
        {"revision": f"{NAME}-predictor-00001", "percent": 100, "latest": True}
    ]


def test_new_version_patches_storage_uri_with_a_canary_and_the_same_version_changes_nothing(server):
    kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/1", 1)
    out = kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/2", 2)

    patch = server.writes(ISVC_PLURAL)[-1]
    assert (patch.method, patch.content_type) == ("PATCH", "application/merge-patch+json")
    assert patch.body["spec"] == {
        "predictor": {
            "tensorflow": {"storageUri": "gs://b/.kserve/churn_model/2"},
            "canaryTrafficPercent": 10,
        }
    }
    stable_unchanged = {kserve.A_VERSION: "2"}  # the stable version (1) stays in its annotation
    assert patch.body["metadata"]["annotations"] == stable_unchanged
    assert patch.body["metadata"][
        "resourceVersion"
    ]  # a precondition: a change made meanwhile is a 409
    obj = isvc(server)
    validated({k: obj[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": NAME}})
    assert split(obj) == {f"{NAME}-predictor-00002": 10, f"{NAME}-predictor-00001": 90}
    assert out["action"] == "patched" and out["canary_traffic_percent"] == 10

    target = kserve.KServeTarget(config(server), MODEL)
    from components.rollout.targets import TrafficTarget

    assert isinstance(target, TrafficTarget)
    state = target.describe()
    assert (state.stable, state.canary, state.canary_percent) == ("1", "2", 10.0)

    before = len(server.writes())
    again = kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/2", 2)
    assert len(server.writes()) == before and again["action"] == "unchanged"

    # the rollout's moves: 50 %, then promote; a repeated promote writes nothing
    assert target.set_traffic(50).canary_percent == 50.0
    assert split(isvc(server)) == {f"{NAME}-predictor-00002": 50, f"{NAME}-predictor-00001": 50}
    promoted = target.promote()
    assert (promoted.stable, promoted.canary) == ("2", None)
    assert split(isvc(server)) == {f"{NAME}-predictor-00002": 100}
    n = len(server.writes())
    target.promote()
    assert len(server.writes()) == n
    with pytest.raises(RolloutError, match="has no canary to roll back"):
        target.rollback("p99 latency 2.1 s > 0.5 s")

    # version 3 at 100 %: no canary key, it becomes stable at once
    kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/3", 3)
    assert "canaryTrafficPercent" not in isvc(server)["spec"]["predictor"]
    assert kserve.KServeTarget(config(server), MODEL).describe().stable == "3"


def test_rollback_sends_all_traffic_to_the_stable_revision(server):
    kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/1", 1)
    kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/2", 2)
    state = kserve.KServeTarget(config(server), MODEL).rollback("error rate 4 % > 1 %")
    assert server.writes(ISVC_PLURAL)[-1].body["spec"] == {"predictor": {"canaryTrafficPercent": 0}}
    assert (state.stable, state.canary, state.canary_percent) == ("1", "2", 0.0)
    assert split(isvc(server)) == {f"{NAME}-predictor-00002": 0, f"{NAME}-predictor-00001": 100}
    # the next version's canary is measured against version 1, which still serves
    kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/3", 3)
    assert isvc(server)["metadata"]["annotations"][kserve.A_STABLE] == "1"


def test_settings_are_checked_before_any_request(server):
    with pytest.raises(ConfigError, match="cannot name an InferenceService"):
        kserve.apply(config(server), "Churn Model", "gs://b/x/1", 1)
    with pytest.raises(ConfigError, match="canary_traffic_percent must be a whole number"):
        kserve.apply(config(server, canary=0), MODEL, "gs://b/x/1", 1)
    with pytest.raises(ConfigError, match="set the KServe storage base"):
        kserve.storage_uri(config(server), "/models", MODEL, 1)
    assert (
        kserve.storage_uri(config(server, storage_base="pvc://serving/models"), "/models", MODEL, 4)
        == "pvc://serving/models/.kserve/churn_model/4"
    )
    server.fail[("POST", ISVC_PLURAL)] = (
        403,
        "inferenceservices.serving.kserve.io is forbidden: User "
        '"system:serviceaccount:team-a:default-editor" cannot create resource',
    )
    with pytest.raises(
        DeployError,
        match=r"Kubernetes refused creating InferenceService team-a/churn-model \(403: .*"
        r"needs a Role allowing get, create, patch and delete",
    ):
        kserve.apply(config(server), MODEL, "gs://b/x/1", 1)
    assert server.requests_to("GET") and not server.objects


# --------------------------------------------------------------------------- through deploy


def saved_model(root, tag: str) -> str:
    """A folder deploy accepts as a SavedModel (its files fingerprint it; the TF load is replaced below)."""
    path = os.path.join(root, tag)
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as fh:
        fh.write(f"graph {tag}".encode())
    with open(os.path.join(path, "variables", "variables.index"), "wb") as fh:
        fh.write(tag.encode())
    return path


def test_a_service_not_ready_in_time_promotes_nothing(server, tracking_uri, tmp_path):
    uri, base = tracking_uri, str(tmp_path / "serving")
    os.makedirs(base)
    cfg = config(server, canary=10, storage_base="pvc://serving-models", timeout_s=0.5)
    from components.deploy.core import _with_kserve

    def run(tag):
        sm = saved_model(tmp_path / "exports", tag)
        # verify: TF Serving's load and warm-up replay are not what this tests (test_deploy_registry does)
        return deploy(
            sm,
            MODEL,
            uri,
            base,
            artifacts={"saved_model": sm},
            card=f"# {tag}\n",
            verify=lambda path: 1,
            before_promote=_with_kserve(cfg, None, sm, base, MODEL),
        )

    first = run("a")
    assert first.extra["kserve"]["action"] == "created"
    assert (
        isvc(server)["spec"]["predictor"]["tensorflow"]["storageUri"]
        == "pvc://serving-models/.kserve/churn_model/1"
    )
    assert os.path.exists(os.path.join(base, ".kserve", MODEL, "1", "1", "saved_model.pb"))
    record = read_state(base, MODEL)

    server.controller.ready = False
    with pytest.raises(DeployError) as exc:
        run("b")
    message = str(exc.value)
    assert message.startswith(
        "version 2 of churn_model was not promoted: InferenceService team-a/churn-model did "
        "not become Ready within 0.5 s after patching it to version 2 with 10% of traffic "
        "(Ready is False: RevisionFailed: Revision failed to become ready)"
    ), message
    assert "\n" not in message
    assert read_state(base, MODEL) == record and labels(record)["stable"] == 1
    client = registry.configure(uri)
    assert registry.get_alias(client, MODEL, registry.CHAMPION).version == "1"
    assert client.get_model_version(MODEL, "2").tags["deploy_status"].startswith("failed: ")
    obj = isvc(server)  # patched back: the service says what the record says
    assert (
        obj["spec"]["predictor"]["tensorflow"]["storageUri"]
        == "pvc://serving-models/.kserve/churn_model/1"
    )
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert obj["metadata"]["annotations"][kserve.A_VERSION] == "1"
    assert split(obj) == {f"{NAME}-predictor-00001": 100}
    assert sorted(os.listdir(os.path.join(base, ".kserve", MODEL))) == ["1"]


def test_a_change_made_since_the_read_is_a_conflict_not_overwritten(server):
    kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/1", 1)
    real_get = K8sApiServer._route
    raced = []

    def route(
        self, method, path, query, ctype, body
    ):  # someone edits the service between our GET and PATCH
        if method == "PATCH" and not raced:
            raced.append(
                self.set_status(
                    KSERVE_GROUP, ISVC_PLURAL, NS, NAME, {"note": "controller was here"}
                )
            )
        return real_get(self, method, path, query, ctype, body)

    server._route = route.__get__(server)
    with pytest.raises(
        DeployError,
        match=r"Kubernetes refused patching InferenceService team-a/churn-model \(409: "
        r"Operation cannot be fulfilled",
    ) as exc:
        kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/2", 2)
    assert exc.value.transient  # the next attempt reads again
    assert (
        isvc(server)["spec"]["predictor"]["tensorflow"]["storageUri"]
        == "gs://b/.kserve/churn_model/1"
    )


# --------------------------------------------------------------------------- a whole rollout


@pytest.mark.parametrize("scenario, status", [("healthy", "promoted"), ("slow", "rolled_back")])
def test_a_rollout_walks_or_rolls_back_the_inference_service(server, scenario, status):
    """The rollout loop (components/rollout/run.py) on KServeTarget, with recorded metrics from the
    Prometheus API stand-in and a simulated clock (no step waits)."""
    from components.rollout.core import Thresholds, parse_steps
    from components.rollout.prometheus import PrometheusSource
    from components.rollout.run import run_rollout
    from tests.fakes.prometheus_server import PrometheusServer, load

    data = os.path.join(os.path.dirname(__file__), "data", "rollout")  # the rollout tests' recorded series
    now = [1764590400.0]  # their start; sleeping moves it on
    kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/1", 1)
    kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/2", 2)
    lines = []
    with PrometheusServer(load(os.path.join(data, f"{scenario}.json"))) as prom:
        result = run_rollout(kserve.KServeTarget(config(server), MODEL), PrometheusSource(prom.url, "churn-model"),
                             parse_steps("10,50,100"), Thresholds(), interval=600, report=lines.append,
                             clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert result.status == status, lines
    moves = [r.body["spec"]["predictor"].get("canaryTrafficPercent", "removed")
             for r in server.writes(ISVC_PLURAL)[2:]]
    obj = isvc(server)
    if status == "promoted":
        assert moves == [50, None]  # 10 % was set by deploy; promote removes the key
        assert split(obj) == {f"{NAME}-predictor-00002": 100}
        assert obj["status"]["components"]["predictor"]["latestRolledoutRevision"] == f"{NAME}-predictor-00002"
    else:
        assert moves == [0] and result.reason.startswith("canary failed its check at 10 %: p99 latency")
        assert split(obj) == {f"{NAME}-predictor-00002": 0, f"{NAME}-predictor-00001": 100}
        assert lines[-1].startswith("rolled back: canary failed its check at 10 %") and "stable 1 (100 %)" in lines[-1]


def test_fields_deploy_does_not_own_stay_and_a_repeat_writes_nothing(server):
    cfg = config(server, runtime_version="")
    kserve.apply(cfg, MODEL, "gs://b/.kserve/churn_model/1", 1)
    # what KServe's webhook defaults and what a platform team sets by hand
    from kubernetes.client import CustomObjectsApi

    CustomObjectsApi(server.api_client()).patch_namespaced_custom_object(
        KSERVE_GROUP, "v1beta1", NS, ISVC_PLURAL, NAME,
        {"spec": {"predictor": {"minReplicas": 2, "tensorflow": {"name": "kserve-container", "runtimeVersion": "2.6.2"}}}})
    before = len(server.writes())
    assert kserve.apply(cfg, MODEL, "gs://b/.kserve/churn_model/1", 1)["action"] == "unchanged"
    assert len(server.writes()) == before

    kserve.apply(config(server, canary=10, runtime_version="", gpu_count=0), MODEL, "gs://b/.kserve/churn_model/2", 2)
    assert server.writes()[-1].body["spec"] == {"predictor": {
        "tensorflow": {"storageUri": "gs://b/.kserve/churn_model/2",
                       "resources": {"limits": {"nvidia.com/gpu": None}}},  # the GPU limit removed, the rest kept
        "canaryTrafficPercent": 10}}
    pred = isvc(server)["spec"]["predictor"]
    assert (pred["minReplicas"], pred["tensorflow"]["name"], pred["tensorflow"]["runtimeVersion"]) == (
        2, "kserve-container", "2.6.2")


def test_a_service_with_another_predictor_is_not_taken_over(server):
    server.put_object(KSERVE_GROUP, ISVC_PLURAL, {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"predictor": {"sklearn": {"storageUri": "gs://other/model"}}}})
    with pytest.raises(DeployError, match=r"team-a/churn-model has a sklearn predictor; deploy manages only tensorflow"):
        kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/1", 1)
    assert not server.writes()


def test_a_retry_that_finds_its_version_not_ready_goes_back_to_stable(server):
    """A deploy patched the service to version 2 and stopped before any alias moved; its retry finds
    version 2 failing: the service goes back to version 1, which the record still serves."""
    kserve.apply(config(server), MODEL, "gs://b/.kserve/churn_model/1", 1)
    kserve.apply(config(server, canary=10), MODEL, "gs://b/.kserve/churn_model/2", 2)
    server.controller.ready = False
    server.set_status(KSERVE_GROUP, ISVC_PLURAL, NS, NAME, {"conditions": [
        {"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": "Revision not found"}]})
    with pytest.raises(DeployError, match=r"did not become Ready within 0.2 s after finding version 2 on it "
                                          r"\(Ready is False: RevisionMissing: Revision not found\)$"):
        kserve.apply(config(server, canary=10, timeout_s=0.2), MODEL, "gs://b/.kserve/churn_model/2", 2)
    obj = isvc(server)
    assert obj["spec"]["predictor"]["tensorflow"]["storageUri"] == "gs://b/.kserve/churn_model/1"
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert obj["metadata"]["annotations"][kserve.A_VERSION] == "1"
