"""The Kubernetes API stand-in (tests/fakes/k8s_api_server.py) behaves as the API server does for
custom objects, as seen through the real ``kubernetes`` client: what the KServe and TFJob tests
rely on."""

from __future__ import annotations

import json
import threading

import pytest

kubernetes = pytest.importorskip("kubernetes")

from kubernetes import watch  # noqa: E402
from kubernetes.client import ApiException, CustomObjectsApi  # noqa: E402

from tests.fakes.k8s_api_server import (  # noqa: E402
    ISVC_PLURAL,
    KSERVE_GROUP,
    K8sApiServer,
    kserve_controller,
)

G, V, NS, P = "kubeflow.org", "v1", "team-a", "tfjobs"


def tfjob(name: str = "job", **spec) -> dict:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "TFJob",
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, **spec},
    }


@pytest.fixture()
def server():
    with K8sApiServer() as srv:
        yield srv


@pytest.fixture()
def api(server):
    return CustomObjectsApi(server.api_client())


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_create_get_list_bookkeeping_and_errors(server, api):
    created = api.create_namespaced_custom_object(G, V, NS, P, {**tfjob(), "status": {"x": 1}})
    meta = created["metadata"]
    assert (meta["namespace"], meta["generation"], meta["resourceVersion"]) == (NS, 1, "1")
    assert (
        meta["uid"] and meta["creationTimestamp"] and "status" not in created
    )  # status subresource
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(G, V, NS, P, tfjob())
    assert exc.value.status == 409 and status_of(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as exc:
        api.get_namespaced_custom_object(G, V, NS, P, "nope")
    body = status_of(exc.value)
    assert (exc.value.status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    assert body["message"] == 'tfjobs.kubeflow.org "nope" not found'
    api.create_namespaced_custom_object(G, V, "other", P, tfjob())
    assert [
        o["metadata"]["namespace"] for o in api.list_namespaced_custom_object(G, V, NS, P)["items"]
    ] == [NS]
    assert len(api.list_cluster_custom_object(G, V, P)["items"]) == 2
    assert api.list_namespaced_custom_object(G, V, NS, P, label_selector="app=y")["items"] == []
    listed = api.list_namespaced_custom_object(G, V, NS, P)
    assert listed["kind"] == "TFJobList" and listed["metadata"]["resourceVersion"] == "2"


def test_patch_replace_generation_and_conflicts(server, api):
    api.create_namespaced_custom_object(G, V, NS, P, tfjob())
    server.set_status(G, P, NS, "job", {"conditions": [{"type": "Running", "status": "True"}]})
    got = api.get_namespaced_custom_object(G, V, NS, P, "job")
    assert got["metadata"]["generation"] == 1 and got["metadata"]["resourceVersion"] == "2"

    # merge-patch (what the 30.x client sends for a dict body): spec change bumps generation,
    # a status in the body is ignored on the main resource
    patched = api.patch_namespaced_custom_object(
        G,
        V,
        NS,
        P,
        "job",
        {"spec": {"runPolicy": {"cleanPodPolicy": None, "ttl": 5}}, "status": {}},
    )
    assert server.requests[-1].content_type == "application/merge-patch+json"
    assert patched["spec"]["runPolicy"] == {"ttl": 5} and patched["metadata"]["generation"] == 2
    assert patched["status"]["conditions"][0]["type"] == "Running"
    # label-only change: new resourceVersion, same generation
    patched = api.patch_namespaced_custom_object(
        G, V, NS, P, "job", {"metadata": {"labels": {"b": "c"}}}
    )
    assert patched["metadata"]["generation"] == 2 and patched["metadata"]["resourceVersion"] == "4"

    # json-patch when the client is told to send it
    jp = CustomObjectsApi(server.api_client())
    jp.api_client.set_default_header("Content-Type", "application/json-patch+json")
    patched = jp.patch_namespaced_custom_object(
        G,
        V,
        NS,
        P,
        "job",
        [
            {"op": "test", "path": "/spec/runPolicy/ttl", "value": 5},
            {"op": "replace", "path": "/spec/runPolicy/ttl", "value": 6},
            {"op": "add", "path": "/spec/tags", "value": ["a"]},
            {"op": "add", "path": "/spec/tags/-", "value": "b"},
        ],
    )
    assert patched["spec"]["runPolicy"]["ttl"] == 6 and patched["spec"]["tags"] == ["a", "b"]
    with pytest.raises(ApiException) as exc:
        jp.patch_namespaced_custom_object(
            G, V, NS, P, "job", [{"op": "test", "path": "/spec/runPolicy/ttl", "value": 5}]
        )
    assert exc.value.status == 422
    sp = CustomObjectsApi(server.api_client())
    sp.api_client.set_default_header("Content-Type", "application/strategic-merge-patch+json")
    with pytest.raises(ApiException) as exc:
        sp.patch_namespaced_custom_object(G, V, NS, P, "job", {"spec": {}})
    assert exc.value.status == 415  # as a real API server answers for a custom resource

    # replace needs the current resourceVersion
    current = api.get_namespaced_custom_object(G, V, NS, P, "job")
    stale = json.loads(json.dumps(current))
    current["spec"]["runPolicy"]["ttl"] = 7
    replaced = api.replace_namespaced_custom_object(G, V, NS, P, "job", current)
    assert replaced["spec"]["runPolicy"]["ttl"] == 7 and replaced["metadata"]["generation"] == 4
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object(G, V, NS, P, "job", stale)
    assert exc.value.status == 409 and status_of(exc.value)["reason"] == "Conflict"
    del stale["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object(G, V, NS, P, "job", stale)
    assert exc.value.status == 422

    # the status subresource changes status only
    st = api.patch_namespaced_custom_object_status(
        G, V, NS, P, "job", {"spec": {"x": 1}, "status": {"done": True}}
    )
    assert (
        st["status"]["done"] is True and "x" not in st["spec"] and st["metadata"]["generation"] == 4
    )

    deleted = api.delete_namespaced_custom_object(G, V, NS, P, "job")
    assert deleted["metadata"]["name"] == "job" and server.get(G, P, NS, "job") is None
    assert [r.method for r in server.writes(P)] == [
        "POST",
        "PATCH",
        "PATCH",
        "PATCH",
        "PATCH",
        "PATCH",
        "PUT",
        "PUT",
        "PUT",
        "PATCH",
        "DELETE",
    ]


def test_watch_streams_status_changes(server, api):
    api.create_namespaced_custom_object(G, V, NS, P, tfjob())
    threading.Timer(
        0.2,
        server.set_status,
        (G, P, NS, "job", {"conditions": [{"type": "Succeeded", "status": "True"}]}),
    ).start()
    events = []
    for ev in watch.Watch().stream(
        api.list_namespaced_custom_object, G, V, NS, P, timeout_seconds=2
    ):
        events.append((ev["type"], (ev["object"].get("status") or {}).get("conditions")))
        if ev["type"] == "MODIFIED":
            break
    assert events == [("ADDED", None), ("MODIFIED", [{"type": "Succeeded", "status": "True"}])]


def test_kserve_controller_traffic_split(server, api):
    server.on_write(KSERVE_GROUP, ISVC_PLURAL, kserve_controller())
    isvc = {
        "apiVersion": f"{KSERVE_GROUP}/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m"},
        "spec": {"predictor": {"tensorflow": {"storageUri": "gs://b/m/1"}}},
    }
    api.create_namespaced_custom_object(KSERVE_GROUP, "v1beta1", NS, ISVC_PLURAL, isvc)
    api.patch_namespaced_custom_object(
        KSERVE_GROUP,
        "v1beta1",
        NS,
        ISVC_PLURAL,
        "m",
        {
            "spec": {
                "predictor": {
                    "canaryTrafficPercent": 10,
                    "tensorflow": {"storageUri": "gs://b/m/2"},
                }
            }
        },
    )
    got = api.get_namespaced_custom_object(KSERVE_GROUP, "v1beta1", NS, ISVC_PLURAL, "m")
    split = {
        t["revisionName"]: t["percent"] for t in got["status"]["components"]["predictor"]["traffic"]
    }
    assert split == {"m-predictor-00002": 10, "m-predictor-00001": 90}
    assert {c["type"]: c["status"] for c in got["status"]["conditions"]}["Ready"] == "True"
    assert got["status"]["observedGeneration"] == got["metadata"]["generation"] == 2
    api.patch_namespaced_custom_object(
        KSERVE_GROUP,
        "v1beta1",
        NS,
        ISVC_PLURAL,
        "m",
        {"spec": {"predictor": {"canaryTrafficPercent": None}}},
    )
    got = api.get_namespaced_custom_object(KSERVE_GROUP, "v1beta1", NS, ISVC_PLURAL, "m")
    pred = got["status"]["components"]["predictor"]
    assert [(t["revisionName"], t["percent"]) for t in pred["traffic"]] == [
        ("m-predictor-00002", 100)
    ]
    assert (pred["latestRolledoutRevision"], pred["previousRolledoutRevision"]) == (
        "m-predictor-00002",
        "m-predictor-00001",
    )
