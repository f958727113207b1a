"""Vertex AI Model Registry and Endpoints (google-cloud-aiplatform), used when compiled for Vertex.

Versions of one model live under one parent (``parent_model``); the new version gets the
aliases ``champion`` and ``v<registry version>``; the endpoint receives it with a canary
share of traffic (100 = full rollout). Idempotent: a version whose labels already carry
the SavedModel's fingerprint is reused, and an endpoint that already serves it is left alone.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

logger = logging.getLogger(__name__)

# Prebuilt TF Serving container of Vertex AI Prediction (pinned; never :latest).
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:20240620_1536_RC00"


@dataclasses.dataclass
class VertexTarget:
    project: str
    location: str
    endpoint_name: str = ""
    canary_traffic_percent: int = 100
    serving_image: str = DEFAULT_SERVING_IMAGE
    machine_type: str = "n1-standard-4"
    credentials: Optional[object] = None


def _label_value(fp: str) -> str:
    return fp[:63].lower()


def upload_and_deploy(target: VertexTarget, model_name: str, artifact_uri: str, fingerprint: str,
                      description: str = "") -> dict:
    """Upload ``artifact_uri`` (a SavedModel folder on GCS) as a version of ``model_name`` and deploy it."""
    from google.cloud import aiplatform

    if not 0 < target.canary_traffic_percent <= 100:
        raise ValueError(f"canary_traffic_percent must be in 1..100, got {target.canary_traffic_percent}")
    aiplatform.init(project=target.project, location=target.location, credentials=target.credentials)
    parents = aiplatform.Model.list(filter=f'display_name="{model_name}"')
    parent = parents[0] if parents else None
    model = None
    if parent is not None:
        registry = aiplatform.models.ModelRegistry(parent)
        for v in registry.list_versions():
            m = registry.get_model(version=v.version_id)
            if (m.labels or {}).get("fingerprint") == _label_value(fingerprint):
                model = m
                logger.info("Vertex model %s version %s already holds this SavedModel", model_name, v.version_id)
                break
    if model is None:
        model = aiplatform.Model.upload(
            display_name=model_name,
            artifact_uri=artifact_uri,
            serving_container_image_uri=target.serving_image,
            parent_model=parent.resource_name if parent is not None else None,
            is_default_version=True,
            version_aliases=["champion"],
            labels={"fingerprint": _label_value(fingerprint), "managed-by": "kfp-tf-gate"},
            description=description[:2000],
        )
    result = {"model": model.resource_name, "version": getattr(model, "version_id", None), "endpoint": None}
    if target.endpoint_name:
        endpoints = aiplatform.Endpoint.list(filter=f'display_name="{target.endpoint_name}"')
        endpoint = endpoints[0] if endpoints else aiplatform.Endpoint.create(display_name=target.endpoint_name)
        served = [d for d in endpoint.list_models() if d.model == model.resource_name.split("@")[0]
                  and str(getattr(d, "model_version_id", "")) == str(result["version"])]
        if not served:
            pct = target.canary_traffic_percent if endpoint.list_models() else 100
            model.deploy(endpoint=endpoint, traffic_percentage=pct, machine_type=target.machine_type,
                         deployed_model_display_name=f"{model_name}-v{result['version']}")
        result["endpoint"] = endpoint.resource_name
    return result
