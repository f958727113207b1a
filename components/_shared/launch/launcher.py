"""The monitor's launcher: ``launcher(decision) -> run info`` for the target a check triggers.

Settings are checked when the launcher is built, before any data is read: a missing host or
project, an unknown parameter or a bad template fails at once. Every target has a server-side
duplicate check keyed by the run's name (see :func:`.package.run_name`): a KFP run with the same
display name in the experiment, a Vertex job with the same job id, a local run folder.

The ``local`` target (kfp.local on this machine) is not built here: it needs the CLI layer, so
the caller passes a :data:`LocalFactory` in (``pipelines/monitor.py`` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Optional

from components._shared.errors import ConfigError
from components._shared.launch.kfp import KfpSettings, kfp_start_run
from components._shared.launch.package import (
    fetch_pipeline_file,
    is_pipeline_file,
    pipeline_parameters,
    pipeline_spec,
    retrain_arguments,
    run_name,
    vertex_job_id,
)
from components._shared.launch.vertex import VertexSettings, vertex_start_run

TARGETS = ("none", "local", "kfp", "vertex")
LOCAL_ONLY = (
    "trigger 'local' runs on a workstation (python -m pipelines monitor); use kfp or vertex here"
)

# A decision (anything with ``dedupe_key`` and ``severity``) -> run info dict.
Launcher = Callable[[object], dict]
# (derived arguments, user parameters) -> launcher of a run on this machine.
LocalFactory = Callable[[dict, dict], Launcher]


def check_target(target: str, local: Optional[LocalFactory] = None) -> None:
    """Raise ConfigError for an unknown target, or ``local`` without a local factory."""
    if target not in TARGETS:
        raise ConfigError(f"unknown trigger {target!r}; expected one of {', '.join(TARGETS)}")
    if target == "local" and local is None:
        raise ConfigError(LOCAL_ONLY)


def monitor_launcher(
    target: str,
    model_name: str,
    data_uri: str,
    schema: dict,
    tracking_uri: str,
    user_params: Optional[dict] = None,
    kfp: Optional[KfpSettings] = None,
    vertex: Optional[VertexSettings] = None,
    local: Optional[LocalFactory] = None,
) -> Optional[Launcher]:
    """``launcher(decision) -> run info`` for :func:`components.monitor.core.run_monitor`.

    Args:
        target: none (no launcher), local, kfp or vertex.
        data_uri: Data the retraining run trains on.
        schema: The champion's schema (label, positive label and id column of the run).
        user_params: Further training-pipeline parameters (they win over derived ones).
        local: Builds the launcher of ``target="local"`` from (derived arguments, user_params).
    """
    check_target(target, local)
    if target == "none":
        return None
    user_params = dict(user_params or {})
    auto = retrain_arguments(data_uri, schema, model_name, tracking_uri)
    if not auto["label"] and "label" not in user_params:
        raise ConfigError("the champion's schema names no label column; pass --param label=COLUMN")
    if target == "local":
        return local(auto, user_params)
    if target == "kfp":
        return _kfp_launcher(kfp or KfpSettings(), model_name, auto, user_params)
    return _vertex_launcher(vertex or VertexSettings(), model_name, auto, user_params)


def _kfp_launcher(settings: KfpSettings, model_name: str, auto: dict, user: dict) -> Launcher:
    settings.resolved_host()
    settings.auth()
    spec = None
    if is_pipeline_file(settings.pipeline):  # fetched once, checked before any data is read
        settings = dataclasses.replace(settings, pipeline=fetch_pipeline_file(settings.pipeline))
        spec = pipeline_spec(settings.pipeline)
    arguments = pipeline_parameters(spec, auto, user)

    def launch_kfp(decision) -> dict:
        return kfp_start_run(settings, run_name(model_name, decision.dedupe_key), arguments)

    return launch_kfp


def _vertex_launcher(settings: VertexSettings, model_name: str, auto: dict, user: dict) -> Launcher:
    settings.resolved_project()
    if not settings.template or not is_pipeline_file(settings.template):
        raise ConfigError(
            "Vertex AI needs the compiled training pipeline as a gs:// or https:// URI or a path "
            f"(compiled/vertex/training.yaml), not {settings.template!r}"
        )
    # A local template is checked here; a gs:// or Artifact Registry one is checked by Vertex.
    remote = settings.template.startswith(("gs://", "https://"))
    spec = None if remote else pipeline_spec(fetch_pipeline_file(settings.template))
    arguments = pipeline_parameters(spec, auto, user)

    def launch_vertex(decision) -> dict:
        return vertex_start_run(
            settings,
            vertex_job_id(model_name, decision.dedupe_key),
            run_name(model_name, decision.dedupe_key),
            arguments,
            labels={
                "model": model_name,
                "dedupe-key": decision.dedupe_key,
                "severity": decision.severity,
                "started-by": "kfp-tf-gate-monitor",
            },
        )

    return launch_vertex
