"""One pipeline step in a fresh process: ``python -X importtime -m tests.benchmarks.stage CONFIG.json STAGE``.

It does what ``python -m kfp.dsl.executor_main`` does for a task, minus KFP's JSON plumbing:
import the executor and the component module (the *start-up*), then call the wrapper's
``python_func`` with real artifacts under the work folder, wired as in the pipeline (an input
named ``train_data`` is the ``train_data`` output of the step that wrote it). Output metadata
is stored beside the artifacts so the next step's inputs carry it, as the executor does.

Only the standard library is imported before the clock marks (``t_ready``): start-up is
measured by the parent from spawn to ``t_ready``; ``-X importtime`` lines after the ``@@call``
marker on stderr are the imports the step does while it runs (lazy imports included).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

COMPONENTS = {
    "reference": ("components.validate.component", "champion_reference"),
    "ingest": ("components.ingest.component", "ingest_data"),
    "validate": ("components.validate.component", "validate_data"),
    "drift": ("components.validate.component", "drift_report"),
    "engineer": ("components.engineer.component", "engineer_features"),
    "train": ("components.train.component", "train_model"),
    "evaluate": ("components.evaluate.component", "evaluate_model"),
    "export": ("components.export.component", "export_model"),
    "compare": ("components.compare.component", "compare_models"),
    "deploy": ("components.deploy.component", "deploy_model"),
    # The registry lookup again, now that deploy has made a champion: what it costs on every
    # run after the first (MLflow's import and a download of the reference sample).
    "reference_champion": ("components.validate.component", "champion_reference"),
}
ORDER = list(COMPONENTS)
PIPELINE_STAGES = [s for s in ORDER if s != "reference_champion"]  # one per pipeline task
CALL_MARKER = "@@call"
META_FILE = "_outputs.json"


def _outputs_dir(work: str, stage: str) -> str:
    return os.path.join(work, "artifacts", stage)


# Inputs whose name differs from the output they take (as pipelines/training.py wires them):
# (stage, input) -> (producing stage, output).
RENAMED_INPUTS = {("deploy", "export_metrics"): ("export", "metrics")}


def _stage_outputs(work: str, stage: str) -> dict:
    path = os.path.join(_outputs_dir(work, stage), META_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)["outputs"]


def _produced(work: str) -> dict:
    """Output name -> (uri, metadata, class name) over every step that has run, later steps winning."""
    out: dict = {}
    for stage in ORDER:
        path = os.path.join(_outputs_dir(work, stage), META_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                out.update(json.load(fh)["outputs"])
    return out


def _arguments(func, stage: str, config: dict):
    """Keyword arguments of the wrapper: artifacts wired from earlier steps, parameters from config."""
    import inspect

    from kfp.dsl.types import type_annotations as ta

    from components._shared.params import TABLE

    work = config["work"]
    produced = _produced(work)
    for (consumer, name), (producer, output) in RENAMED_INPUTS.items():
        if consumer == stage and output in _stage_outputs(work, producer):
            produced[name] = _stage_outputs(work, producer)[output]
    kwargs, outputs = {}, {}
    for name, param in inspect.signature(func).parameters.items():
        ann = param.annotation
        if ta.is_artifact_wrapped_in_Input(ann):
            if name not in produced:
                raise RuntimeError(
                    f"{stage}: input artifact {name!r} was not produced by an earlier step"
                )
            cls = ta.get_io_artifact_class(ann)
            art = cls(
                name=name, uri=produced[name]["uri"], metadata=dict(produced[name]["metadata"])
            )
            kwargs[name] = art
        elif ta.is_artifact_wrapped_in_Output(ann):
            cls = ta.get_io_artifact_class(ann)
            uri = os.path.join(_outputs_dir(work, stage), name)
            os.makedirs(os.path.dirname(uri), exist_ok=True)
            art = cls(name=name, uri=uri, metadata={})
            kwargs[name] = outputs[name] = art
        elif name in config["params"]:
            kwargs[name] = config["params"][name]
        elif name in TABLE and TABLE[name].default is not None:  # as the pipeline passes it
            kwargs[name] = TABLE[name].default
        elif param.default is inspect.Parameter.empty:
            raise RuntimeError(f"{stage}: no value for the required parameter {name!r}")
    return kwargs, outputs


def _vm_hwm():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(config_path: str, stage: str) -> int:
    with open(config_path) as fh:
        config = json.load(fh)
    module_name, func_name = COMPONENTS[stage]
    result: dict = {"stage": stage, "pid": os.getpid()}
    try:
        # Start-up: what the executor imports before it calls the function.
        import importlib

        import kfp.dsl.executor_main  # noqa: F401

        component = getattr(importlib.import_module(module_name), func_name)
        result["t_ready"] = time.time()
        result["cpu_ready"] = (
            _cpu()
        )  # CPU seconds of start-up: less sensitive to other load than wall time
        result["tensorflow_at_start"] = "tensorflow" in sys.modules
        kwargs, outputs = _arguments(component.python_func, stage, config)
        sys.stderr.write(f"\n{CALL_MARKER}\n")
        sys.stderr.flush()
        result["t_call"] = time.time()
        result["cpu_call"] = _cpu()
        returned = component.python_func(**kwargs)
        result["t_done"] = time.time()
        result["cpu_done"] = _cpu()
        result["returned"] = (
            returned if isinstance(returned, (bool, int, float, str, type(None))) else str(returned)
        )
        result["tensorflow_imported"] = "tensorflow" in sys.modules
        result["heavy_modules"] = sorted(
            m
            for m in (
                "tensorflow",
                "keras",
                "evidently",
                "mlflow",
                "sklearn",
                "google.cloud.aiplatform",
                "pandas",
                "pyarrow",
            )
            if m in sys.modules
        )
        result["outputs"] = {
            n: {"uri": a.uri, "metadata": a.metadata, "class": type(a).__name__}
            for n, a in outputs.items()
        }
        with open(os.path.join(_outputs_dir(config["work"], stage), META_FILE), "w") as fh:
            json.dump(
                {"outputs": result["outputs"], "returned": result["returned"]}, fh, default=str
            )
        status = 0
    except BaseException as exc:  # reported to the parent, which decides
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-4000:]
        status = 1
    # VmHWM is this process's own peak since exec; ru_maxrss is not (Linux carries the
    # pre-exec high-water mark of the forked parent over into it).
    result["vm_hwm_bytes"] = _vm_hwm()
    result["ru_maxrss_self_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["ru_maxrss_children_bytes"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    )
    with open(os.path.join(config["work"], f"result-{stage}.json"), "w") as fh:
        json.dump(result, fh, default=str)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
