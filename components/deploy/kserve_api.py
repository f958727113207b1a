"""The KServe settings (:class:`KServeConfig`, the one definition that compile options and deploy
share) and talking to the Kubernetes API about one InferenceService (``serving.kserve.io/v1beta1``):
the client, errors as one sentence (with the RBAC the pipeline's service account needs), reads,
merge-patches and the wait for ``Ready``. Used by :mod:`components.deploy.kserve` (which re-exports
:class:`KServeConfig`); this module imports nothing of it."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Optional

from components._shared.errors import ConfigError, DeployError

ENV = "KFP_TF_GATE_KSERVE"  # JSON of KServeConfig, set on the deploy task by `compile --deploy-target kserve`

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
RBAC_HINT = ("; the pipeline's service account needs a Role allowing get, create, patch and delete on "
             "inferenceservices.serving.kserve.io in namespace {ns}")


@dataclasses.dataclass
class KServeConfig:
    """Where and how a version is served by KServe.

    Attributes:
        namespace: Kubernetes namespace of the InferenceService (the Kubeflow profile's).
        service_account: Service account of the predictor pods (credentials for ``storageUri``:
            GCS/S3 secrets as KServe documents); empty for the namespace's default.
        runtime_version: TF Serving image tag of the predictor (e.g. ``2.14.1``); empty for the
            cluster's ServingRuntime default.
        storage_base: The serving base as KServe's storage initializer reads it (``gs://``,
            ``s3://``, ``pvc://CLAIM/path``); empty: the serving base itself (must be gs:// or s3://).
        cpu / memory: Requests and limits of the predictor container.
        gpu_count: GPUs (limit of ``gpu_resource``) of the predictor container; 0 for none.
        gpu_resource: The extended resource name of a GPU.
        canary_traffic_percent: Share of traffic a new version gets, 1..100 (100 = full rollout).
        name: InferenceService name; empty: derived from the model name.
        timeout_s / poll_s: How long to wait for ``Ready``, and how often to look.
        api_client: A ``kubernetes.client.ApiClient``; None: in-cluster config, else the kubeconfig.
    """

    namespace: str
    service_account: str = ""
    runtime_version: str = ""
    storage_base: str = ""
    cpu: str = "1"
    memory: str = "2Gi"
    gpu_count: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    canary_traffic_percent: int = 100
    name: str = ""
    timeout_s: float = 600.0
    poll_s: float = 5.0
    api_client: Optional[object] = dataclasses.field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        """The settings a compiled pipeline carries (no client, no canary share: that is a run parameter)."""
        return json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                           if f.name not in ("api_client", "canary_traffic_percent")}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, canary_traffic_percent: int = 100) -> KServeConfig:
        try:
            data = json.loads(text)
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ConfigError(f"unknown KServe settings {unknown} in {ENV}")
            return cls(**data, canary_traffic_percent=canary_traffic_percent)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{ENV} is not a JSON object of KServe settings: {exc}") from exc


# The settings a compile fixes (`compile --deploy-target kserve --kserve-*`): compile option -> KServeConfig
# field. pipelines.training.CompileOptions takes these fields, with these defaults, from here.
COMPILE_OPTIONS = {"kserve_namespace": "namespace", "kserve_service_account": "service_account",
                   "kserve_runtime_version": "runtime_version", "kserve_storage_base": "storage_base",
                   "kserve_name": "name", "kserve_cpu": "cpu", "kserve_memory": "memory",
                   "kserve_gpu_count": "gpu_count", "kserve_timeout": "timeout_s"}


def custom_objects(cfg: KServeConfig):
    """``CustomObjectsApi`` on ``cfg.api_client``, else the in-cluster config, else the kubeconfig."""
    from kubernetes import client, config

    api_client = cfg.api_client
    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def api_error(exc: BaseException, cfg: KServeConfig, name: str, step: str) -> DeployError:
    status = getattr(exc, "status", None)
    message = str(exc)
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message") or message
        except (ValueError, AttributeError):
            message = str(body)[:300]
    where = f"InferenceService {cfg.namespace}/{name}"
    if status in (401, 403):
        err = DeployError(f"Kubernetes refused {step} {where} ({status}: {message})" + RBAC_HINT.format(ns=cfg.namespace))
    elif status == 404 and step == "creating":
        err = DeployError(f"Kubernetes has no {GROUP}/{VERSION} API or no namespace {cfg.namespace!r} "
                          f"for {step} {where} ({message}); is KServe installed?")
    elif status:
        err = DeployError(f"Kubernetes refused {step} {where} ({status}: {message})")
    else:
        err = DeployError(f"Kubernetes could not be reached for {step} {where}: {message.splitlines()[0] if message else exc!r}")
    err.transient = status is None or status in (408, 409, 429) or status >= 500  # 409: changed meanwhile
    return err


def call(cfg: KServeConfig, name: str, step: str, fn, *args):
    from kubernetes.client import ApiException

    try:
        return fn(*args)
    except ApiException as exc:
        raise api_error(exc, cfg, name, step) from exc
    except OSError as exc:  # urllib3's connection errors are OSErrors
        raise api_error(exc, cfg, name, step) from exc


def get(api, cfg: KServeConfig, name: str) -> Optional[dict]:
    from kubernetes.client import ApiException

    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, cfg.namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise api_error(exc, cfg, name, "reading") from exc
    except OSError as exc:
        raise api_error(exc, cfg, name, "reading") from exc


def patch(api, cfg: KServeConfig, name: str, body: dict, step: str) -> dict:
    # kubernetes 30.x sends a dict body of patch_*_custom_object as application/merge-patch+json
    return call(cfg, name, step, api.patch_namespaced_custom_object, GROUP, VERSION, cfg.namespace, PLURAL, name, body)


def condition(obj: dict, kind: str = "Ready") -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


def wait_ready(api, cfg: KServeConfig, name: str, generation: int, after: str) -> dict:
    """Poll until the controller has seen ``generation`` and says ``Ready``; DeployError at the timeout."""
    deadline = time.monotonic() + cfg.timeout_s
    while True:
        obj = get(api, cfg, name)
        if obj is None:
            raise DeployError(f"InferenceService {cfg.namespace}/{name} disappeared while waiting for it after {after}")
        status = obj.get("status") or {}
        ready = condition(obj)
        if (status.get("observedGeneration") or 0) >= generation and ready.get("status") == "True":
            return obj
        left = deadline - time.monotonic()
        if left <= 0:
            seen = status.get("observedGeneration")
            why = (f"Ready is {ready.get('status')}: {ready.get('reason') or 'no reason'}"
                   f"{': ' + ready['message'] if ready.get('message') else ''}") if ready else "no Ready condition yet"
            if seen is not None and seen < generation:
                why += f"; the controller has seen generation {seen} of {generation}"
            raise DeployError(f"InferenceService {cfg.namespace}/{name} did not become Ready within "
                              f"{cfg.timeout_s:g} s after {after} ({why})")
        time.sleep(min(cfg.poll_s, left))
