"""Compile the pipelines into compiled/<target>/<name>.yaml, byte-identical on every run."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable
from typing import Optional

from components._shared import io
from components._shared.images import DEFAULT_REGISTRY, ROLES, VERSION, Images
from pipelines.training import CompileOptions, build_pipeline

COMPILED_TARGETS = ("kubeflow", "vertex")
# Compile options that only the Kubeflow target has (Vertex AI Pipelines mount no PVCs).
KUBEFLOW_ONLY = ("serving_pvc", "mlflow_secret")
# ... and those only Vertex has (a Secret Manager secret instead of a Kubernetes one).
VERTEX_ONLY = ("vertex_mlflow_secret",)


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


def compile_all(out_dir: str = "compiled", images: Optional[Images] = None, check: bool = False,
                options: Optional[dict] = None) -> list[str]:
    """Write (or with ``check`` compare) every pipeline for every target. Returns stale/written paths."""
    images = images or Images()
    changed = []
    for target in COMPILED_TARGETS:
        only_other = VERTEX_ONLY if target == "kubeflow" else KUBEFLOW_ONLY
        given = {k: v for k, v in (options or {}).items() if k not in only_other}
        opts = CompileOptions(target=target, **given)
        for name, builder in _pipelines().items():
            text = compile_text(builder(opts), images)
            path = os.path.join(out_dir, target, f"{name}.yaml")
            old = open(path).read() if os.path.exists(path) else None
            if old == text:
                continue
            changed.append(path)
            if check:
                diff = list(difflib.unified_diff((old or "").splitlines(), text.splitlines(), path, "fresh", n=1))
                print("\n".join(diff[:40]))
                continue
            io.write_text_atomic(text, path)
    return changed
