"""Vertex AI deploy: the real google-cloud-aiplatform client (REST transport) against a local
HTTP server speaking the Vertex AI v1 API (tests/fakes/vertex_api_server.py)."""

from __future__ import annotations

import copy

import pytest

from components._shared.errors import ConfigError, DeployError
from components.deploy.vertex import DEFAULT_SERVING_IMAGE, VertexTarget, upload_and_deploy
from tests.fakes.vertex_api_server import VertexApiServer

pytest.importorskip("google.cloud.aiplatform")

LOCATION = "us-central1"
MODEL = "churn-model"
ENDPOINT = "churn-endpoint"
FP1, FP2 = "a" * 64, "b" * 64


@pytest.fixture
def server():
    """A fresh stand-in per test; aiplatform's process-wide config is restored afterwards."""
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    with VertexApiServer(page_size=2) as srv:  # small pages: the client must follow nextPageToken
        yield srv
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def target(server: VertexApiServer, canary: int = 100, endpoint: str = ENDPOINT) -> VertexTarget:
    from google.auth.credentials import AnonymousCredentials

    return VertexTarget(server.project, LOCATION, endpoint, canary, credentials=AnonymousCredentials(),
                        api_endpoint=server.url, api_transport="rest")


def deploy(server: VertexApiServer, fp: str, canary: int = 100, **kw) -> dict:
    return upload_and_deploy(target(server, canary, **kw), MODEL, f"gs://bucket/models/{fp[:8]}", fp, "card")


def snapshot(server: VertexApiServer) -> tuple:
    return copy.deepcopy(server.models), copy.deepcopy(server.endpoints)


def test_first_deploy_uploads_version_1_and_gives_it_all_traffic(server):
    out = deploy(server, FP1, canary=10)  # nothing on the endpoint yet: a canary share would be refused

    (upload,) = server.calls("UploadModel")
    assert "parentModel" not in upload.body
    assert upload.body["model"]["artifactUri"] == "gs://bucket/models/aaaaaaaa"
    assert upload.body["model"]["versionDescription"] == upload.body["model"]["description"] == "card"
    (v1,) = server.model_versions(LOCATION, MODEL)
    assert v1["versionId"] == "1" and sorted(v1["versionAliases"]) == ["champion", "default"]
    assert v1["labels"] == {"fingerprint": FP1[:63], "managed-by": "kfp-tf-gate"}
    ep = server.endpoint(LOCATION, ENDPOINT)
    (dm,) = ep["deployedModels"]
    assert (dm["model"], dm["modelVersionId"]) == (v1["name"], "1")
    assert ep["trafficSplit"] == {dm["id"]: 100}
    assert out == {"model": v1["name"], "version": "1", "endpoint": ep["name"], "deployed_model_id": dm["id"],
                   "traffic_split": {dm["id"]: 100}, "uploaded": True, "deployed": True}
    # names come back with the project number, and the client kept using them
    assert out["model"].startswith(f"projects/{server.project_number}/")


def test_new_fingerprint_is_version_2_of_the_same_parent_with_a_canary_split(server):
    first = deploy(server, FP1)
    out = deploy(server, FP2, canary=10)

    upload = server.calls("UploadModel")[-1].body
    assert upload["parentModel"] == first["model"]
    assert "champion" in upload["model"]["versionAliases"]
    assert upload["model"]["containerSpec"]["imageUri"] == DEFAULT_SERVING_IMAGE
    assert upload["model"]["labels"]["fingerprint"] == FP2[:63]
    assert (out["model"], out["version"]) == (first["model"], "2")
    v1, v2 = server.model_versions(LOCATION, MODEL)
    assert v1["versionAliases"] == [] and sorted(v2["versionAliases"]) == ["champion", "default"]

    ep = server.endpoint(LOCATION, ENDPOINT)
    assert len(server.calls("CreateEndpoint")) == 1
    by_version = {d["modelVersionId"]: d["id"] for d in ep["deployedModels"]}
    assert ep["trafficSplit"] == {by_version["1"]: 90, by_version["2"]: 10}
    assert out["traffic_split"] == ep["trafficSplit"] and out["deployed_model_id"] == by_version["2"]
    assert server.calls("DeployModel")[-1].body["trafficSplit"] == {by_version["1"]: 90, "0": 10}


def test_same_fingerprint_again_changes_nothing(server):
    deploy(server, FP1)
    second = deploy(server, FP2, canary=10)
    before, n_requests = snapshot(server), len(server.requests)

    again = deploy(server, FP2, canary=10)

    assert snapshot(server) == before
    new = server.requests[n_requests:]
    assert {r.method for r in new} == {"GET"}, [(r.method, r.path) for r in new]
    assert again == {**second, "uploaded": False, "deployed": False}


def test_retry_after_a_failed_deploy_reuses_the_uploaded_version(server):
    deploy(server, FP1)
    server.fail_operation["DeployModel"] = ("RESOURCE_EXHAUSTED", "The following quota metrics exceed quota "
                                                                  "limits: aiplatform.googleapis.com/custom_model_serving_cpus")
    with pytest.raises(DeployError, match=r"deploying version 2 .*with 10% of traffic.*RESOURCE_EXHAUSTED.*quota"):
        deploy(server, FP2, canary=10)
    ep = server.endpoint(LOCATION, ENDPOINT)
    assert [d["modelVersionId"] for d in ep["deployedModels"]] == ["1"]
    assert list(ep["trafficSplit"].values()) == [100]

    del server.fail_operation["DeployModel"]
    out = deploy(server, FP2, canary=10)
    assert len(server.calls("UploadModel")) == 2 and out["uploaded"] is False and out["deployed"] is True
    assert sorted(server.endpoint(LOCATION, ENDPOINT)["trafficSplit"].values()) == [10, 90]


def test_promoting_an_older_fingerprint_again_moves_the_aliases_back_only(server):
    deploy(server, FP1)
    deploy(server, FP2, canary=10)
    split = dict(server.endpoint(LOCATION, ENDPOINT)["trafficSplit"])

    out = deploy(server, FP1, canary=10)

    assert (out["version"], out["uploaded"], out["deployed"]) == ("1", False, False)
    assert len(server.calls("UploadModel")) == 2 and len(server.calls("DeployModel")) == 2
    (merge,) = server.calls("MergeVersionAliases")
    assert merge.path.endswith("@1:mergeVersionAliases")
    assert sorted(merge.body["versionAliases"]) == ["champion", "default"]
    v1, v2 = server.model_versions(LOCATION, MODEL)
    assert sorted(v1["versionAliases"]) == ["champion", "default"] and v2["versionAliases"] == []
    assert server.endpoint(LOCATION, ENDPOINT)["trafficSplit"] == split


def test_register_only_without_endpoint(server):
    out = deploy(server, FP1, endpoint="")
    assert out["version"] == "1" and out["endpoint"] is None
    assert not server.calls("ListEndpoints") and not server.endpoints


@pytest.mark.parametrize("canary", [0, 101, -5, 10.5, True, "10"])
def test_invalid_canary_percent_fails_before_any_request(server, canary):
    with pytest.raises(ConfigError, match=r"canary_traffic_percent must be a whole number from 1 to 100"):
        upload_and_deploy(target(server, canary), MODEL, "gs://bucket/m", FP1)
    assert server.requests == []


@pytest.mark.parametrize("status, message, expect", [
    (500, "Internal error encountered.", r"500 INTERNAL: .*Internal error encountered"),
    (403, "Permission 'aiplatform.models.upload' denied on resource '//aiplatform.googleapis.com/projects/demo-project'",
     r"403 PERMISSION_DENIED: .*aiplatform\.models\.upload.*roles/aiplatform\.user"),
])
def test_upload_error_surfaces_and_nothing_is_deployed(server, status, message, expect):
    server.fail["UploadModel"] = (status, message)
    with pytest.raises(DeployError, match=rf"Vertex AI \(demo-project, us-central1\): uploading "
                                          rf"gs://bucket/models/aaaaaaaa as a new version of model 'churn-model' failed \({expect}"):
        deploy(server, FP1)
    assert len(server.calls("UploadModel")) == 1  # no retry of a non-idempotent upload
    assert not server.models and not server.endpoints
    assert not server.calls("DeployModel") and not server.calls("CreateEndpoint")


def test_two_models_with_the_same_display_name_are_refused(server):
    from google.cloud import aiplatform

    deploy(server, FP1, endpoint="")
    # someone else uploads an unrelated model under the same display name (no parent)
    aiplatform.Model.upload(display_name=MODEL, artifact_uri="gs://bucket/theirs",
                            serving_container_image_uri=DEFAULT_SERVING_IMAGE)
    with pytest.raises(DeployError, match=r"2 Vertex AI models are named 'churn-model'"):
        deploy(server, FP2)
    assert len(server.calls("UploadModel")) == 2
