"""KServe on Kubeflow: the deploy target that serves a version through an InferenceService.

The InferenceService (``serving.kserve.io/v1beta1``) has a ``tensorflow`` predictor (TF Serving)
whose ``storageUri`` is the pushed version. TF Serving wants numbered version folders under its
model base, so each version is published once more beside the serving base, as
``<base>/.kserve/<model>/<version>/<version>/`` (TF Serving and the serving record ignore
``.kserve``), and ``storageUri`` is ``<storage base>/.kserve/<model>/<version>``: one folder per
version, so two revisions never read the same files.

- First deploy: create the InferenceService (all traffic to it) and wait for ``Ready``.
- A new version: merge-patch ``storageUri`` with ``canaryTrafficPercent`` (the compile/pipeline
  parameter; 100 = full rollout, the key is removed); KServe starts a new revision and gives it that
  share, the last rolled-out revision keeps the rest. Wait for ``Ready`` at the new generation.
- The same version again: nothing is written (traffic is whatever the rollout made of it since).
- Not ``Ready`` within the timeout: the change is undone (a created service deleted, a patched
  one patched back) and :class:`DeployError` says why in one sentence; deploy then moves no alias
  and no record (it runs this before any, as it does for Vertex AI).

:class:`KServeTarget` moves the traffic of a rollout (``components.rollout.targets.TrafficTarget``):
``set_traffic(p)`` patches ``canaryTrafficPercent: p``; ``promote()`` removes it (the canary's
revision takes all traffic and becomes the rolled-out one); ``rollback(reason)`` sets it to 0 (the
last rolled-out revision serves everything, as KServe documents for a rollback).

Manifests are built with the kserve SDK's v1beta1 models and sent with the ``kubernetes`` client's
``CustomObjectsApi`` (in the cluster: the pod's service account; elsewhere: the kubeconfig). The
pod's service account needs a Role allowing ``get``, ``create``, ``patch`` and ``delete`` on
``inferenceservices`` in the namespace.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from typing import Optional

from components._shared.errors import ConfigError, DeployError, RolloutError
from components._shared.traffic import TrafficState
from components.deploy.kserve_api import (  # noqa: F401 (re-exported: the settings and the API's names)
    COMPILE_OPTIONS,
    ENV,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    KServeConfig,
    condition,
    wait_ready,
)
from components.deploy.kserve_api import call as _call
from components.deploy.kserve_api import custom_objects as _api
from components.deploy.kserve_api import get as _get
from components.deploy.kserve_api import patch as _patch

logger = logging.getLogger(__name__)

STORAGE_DIR = ".kserve"
# What this deploy recorded on the InferenceService (set only together with a new storageUri, since
# KServe copies annotations into the revision template and any change there starts a new revision).
A_VERSION = "kfp-tf-gate.io/version"  # registry version the spec's storageUri holds
A_STABLE = "kfp-tf-gate.io/stable-version"  # the version fully rolled out when that storageUri was set
A_STABLE_URI = "kfp-tf-gate.io/stable-storage-uri"
A_MODEL = "kfp-tf-gate.io/model"
OWNED = ("storageUri", "runtimeVersion", "resources")  # of spec.predictor.tensorflow
# spec.predictor keys that name a model server (KServe v1beta1); one of them serves
FRAMEWORKS = ("tensorflow", "model", "sklearn", "xgboost", "pytorch", "triton", "onnx", "pmml", "lightgbm",
              "paddle", "huggingface", "containers")
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,43}[a-z0-9])?")


def config_from_env(environ: dict, canary_traffic_percent: int = 100) -> Optional[KServeConfig]:
    """The KServe settings a compiled pipeline put on the deploy task (``KFP_TF_GATE_KSERVE``), or None."""
    text = environ.get(ENV, "")
    return KServeConfig.from_json(text, canary_traffic_percent) if text else None


def service_name(model_name: str, cfg: Optional[KServeConfig] = None) -> str:
    """The InferenceService name: ``cfg.name`` or the model name in DNS-1035 form (``_``/``.`` -> ``-``)."""
    name = (cfg.name if cfg and cfg.name else re.sub(r"[_.]", "-", model_name.lower()))
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{name!r} cannot name an InferenceService: use lowercase letters, digits and '-', "
                          f"starting with a letter, at most 45 characters (set --kserve-name)")
    return name


def check(cfg: KServeConfig) -> None:
    pct = cfg.canary_traffic_percent
    if isinstance(pct, bool) or not isinstance(pct, int) or not 1 <= pct <= 100:
        raise ConfigError(f"canary_traffic_percent must be a whole number from 1 to 100 (100 = full rollout), got {pct!r}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", cfg.namespace or ""):
        raise ConfigError(f"KServe needs a Kubernetes namespace (lowercase letters, digits, '-'), got {cfg.namespace!r}")
    if isinstance(cfg.gpu_count, bool) or not isinstance(cfg.gpu_count, int) or cfg.gpu_count < 0:
        raise ConfigError(f"the predictor's GPU count must be a whole number >= 0, got {cfg.gpu_count!r}")
    if cfg.storage_base and not re.match(r"(gs|s3|pvc|https?)://", cfg.storage_base):
        raise ConfigError(f"the KServe storage base must be a gs://, s3://, pvc:// or http(s):// URI, got {cfg.storage_base!r}")


# --------------------------------------------------------------------------- storage


def storage_uri(cfg: KServeConfig, serving_base: str, model_name: str, version) -> str:
    """The ``storageUri`` of a version: the folder holding ``<version>/`` (what TF Serving scans)."""
    base = cfg.storage_base or serving_base
    if not re.match(r"(gs|s3|pvc|https?)://", base or ""):
        raise ConfigError(f"KServe cannot read the serving base {serving_base!r}: set the KServe storage base "
                          f"to where it is in the cluster (e.g. pvc://CLAIM/path for a mounted volume)")
    return "/".join([base.rstrip("/"), STORAGE_DIR, model_name, str(version)])


def publish(saved_model_dir: str, serving_base: str, model_name: str, version) -> tuple[str, bool]:
    """Copy the SavedModel to ``<base>/.kserve/<model>/<version>/<version>/`` (atomically, as a push
    to the serving base; idempotent). Returns (path, created)."""
    from components.deploy.serving import join, push_to_serving

    return push_to_serving(saved_model_dir, join(serving_base, STORAGE_DIR, model_name), str(version), str(version))


def withdraw(serving_base: str, model_name: str, version) -> None:
    """Remove what :func:`publish` copied (the version was not put into service)."""
    from components.deploy.serving import join, remove_version

    remove_version(join(serving_base, STORAGE_DIR, model_name, str(version)))


# --------------------------------------------------------------------------- manifests


def _resources(cfg: KServeConfig) -> dict:
    amounts = {"cpu": cfg.cpu, "memory": cfg.memory}
    limits = dict(amounts, **({cfg.gpu_resource: str(cfg.gpu_count)} if cfg.gpu_count else {}))
    return {"requests": amounts, "limits": limits}


def _predictor_spec(cfg: KServeConfig, uri: str, canary: Optional[int] = None):
    from kserve import V1beta1PredictorSpec, V1beta1TFServingSpec
    from kubernetes.client import V1ResourceRequirements

    res = _resources(cfg)
    return V1beta1PredictorSpec(
        tensorflow=V1beta1TFServingSpec(storage_uri=uri, runtime_version=cfg.runtime_version or None,
                                        resources=V1ResourceRequirements(requests=res["requests"], limits=res["limits"])),
        service_account_name=cfg.service_account or None,
        canary_traffic_percent=canary)


def predictor(cfg: KServeConfig, uri: str, canary: Optional[int] = None) -> dict:
    """``spec.predictor`` as KServe's v1beta1 models serialize it."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(_predictor_spec(cfg, uri, canary))


def manifest(cfg: KServeConfig, name: str, model_name: str, uri: str, version) -> dict:
    """The whole InferenceService of a first deploy (no canary: the first version takes all traffic)."""
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec
    from kubernetes.client import ApiClient, V1ObjectMeta

    isvc = V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}", kind=KIND,
        metadata=V1ObjectMeta(name=name, namespace=cfg.namespace,
                              annotations={A_MODEL: model_name, A_VERSION: str(version), A_STABLE: str(version),
                                           A_STABLE_URI: uri}),
        spec=V1beta1InferenceServiceSpec(predictor=_predictor_spec(cfg, uri)))
    return ApiClient().sanitize_for_serialization(isvc)


def merge_diff(old: object, new: object) -> object:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (``None`` for a removed key)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    patch = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k not in old:
            patch[k] = v
        elif old[k] != v:
            patch[k] = merge_diff(old[k], v)
    return patch


def _traffic(obj: dict) -> list:
    pred = (((obj or {}).get("status") or {}).get("components") or {}).get("predictor") or {}
    return [{"revision": t.get("revisionName"), "percent": t.get("percent"), "latest": bool(t.get("latestRevision"))}
            for t in pred.get("traffic") or []]


def _result(obj: dict, action: str, version, uri: str) -> dict:
    meta, status = obj["metadata"], obj.get("status") or {}
    return {"name": meta["name"], "namespace": meta.get("namespace"), "action": action, "version": str(version),
            "storage_uri": uri, "canary_traffic_percent": obj["spec"]["predictor"].get("canaryTrafficPercent"),
            "traffic": _traffic(obj), "url": status.get("url"), "generation": meta.get("generation")}


def apply(cfg: KServeConfig, model_name: str, uri: str, version) -> dict:
    """Create or patch the InferenceService so its predictor serves ``uri`` (see the module docstring).

    Returns:
        ``{"name", "namespace", "action" ("created", "patched", "unchanged"), "version", "storage_uri",
        "canary_traffic_percent", "traffic", "url", "generation"}``.

    Raises:
        ConfigError: invalid settings, before any request.
        DeployError: Kubernetes refused a step, or the service was not Ready in time (then undone).
    """
    check(cfg)
    name = service_name(model_name, cfg)
    api = _api(cfg)
    current = _get(api, cfg, name)
    if current is None:
        body = manifest(cfg, name, model_name, uri, version)
        created = _call(cfg, name, "creating", api.create_namespaced_custom_object, GROUP, VERSION, cfg.namespace,
                        PLURAL, body)
        logger.info("created InferenceService %s/%s serving %s", cfg.namespace, name, uri)
        try:
            obj = wait_ready(api, cfg, name, created["metadata"]["generation"], f"creating it for version {version}")
        except DeployError as exc:
            _undo(api, cfg, name, exc, delete=True)
            raise
        return _result(obj, "created", version, uri)

    old_pred = (current.get("spec") or {}).get("predictor") or {}
    others = sorted(k for k in old_pred if k in FRAMEWORKS and k != "tensorflow")
    if others or "tensorflow" not in old_pred:
        raise DeployError(f"InferenceService {cfg.namespace}/{name} has a {', '.join(others) or 'non-tensorflow'} "
                          f"predictor; deploy manages only tensorflow predictors (set --kserve-name to another name)")
    annotations = current["metadata"].get("annotations") or {}
    same_uri = old_pred["tensorflow"].get("storageUri") == uri
    canary = None if cfg.canary_traffic_percent >= 100 else cfg.canary_traffic_percent
    want = predictor(cfg, uri, canary)
    # Only the fields this deploy owns change: what KServe's webhook defaulted (the container name, a
    # runtime version) or someone else set (minReplicas, ...) stays, so a repeated deploy writes nothing.
    new_pred = copy.deepcopy(old_pred)
    new_pred["tensorflow"].update({k: want["tensorflow"][k] for k in OWNED if k in want["tensorflow"]})
    if "serviceAccountName" in want:
        new_pred["serviceAccountName"] = want["serviceAccountName"]
    if same_uri:  # the same version again: its traffic is the rollout's business, not this deploy's
        if "canaryTrafficPercent" in old_pred:
            new_pred["canaryTrafficPercent"] = old_pred["canaryTrafficPercent"]
        if new_pred == old_pred:
            logger.info("InferenceService %s/%s already serves %s; nothing to change", cfg.namespace, name, uri)
            try:
                obj = wait_ready(api, cfg, name, current["metadata"]["generation"], f"finding version {version} on it")
            except DeployError as exc:
                # a retry after a deploy that patched the service and stopped before any alias moved:
                # back to the stable version, which is what the record still says
                stable_uri = annotations.get(A_STABLE_URI)
                if stable_uri and stable_uri != uri:
                    _undo(api, cfg, name, exc, patch={
                        "spec": {"predictor": {"tensorflow": {"storageUri": stable_uri}, "canaryTrafficPercent": None}},
                        "metadata": {"annotations": {A_VERSION: annotations.get(A_STABLE)}}})
                raise
            return _result(obj, "unchanged", version, uri)
        new_meta = {}
    else:
        new_pred.pop("canaryTrafficPercent", None)
        if canary is not None:
            new_pred["canaryTrafficPercent"] = canary
        old_canary = old_pred.get("canaryTrafficPercent")
        promoted = old_canary is None or old_canary >= 100  # the spec's version was fully rolled out
        stable, stable_uri = ((annotations.get(A_VERSION), (old_pred.get("tensorflow") or {}).get("storageUri"))
                              if promoted else (annotations.get(A_STABLE), annotations.get(A_STABLE_URI)))
        if canary is None:
            stable, stable_uri = str(version), uri
        new_meta = {"annotations": {A_MODEL: model_name, A_VERSION: str(version), A_STABLE: stable,
                                    A_STABLE_URI: stable_uri}}
    # resourceVersion: a precondition, so a change made since the read is a 409 Conflict, not overwritten
    patch = {"spec": {"predictor": merge_diff(old_pred, new_pred)},
             "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}}
    if new_meta:
        patch["metadata"]["annotations"] = {k: v for k, v in new_meta["annotations"].items()
                                            if annotations.get(k) != v}
    after = f"patching it to version {version}" + (f" with {canary}% of traffic" if canary and not same_uri else "")
    patched = _patch(api, cfg, name, patch, "patching")
    logger.info("patched InferenceService %s/%s: %s", cfg.namespace, name, json.dumps(patch))
    try:
        obj = wait_ready(api, cfg, name, patched["metadata"]["generation"], after)
    except DeployError as exc:
        undo = {"spec": {"predictor": merge_diff(new_pred, old_pred)}}
        if new_meta:
            undo["metadata"] = {"annotations": {k: annotations.get(k) for k in patch["metadata"]["annotations"]}}
        _undo(api, cfg, name, exc, patch=undo)
        raise
    return _result(obj, "patched", version, uri)


def _undo(api, cfg: KServeConfig, name: str, exc: DeployError, delete: bool = False,
          patch: Optional[dict] = None) -> None:
    """Take back a change that did not become Ready, so the service says what the record says."""
    try:
        if delete:
            _call(cfg, name, "deleting", api.delete_namespaced_custom_object, GROUP, VERSION, cfg.namespace, PLURAL, name)
        else:
            _patch(api, cfg, name, patch, "restoring")
        logger.info("undid the change of InferenceService %s/%s", cfg.namespace, name)
    except DeployError as undo_exc:
        logger.error("could not undo the change of InferenceService %s/%s: %s", cfg.namespace, name, undo_exc)
        exc.args = (f"{exc.args[0]}; undoing it failed too ({undo_exc}), so fix the InferenceService by hand",)


# --------------------------------------------------------------------------- rollouts


class KServeTarget:
    """The traffic of one InferenceService, as a rollout moves it
    (:class:`components._shared.traffic.TrafficTarget`)."""

    name = "kserve"

    def __init__(self, cfg: KServeConfig, model_name: str):
        self.cfg, self.model_name = cfg, model_name
        self.service = service_name(model_name, cfg)

    def _api(self):
        return _api(self.cfg)

    def _read(self, api) -> dict:
        try:
            obj = _get(api, self.cfg, self.service)
        except DeployError as exc:
            raise RolloutError(str(exc)) from exc
        if obj is None:
            raise RolloutError(f"there is no InferenceService {self.cfg.namespace}/{self.service} to move traffic on")
        return obj

    def _set_canary(self, percent: Optional[int], what: str) -> TrafficState:
        api = self._api()
        obj = self._read(api)
        pred = obj["spec"]["predictor"]
        if "canaryTrafficPercent" not in pred and percent is not None and percent != 0:
            raise RolloutError(f"InferenceService {self.cfg.namespace}/{self.service} has no canary to {what}")
        if pred.get("canaryTrafficPercent") != percent:
            body = {"spec": {"predictor": {"canaryTrafficPercent": percent}},
                    "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}}
            try:
                patched = _patch(api, self.cfg, self.service, body, "patching")
                wait_ready(api, self.cfg, self.service, patched["metadata"]["generation"], what)
            except DeployError as exc:
                raise RolloutError(str(exc)) from exc
        return self.describe()

    def set_traffic(self, canary_percent: float) -> TrafficState:
        pct = int(round(canary_percent))
        if not 0 < pct < 100:
            raise RolloutError(f"a traffic step gives the canary 1 to 99 %, got {canary_percent!r}")
        return self._set_canary(pct, f"giving the canary {pct}% of traffic")

    def promote(self) -> TrafficState:
        obj = self._read(self._api())
        if "canaryTrafficPercent" not in obj["spec"]["predictor"]:
            return self.describe()  # already all traffic on the spec's version
        return self._set_canary(None, "promoting the canary to all traffic")

    def rollback(self, reason: str) -> TrafficState:
        obj = self._read(self._api())
        pred = obj["spec"]["predictor"]
        if "canaryTrafficPercent" not in pred:
            raise RolloutError(f"InferenceService {self.cfg.namespace}/{self.service} has no canary to roll back "
                               f"(its version is fully rolled out)")
        logger.info("rolling back the canary of %s/%s: %s", self.cfg.namespace, self.service, reason)
        return self._set_canary(0, "rolling the canary back to 0% of traffic")

    def describe(self) -> TrafficState:
        obj = self._read(self._api())
        ann = obj["metadata"].get("annotations") or {}
        pct = obj["spec"]["predictor"].get("canaryTrafficPercent")
        version = ann.get(A_VERSION)
        split = ", ".join(f"{t['revision']} {t['percent']} %" for t in _traffic(obj)) or "no traffic reported yet"
        if pct is None or pct >= 100:
            return TrafficState(stable=version, canary=None, canary_percent=0.0,
                                detail=f"stable {version} (100 %); revisions: {split}")
        return TrafficState(stable=ann.get(A_STABLE), canary=version, canary_percent=float(pct),
                            detail=f"stable {ann.get(A_STABLE)} ({100 - pct} %), canary {version} ({pct} %); "
                                   f"revisions: {split}")
