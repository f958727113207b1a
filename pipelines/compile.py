"""Compile the pipelines into compiled/<target>/<name>.yaml, and each component into
compiled/components/<component>.yaml (for users' own pipelines), byte-identical on every run."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable
from typing import Optional

from components._shared import io
from components._shared.images import DEFAULT_REGISTRY, ROLES, VERSION, Images
from components.deploy.kserve_api import COMPILE_OPTIONS
from pipelines import training_rollout
from pipelines.training import CompileOptions, build_pipeline

COMPILED_TARGETS = ("kubeflow", "vertex")
COMPONENTS_DIR = "components"  # under the output folder: one YAML per component, whatever the target
# Stage packages, in pipeline order; each exports its components (see components/_shared/exports.py).
STAGES = ("ingest", "validate", "engineer", "train", "evaluate", "compare", "export", "deploy", "monitor", "predict",
          "rollout")
# Compile options that only the Kubeflow target has (Vertex AI Pipelines mount no PVCs; KServe and the
# Prometheus its rollout reads live in the cluster).
KUBEFLOW_ONLY = ("serving_pvc", "mlflow_secret", "deploy_target", *COMPILE_OPTIONS, "rollout_prometheus_url")
# ... and those only Vertex has (a Secret Manager secret instead of a Kubernetes one).
VERTEX_ONLY = ("vertex_mlflow_secret", "train_machine_type", "train_accelerator")


def _pipelines() -> dict[str, Callable[[CompileOptions], object]]:
    """Pipeline name -> builder taking compile options."""
    builders: dict = {"training": build_pipeline}
    try:
        from pipelines.monitoring import build_monitoring_pipeline
    except ImportError:
        pass
    else:
        builders["monitoring"] = build_monitoring_pipeline
    from pipelines.prediction import build_prediction_pipeline

    builders["prediction"] = build_prediction_pipeline
    return builders


def compile_text(pipeline_func, images: Images) -> str:
    from kfp import compiler

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pipeline.yaml")
        compiler.Compiler().compile(pipeline_func, package_path=path)
        with open(path) as fh:
            text = fh.read()
    for role in ROLES:
        default = f"{DEFAULT_REGISTRY}/kfp-tf-gate-{role}:{VERSION}"
        text = text.replace(default, images.uri(role))
    if ":latest" in text:
        raise ValueError("a compiled pipeline refers to a ':latest' image; pin image tags")
    return text


def components_to_compile() -> dict:
    """Component name (its function's name) -> component, from every stage package's exports."""
    import importlib

    found = {}
    for stage in STAGES:
        package = importlib.import_module(f"components.{stage}")
        found.update((name, getattr(package, name)) for name in package.__all__)
    return found


def _write_or_diff(text: str, path: str, check: bool, changed: list) -> None:
    """Write ``text`` to ``path`` (or with ``check`` print a diff) when it differs; record the path."""
    old = open(path).read() if os.path.exists(path) else None
    if old == text:
        return
    changed.append(path)
    if check:
        diff = list(difflib.unified_diff((old or "").splitlines(), text.splitlines(), path, "fresh", n=1))
        print("\n".join(diff[:40]))
        return
    io.write_text_atomic(text, path)


def compile_all(out_dir: str = "compiled", images: Optional[Images] = None, check: bool = False,
                options: Optional[dict] = None) -> list[str]:
    """Write (or with ``check`` compare) every pipeline for every target, and every component.
    Returns stale/written paths."""
    images = images or Images()
    changed = []
    for target in COMPILED_TARGETS:
        only_other = VERTEX_ONLY if target == "kubeflow" else KUBEFLOW_ONLY
        given = {k: v for k, v in training_rollout.options_for(target, options or {}).items() if k not in only_other}
        opts = CompileOptions(target=target, **given)
        for name, builder in _pipelines().items():
            _write_or_diff(compile_text(builder(opts), images), os.path.join(out_dir, target, f"{name}.yaml"),
                           check, changed)
    # Components carry no compile options (GPU, PVC, secrets are set on a pipeline's tasks), only images.
    for name, component in components_to_compile().items():
        _write_or_diff(compile_text(component, images), os.path.join(out_dir, COMPONENTS_DIR, f"{name}.yaml"),
                       check, changed)
    return changed
