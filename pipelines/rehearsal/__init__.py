"""Rehearse a compiled pipeline file locally the way Kubeflow Pipelines or Vertex AI runs it.

``python -m pipelines rehearse --target kubeflow|vertex``: kfp.local's orchestrator over the
compiled YAML, with isolated task pods, a KFP-launcher emulation over a GCS emulator, the
kfp-kubernetes platform spec (secrets, config maps, PVC mounts), a real MLflow server and
retries with optional preemption. See ``runner``, ``launcher``, ``platform``, ``services``.
"""
