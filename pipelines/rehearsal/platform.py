"""What a compiled pipeline file asks of the platform, per executor ("pod").

Reads the file the user uploads: the PipelineSpec (document 1) and, for Kubeflow, the
kfp-kubernetes platform spec (document 2, ``platforms.kubernetes.deploymentSpec.executors``).
Turns each executor's settings into what the rehearsal can honour locally:

- ``env`` of the container spec: set in the task's environment, as the kubelet would;
- ``secretAsEnv`` / ``configMapAsEnv``: each Kubernetes object stands as a JSON file
  ``<rehearsal>/secrets/<name>.json`` (``configmaps/<name>.json``) of key -> value; a missing
  object fails the task unless the entry is ``optional`` (as a pod would not start);
- ``pvcMount``: each claim is the folder ``<rehearsal>/pvc/<claim>``; its ``mountPath`` is mapped
  (see ``launcher``) because a task here cannot see an absolute path such as ``/models``;
- ``nodeSelector``, ``tolerations``, resources and accelerators cannot be honoured on one
  machine: they are recorded in the rehearsal's facts, not silently dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional

import yaml

from components._shared.errors import PipelineError

# Settings of the kfp-kubernetes platform spec the rehearsal applies; anything else is reported.
APPLIED = {"secretAsEnv", "configMapAsEnv", "pvcMount"}


@dataclasses.dataclass
class PodSpec:
    """The environment one executor's pod gets on the cluster, as far as it can be rehearsed."""

    executor: str
    image: str
    env: dict = dataclasses.field(default_factory=dict)
    secret_env: list = dataclasses.field(default_factory=list)  # (kind, name, {secretKey: envVar}, optional)
    pvc_mounts: list = dataclasses.field(default_factory=list)  # (claim, mount_path, sub_path)
    not_emulated: dict = dataclasses.field(default_factory=dict)

    def resolve_env(self, rehearsal_dir: str) -> dict:
        """Container env plus secret/config-map keys read from their stand-in files.

        Raises:
            PipelineError: A non-optional secret or config map has no file, or lacks a key.
        """
        env = dict(self.env)
        for kind, name, keys, optional in self.secret_env:
            path = os.path.join(rehearsal_dir, "secrets" if kind == "secret" else "configmaps", f"{name}.json")
            if not os.path.exists(path):
                if optional:
                    continue
                raise PipelineError(f"{self.executor}: the Kubernetes {kind} {name!r} does not exist "
                                    f"(a pod would not start; the rehearsal reads it from {path})")
            with open(path) as fh:
                data = json.load(fh)
            for key, var in keys.items():
                if key not in data:
                    if optional:
                        continue
                    raise PipelineError(f"{self.executor}: the Kubernetes {kind} {name!r} has no key {key!r}")
                env[var] = str(data[key])
        return env

    def facts(self) -> dict:
        return {
            "image": self.image,
            "env": sorted(self.env),
            "secrets_as_env": [{"kind": k, "name": n, "env": sorted(keys.values()), "optional": o}
                               for k, n, keys, o in self.secret_env],
            "pvc_mounts": [{"claim": c, "mount_path": m, "sub_path": s} for c, m, s in self.pvc_mounts],
            "not_emulated": self.not_emulated,
        }


@dataclasses.dataclass
class CompiledPipeline:
    path: str
    sha256: str
    spec: dict
    platform: dict
    pods: dict  # executor label -> PodSpec

    @property
    def name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    def executor_of_component(self, component: str) -> Optional[str]:
        comp = self.spec.get("components", {}).get(component) or {}
        return comp.get("executorLabel")

    def retry_policies(self) -> dict:
        """Task name -> retryPolicy, over the root DAG and every sub-DAG."""
        out = {}
        dags = [self.spec["root"]] + list(self.spec.get("components", {}).values())
        for comp in dags:
            for name, task in (comp.get("dag") or {}).get("tasks", {}).items():
                if task.get("retryPolicy"):
                    out[name] = task["retryPolicy"]
        return out

    def parameters(self) -> dict:
        return self.spec["root"].get("inputDefinitions", {}).get("parameters", {})


def _constant(param: Optional[dict], arguments: dict) -> Optional[str]:
    """The value of a kfp-kubernetes name parameter, when it can be known before the run."""
    if not param:
        return None
    if "runtimeValue" in param:
        return param["runtimeValue"].get("constant")
    name = param.get("componentInputParameter")
    if name:
        return arguments.get(name.split("pipelinechannel--")[-1])
    return None


def load(path: str, arguments: Optional[dict] = None) -> CompiledPipeline:
    """Parse a compiled pipeline file (one or two YAML documents).

    Raises:
        PipelineError: The file is missing or is not a compiled pipeline.
    """
    arguments = arguments or {}
    if not os.path.isfile(path):
        raise PipelineError(f"no compiled pipeline at {path} (python -m pipelines compile writes it)")
    with open(path, "rb") as fh:
        raw = fh.read()
    docs = [d for d in yaml.safe_load_all(raw) if d]
    if not docs or "deploymentSpec" not in docs[0]:
        raise PipelineError(f"{path} is not a compiled KFP pipeline (no deploymentSpec)")
    spec = docs[0]
    platform = {}
    for doc in docs[1:]:
        platform.update(doc.get("platforms") or {})
    k8s = ((platform.get("kubernetes") or {}).get("deploymentSpec") or {}).get("executors") or {}
    pods = {}
    for label, executor in spec["deploymentSpec"]["executors"].items():
        container = executor.get("container") or {}
        pod = PodSpec(executor=label, image=container.get("image", ""),
                      env={e["name"]: e.get("value", "") for e in container.get("env") or []})
        resources = container.get("resources")
        if resources:
            pod.not_emulated["resources"] = resources
        for key, value in (k8s.get(label) or {}).items():
            if key == "secretAsEnv" or key == "configMapAsEnv":
                kind = "secret" if key == "secretAsEnv" else "configmap"
                for entry in value:
                    name = (entry.get("secretName") or entry.get("configMapName")
                            or _constant(entry.get("secretNameParameter") or entry.get("configMapNameParameter"),
                                         arguments))
                    keys = {k.get("secretKey") or k.get("configMapKey"): k["envVar"] for k in entry.get("keyToEnv", [])}
                    pod.secret_env.append((kind, name, keys, bool(entry.get("optional"))))
            elif key == "pvcMount":
                for entry in value:
                    claim = (entry.get("constant") or entry.get("pvcName")
                             or _constant(entry.get("pvcNameParameter"), arguments))
                    if not claim:
                        raise PipelineError(f"{label}: a pvcMount whose claim name is only known at run time "
                                            "cannot be rehearsed")
                    pod.pvc_mounts.append((claim, entry["mountPath"], entry.get("subPath", "")))
            else:
                pod.not_emulated[key] = value
        pods[label] = pod
    return CompiledPipeline(path=os.path.abspath(path), sha256=hashlib.sha256(raw).hexdigest(),
                            spec=spec, platform=platform, pods=pods)
