"""Vertex AI Model Registry and Endpoints (google-cloud-aiplatform), used when compiled for Vertex.

Versions of one model live under one parent (``parent_model``); a new version gets the aliases
``champion`` and ``default`` (Vertex moves an alias away from the version that had it); the
endpoint receives it with a canary share of traffic (100 = full rollout; the first model on an
endpoint always gets 100) and the other deployed versions keep the rest, scaled.

Idempotent: a version whose ``fingerprint`` label carries the SavedModel's fingerprint is reused
(and given the two aliases if it lost them), and an endpoint that already serves that version is
left alone, so a retried deploy of the same version uploads and deploys nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from components._shared.errors import ConfigError, DeployError

logger = logging.getLogger(__name__)

# Prebuilt TF Serving container of Vertex AI Prediction (pinned; never :latest).
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:20240620_1536_RC00"
ALIASES = ("champion", "default")
MANAGED_BY = "kfp-tf-gate"


@dataclasses.dataclass
class VertexTarget:
    """Where a version goes on Vertex AI.

    Attributes:
        project: Google Cloud project (id or number).
        location: Vertex AI region, e.g. ``us-central1``.
        endpoint_name: Endpoint display name (created when missing); empty to register only.
        canary_traffic_percent: Share of the endpoint's traffic the new version gets, 1..100.
        serving_image: Serving container of the uploaded version (the prebuilt TF Serving image).
        machine_type: Machine type of the deployed model's replicas.
        credentials: google.auth credentials; None for the environment's (the run's service account).
        api_endpoint: API host instead of ``<location>-aiplatform.googleapis.com`` (a private or
            test endpoint; with the REST transport it may carry ``http://``). None in production.
        api_transport: ``"grpc"`` or ``"rest"``; None for the library's default (gRPC).
    """

    project: str
    location: str
    endpoint_name: str = ""
    canary_traffic_percent: int = 100
    serving_image: str = DEFAULT_SERVING_IMAGE
    machine_type: str = "n1-standard-4"
    credentials: Optional[object] = dataclasses.field(default=None, repr=False)
    api_endpoint: Optional[str] = None
    api_transport: Optional[str] = None


def _label_value(fp: str) -> str:
    return fp[:63].lower()


def _check(target: VertexTarget, model_name: str, artifact_uri: str, fingerprint: str) -> None:
    pct = target.canary_traffic_percent
    if isinstance(pct, bool) or not isinstance(pct, int) or not 1 <= pct <= 100:
        raise ConfigError(f"canary_traffic_percent must be a whole number from 1 to 100 (100 = full rollout), got {pct!r}")
    if not target.project or not target.location:
        raise ConfigError(f"Vertex AI needs a project and a location, got project={target.project!r}, "
                          f"location={target.location!r}")
    if not model_name or '"' in model_name:
        raise ConfigError(f"invalid Vertex AI model display name {model_name!r}")
    if '"' in target.endpoint_name:
        raise ConfigError(f"invalid Vertex AI endpoint display name {target.endpoint_name!r}")
    if not artifact_uri:
        raise ConfigError("no SavedModel URI to upload to Vertex AI")
    if not fingerprint:
        raise ConfigError("an empty SavedModel fingerprint cannot identify a Vertex AI model version")


def _one(found: list, kind: str, name: str):
    if len(found) > 1:
        raise DeployError(f"{len(found)} Vertex AI {kind} are named {name!r} "
                          f"({', '.join(f.resource_name for f in found)}); rename or delete all but one")
    return found[0] if found else None


def _resource_id(name: str) -> str:
    """``projects/P/locations/L/models/ID@V`` -> ``ID`` (P may be the project id or number)."""
    return name.rsplit("/", 1)[-1].partition("@")[0]


def _serves(deployed, model) -> bool:
    """Whether a DeployedModel is this version; Vertex records the model without version plus
    ``model_version_id``, a request may name ``<model>@<version>``: accept both."""
    version = deployed.model_version_id or deployed.model.partition("@")[2]
    return _resource_id(deployed.model) == model.name and version == model.version_id


def _find_version(parent, label: str):
    """The version of ``parent`` whose ``fingerprint`` label is ``label``, or None."""
    from google.cloud import aiplatform

    registry = aiplatform.models.ModelRegistry(parent)
    for info in registry.list_versions(filter=f'labels.fingerprint="{label}"'):
        model = registry.get_model(version=info.version_id)
        if (model.labels or {}).get("fingerprint") == label:  # do not trust the filter alone
            return model
    return None


# Appended to a refused-credentials sentence (401/403) of a deploy step.
DEPLOY_HINT = "; the run's service account needs roles/aiplatform.user (and read access to the artifact bucket)"


def _api_error(exc: BaseException, target: VertexTarget, step: str) -> DeployError:
    from components._shared.launch.vertex import vertex_error

    return vertex_error(exc, f"Vertex AI ({target.project}, {target.location})", step, DeployError, DEPLOY_HINT)


def upload_and_deploy(target: VertexTarget, model_name: str, artifact_uri: str, fingerprint: str,
                      description: str = "") -> dict:
    """Upload ``artifact_uri`` (a SavedModel folder on GCS) as a version of ``model_name`` and deploy it.

    ``description`` (the model card) becomes the uploaded version's description; a version found by
    its fingerprint (a retry) keeps the one it was uploaded with.

    Returns:
        ``{"model", "version", "endpoint", "deployed_model_id", "traffic_split", "uploaded", "deployed"}``;
        ``endpoint`` and the two after it are None/empty when no endpoint is configured.

    Raises:
        ConfigError: invalid settings, before any request is made.
        DeployError: Vertex AI refused or failed a step; the message names the step and the error.
    """
    _check(target, model_name, artifact_uri, fingerprint)
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    options = {k: v for k, v in (("api_endpoint", target.api_endpoint), ("api_transport", target.api_transport)) if v}
    aiplatform.init(project=target.project, location=target.location, credentials=target.credentials, **options)
    label = _label_value(fingerprint)
    step = f"looking up model {model_name!r}"
    try:
        parent = _one(aiplatform.Model.list(filter=f'display_name="{model_name}"'), "models", model_name)
        model = _find_version(parent, label) if parent is not None else None
        uploaded = model is None
        if model is None:
            step = f"uploading {artifact_uri} as a new version of model {model_name!r}"
            model = aiplatform.Model.upload(
                display_name=model_name,
                artifact_uri=artifact_uri,
                serving_container_image_uri=target.serving_image,
                parent_model=parent.resource_name if parent is not None else None,
                is_default_version=True,
                version_aliases=[a for a in ALIASES if a != "default"],
                labels={"fingerprint": label, "managed-by": MANAGED_BY},
                # The card as the model's description and as this version's own (the model's is shared
                # by its versions and shows the latest); the API documents no length limit for either.
                description=description or None,
                version_description=description or None,
            )
            logger.info("Vertex model %s: uploaded %s as version %s", model.resource_name, artifact_uri, model.version_id)
        else:
            logger.info("Vertex model %s version %s already holds this SavedModel", model.resource_name, model.version_id)
            missing = [a for a in ALIASES if a not in model.version_aliases]
            if missing:
                step = f"moving aliases {missing} to version {model.version_id} of model {model_name!r}"
                aiplatform.models.ModelRegistry(model).add_version_aliases(missing, model.version_id)
        result = {"model": model.resource_name, "version": model.version_id, "endpoint": None,
                  "deployed_model_id": None, "traffic_split": {}, "uploaded": uploaded, "deployed": False}
        if not target.endpoint_name:
            return result

        step = f"looking up endpoint {target.endpoint_name!r}"
        endpoint = _one(aiplatform.Endpoint.list(filter=f'display_name="{target.endpoint_name}"'),
                        "endpoints", target.endpoint_name)
        if endpoint is None:
            step = f"creating endpoint {target.endpoint_name!r}"
            endpoint = aiplatform.Endpoint.create(display_name=target.endpoint_name)
        served = [d for d in endpoint.list_models() if _serves(d, model)]
        if served:
            logger.info("endpoint %s already serves version %s (deployed model %s): nothing to deploy",
                        endpoint.resource_name, model.version_id, served[0].id)
        else:
            # The first model on an endpoint must take all traffic (the API rejects less).
            pct = target.canary_traffic_percent if sum(endpoint.gca_resource.traffic_split.values()) else 100
            step = (f"deploying version {model.version_id} of model {model_name!r} to endpoint "
                    f"{target.endpoint_name!r} with {pct}% of traffic")
            model.deploy(endpoint=endpoint, traffic_percentage=pct, machine_type=target.machine_type,
                         deployed_model_display_name=f"{model_name}-v{model.version_id}")
            served = [d for d in endpoint.gca_resource.deployed_models if _serves(d, model)]
            logger.info("endpoint %s: version %s deployed with %d%% of traffic", endpoint.resource_name,
                        model.version_id, pct)
            result["deployed"] = True
        result.update(endpoint=endpoint.resource_name, deployed_model_id=served[0].id if served else None,
                      traffic_split=dict(endpoint.gca_resource.traffic_split))
        return result
    except (api.GoogleAPICallError, api.RetryError, auth_exceptions.GoogleAuthError) as exc:
        raise _api_error(exc, target, step) from exc
    except ValueError as exc:  # the library's own argument checks (e.g. a local artifact_uri that does not exist)
        raise ConfigError(f"Vertex AI ({target.project}, {target.location}): {step}: {exc}") from exc
