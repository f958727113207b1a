"""Talking to the Kubernetes API about one InferenceService (``serving.kserve.io/v1beta1``): the
client, errors as one sentence (with the RBAC the pipeline's service account needs), reads,
merge-patches and the wait for ``Ready``. Used by :mod:`components.deploy.kserve`."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Optional

from components._shared.errors import DeployError

if TYPE_CHECKING:
    from components.deploy.kserve import KServeConfig

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
RBAC_HINT = ("; the pipeline's service account needs a Role allowing get, create, patch and delete on "
             "inferenceservices.serving.kserve.io in namespace {ns}")


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
