"""Run the training pipeline on this machine with kfp.local (SubprocessRunner, no containers).

Each task runs as ``python -m kfp.dsl.executor_main`` in a subprocess of the current
virtualenv: the same wrapper code as in the cluster. Task output goes to
``<run>/pipeline.log``; the console gets a line per step as it ends (pipelines/progress.py), then
a summary, or the one sentence that ended the run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import secrets
import sys
import time
from typing import Optional

from components._shared.errors import PipelineError

RUNS_DIR_LOCK = ".lock"  # in the runs dir; holds a note of the run holding it
RUNS_DIR_LOCK_SECONDS = 900.0  # how long a second run waits for the first (about one run)
LOCK_TIMEOUT_ENV = "KFP_TF_GATE_LOCK_TIMEOUT"
ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*Error|\w*Exception): (.+)$")


def default_tracking_uri(runs_dir: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.abspath(os.path.join(runs_dir, 'mlflow.db'))}"


def registry_model_name(given: Optional[str], serving_base: str, tracking_uri: str) -> str:
    """``given``, else the only model served from ``serving_base``, else the only registered one.

    Raises:
        ConfigError: None or several to choose from (one sentence asking for --model-name).
    """
    from components._shared.errors import ConfigError
    from components._shared.registry import registered_model_names
    from components._shared.serving_state import served_models

    if given:
        return given
    names, where = served_models(serving_base), f"the serving base {serving_base}"
    if not names:
        names, where = registered_model_names(tracking_uri), f"the registry at {tracking_uri}"
    if len(names) == 1:
        return names[0]
    if not names:
        served = f"served from {serving_base} or " if serving_base else ""
        raise ConfigError(f"no model is {served}registered at {tracking_uri}: name one with --model-name")
    raise ConfigError(f"{where} holds several models ({', '.join(names)}): say which with --model-name")


def runs_dir_lock(runs_dir: str, timeout: Optional[float] = None):
    """The lock of a runs dir, held by every command that may change what it serves (a run,
    rollback, approve): a second one waits for the first, up to ``timeout`` seconds
    (default: $KFP_TF_GATE_LOCK_TIMEOUT, else RUNS_DIR_LOCK_SECONDS), then fails with one sentence."""
    from components._shared.lock import hold

    runs_dir = os.path.abspath(runs_dir)
    if timeout is None:
        env = os.environ.get(LOCK_TIMEOUT_ENV, "")
        try:
            timeout = float(env) if env else RUNS_DIR_LOCK_SECONDS
        except ValueError:
            raise PipelineError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds, got {env!r}") from None
    return hold(os.path.join(runs_dir, RUNS_DIR_LOCK), f"the runs dir {runs_dir}", timeout,
                advice="wait for it to finish, or stop it, and try again "
                       f"(a run waits up to {timeout:g} s; {LOCK_TIMEOUT_ENV} sets how long)")


def new_run_id() -> str:
    return datetime.datetime.now().strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@contextlib.contextmanager
def output_to(path: str, quiet: bool, console_fd: Optional[int] = None):
    """Send fd 1/2 (this process and its task subprocesses) to a log file.

    Yields a text stream on what ``console_fd`` (1 or 2) was before the redirect, for progress
    lines, or None when ``console_fd`` is None.
    """
    if not quiet:
        yield {1: sys.stdout, 2: sys.stderr}.get(console_fd)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = None
    if console_fd in (1, 2):
        original = sys.stdout if console_fd == 1 else sys.stderr
        console = os.fdopen(os.dup(saved[console_fd - 1]), "w", buffering=1,
                            encoding=getattr(original, "encoding", None) or "utf-8", errors="replace")
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            if console is not None:
                console.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def failure_message(log_path: str) -> Optional[str]:
    """The last exception line a task printed (the one sentence naming the problem)."""
    if not os.path.exists(log_path):
        return None
    with open(log_path, errors="replace") as fh:
        lines = fh.read().splitlines()
    for line in reversed(lines):
        clean = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = ERROR_LINE.match(clean)
        if m and "finished with status" not in clean:
            return m.group(2).strip()
    return None


def _read_json(path: Optional[str]) -> Optional[dict]:
    if path and os.path.isfile(path):
        with open(path) as fh:
            return json.load(fh)
    return None


def run_local(
    data: str,
    label: str,
    runs_dir: str = "runs",
    model_name: Optional[str] = None,
    quiet: bool = True,
    params: Optional[dict] = None,
    run_id: Optional[str] = None,
    progress_fd: Optional[int] = None,
) -> dict:
    """Run the whole pipeline locally and return (and write) the run summary.

    Args:
        quiet: Task logs go to ``<run>/pipeline.log`` only (False: to the console too).
        progress_fd: Print a line per step as it ends on this file descriptor (1 stdout, 2 stderr),
            as it was before the run redirected it; None prints none. summary.json has the steps either way.

    Raises:
        PipelineError: bad input (checked before the run) or a failed task (its message).
    """
    from components._shared.names import check_model_name, model_name_from_data, path_under
    from components.ingest.core import preflight

    # Checked before anything runs: the name becomes folders, a models.config entry, URLs.
    # No name given: <data file, folder or table name>-model (the CLI says so before the run).
    model_name = check_model_name((params or {}).get("model_name") or model_name or model_name_from_data(data)[0])
    runs_dir = os.path.abspath(runs_dir)
    run_id = run_id or new_run_id()
    run_dir = path_under(runs_dir, run_id)
    preflight(data, label)
    # One run at a time per runs dir: they share the MLflow store and the serving base.
    with runs_dir_lock(runs_dir):
        return _run_locked(data, label, runs_dir, run_id, run_dir, model_name, quiet, params, progress_fd)


def _run_locked(data: str, label: str, runs_dir: str, run_id: str, run_dir: str, model_name: str,
                quiet: bool, params: Optional[dict], progress_fd: Optional[int] = None) -> dict:
    """run_local's body, under the runs dir's lock."""

    from pipelines.progress import StepRecorder, package_versions, run_parameters
    from pipelines.training import CompileOptions, build_pipeline

    root = os.path.join(run_dir, "pipeline_root")
    os.makedirs(root, exist_ok=True)
    log_path = os.path.join(run_dir, "pipeline.log")
    tracking_uri = default_tracking_uri(runs_dir)
    serving_base = os.path.join(runs_dir, "serving")
    os.makedirs(serving_base, exist_ok=True)
    # No MLflow set-up here (its import alone costs seconds): the tasks create the experiment,
    # and a SQLite store keeps its artifacts beside it (runs/mlartifacts), see registry.configure.
    arguments = {
        "data_uri": os.path.abspath(data) if "://" not in data else data,
        "label": label,
        "model_name": model_name,
        "mlflow_tracking_uri": tracking_uri,
        "serving_base_dir": serving_base,
        "checkpoint_root": os.path.join(runs_dir, "checkpoints"),
        **{k: v for k, v in (params or {}).items() if k != "model_name"},
    }
    pipeline = build_pipeline(CompileOptions(target="local"))
    started = time.time()
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    # A live line only when task logs are not streamed to the same console (--verbose).
    recorder = StepRecorder(console_fd=progress_fd, live=quiet)
    try:
        outputs = run_pipeline_locally(pipeline, arguments, root, log_path, quiet, run_id, recorder=recorder)
    finally:
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
    summary = summary_from_outputs(
        run_id, run_dir, decision_path=outputs["decision"].path, saved_model_dir=outputs["saved_model"].path,
        tflite_dir=outputs["tflite_model"].path, export_metrics=dict(outputs["export_metrics"].metadata),
        tracking_uri=tracking_uri, serving_base=serving_base, model_name=model_name,
        ingest_info_path=outputs["ingest_info"].path)
    summary.update({"data": arguments["data_uri"], "label": label, "model_name": model_name,
                    "mlflow_tracking_uri": tracking_uri, "log": log_path,
                    "wall_seconds": round(time.time() - started, 2), "steps": recorder.as_list(),
                    "parameters": run_parameters(pipeline, arguments), "versions": package_versions()})
    from components._shared.io import write_json

    write_json(summary, os.path.join(run_dir, "summary.json"))
    return summary


def run_pipeline_locally(pipeline, arguments: dict, root: str, log_path: str, quiet: bool, run_id: str,
                         recorder=None) -> dict:
    """Run ``pipeline`` with kfp.local (every task a fresh ``kfp.dsl.executor_main`` process, as in a
    pod; its log in ``log_path``) and return its outputs.

    ``recorder`` (a :class:`pipelines.progress.StepRecorder`) records each task's time, status and key
    figure, and prints a line per step on its console.

    Raises:
        PipelineError: A task failed; the message is its one sentence (see :func:`failure_message`).
    """
    from kfp import local

    from pipelines.local_dag import concurrent_local_dag, parallelism_from_env
    from pipelines.progress import StepRecorder, planned_steps, recording

    recorder = recorder or StepRecorder()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parallelism = parallelism_from_env()  # a bad setting is one sentence before anything runs
    try:
        with output_to(log_path, quiet, recorder.console_fd) as console, recording(recorder, console), \
                concurrent_local_dag(parallelism):  # independent tasks at once (pipelines/local_dag.py)
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
            outputs = pipeline(**arguments).outputs
            recorder.close(planned_steps(pipeline.pipeline_spec))  # what never ran: a dsl.If not taken
            return outputs
    except Exception as exc:
        msg = failure_message(log_path) or str(exc)
        raise PipelineError(f"{msg} (run {run_id}; log: {log_path})") from exc


def summary_from_outputs(
    run_id: str,
    run_dir: str,
    *,
    decision_path: Optional[str],
    saved_model_dir: Optional[str],
    tflite_dir: Optional[str],
    export_metrics: dict,
    tracking_uri: str,
    serving_base: str,
    model_name: str,
    deployment: Optional[dict] = None,
    ingest_info_path: Optional[str] = None,
) -> dict:
    """The run summary from the pipeline's declared outputs (see ``pipelines.training.PipelineOutputs``),
    however they were obtained (kfp.local's return value, a rehearsal of the compiled YAML, ...).

    Args:
        decision_path: compare's decision (JSON); saved_model_dir / tflite_dir: export's artifacts;
            export_metrics: the metadata of export's metrics artifact.
        deployment: deploy's result (``version``, ``alias``, ``serving_dir``) when the caller has it.
            Otherwise, when compare promoted, it is read back from the registry deploy wrote (deploy
            runs inside dsl.If, so it is not a pipeline output).
        ingest_info_path: ingest's record (JSON): how rows were split, and its warnings.
    """
    from components._shared.names import path_under
    from components.deploy.core import find_deployment
    from components.deploy.serving import read_state

    decision = _read_json(decision_path) or {}
    if deployment is None and decision.get("promote"):
        deployment = find_deployment(tracking_uri, model_name, saved_model_dir or "", serving_base)
    state = read_state(serving_base, model_name)
    served = path_under(serving_base, model_name, str(state["stable"])) if state.get("stable") else None
    summary = build_summary(run_id, run_dir, decision, deployment, saved_model_dir, tflite_dir, export_metrics, served)
    ingest = _read_json(ingest_info_path) or {}
    summary["split"] = ingest.get("split")
    summary["warnings"] = list(ingest.get("warnings") or [])
    return summary


def build_summary(run_id: str, run_dir: str, decision: dict, deployment: Optional[dict],
                  saved_model_dir: Optional[str], tflite_dir: Optional[str], export_metrics: dict,
                  served_dir: Optional[str]) -> dict:
    """summary.json's fields (the CLI contract); ``served_dir``: what TF Serving serves when this run deployed nothing."""
    export = {k: v for k, v in (export_metrics or {}).items() if k != "display_name"}
    return {
        "run_id": run_id,
        "task": (decision.get("challenger") or {}).get("task") or "binary",
        "promoted": bool(decision.get("promote")) and deployment is not None,
        "challenger": decision.get("challenger"),
        "champion": decision.get("champion"),
        "champion_version": decision.get("champion_version"),
        "comparison": decision.get("comparison"),
        "model_version": deployment["version"] if deployment else None,
        "alias": deployment["alias"] if deployment else None,
        "saved_model_dir": saved_model_dir,
        "tflite_path": os.path.join(tflite_dir, "model.tflite") if tflite_dir else None,
        "tflite_max_abs_diff": export.get("tflite_max_abs_diff"),
        "export": export,
        "serving_dir": deployment["serving_dir"] if deployment else served_dir,
        "reasons": decision.get("reasons", []),
        "run_dir": run_dir,
    }


# What the printed summary shows per task (label, summary key); the first is the comparison metric.
SUMMARY_METRICS = {
    "binary": (("AUC", "auc"), ("PR-AUC", "pr_auc"), ("ECE", "ece"), ("F1", "f1")),
    "multiclass": (("log loss", "log_loss"), ("accuracy", "accuracy"), ("macro F1", "macro_f1"),
                   ("macro AUC", "macro_auc")),
    "regression": (("RMSE", "rmse"), ("MAE", "mae"), ("R2", "r2")),
}


SLOWEST_SHOWN = 4  # steps named in the printed summary (summary.json has them all)


def _headline(s: dict) -> str:
    name = s.get("model_name") or "the model"
    if s.get("model_version") and s.get("alias") == "champion":
        text = f"PROMOTED -> {name} v{s['model_version']} (champion)"
    elif s.get("model_version"):  # deployed without becoming champion: approval required
        text = (f"registered {name} v{s['model_version']} as {s.get('alias') or 'a version'} "
                + ("(awaiting `approve`)" if s.get("alias") == "candidate" else "(not champion)"))
    elif s.get("promoted"):
        text = "PROMOTED"
    else:
        text = "not promoted" + (f" (v{s['champion_version']} stays champion)" if s.get("champion_version") else "")
    return f"run {s['run_id']}: {text}" + (f"  [{s['task']}]" if s.get("task") not in (None, "binary") else "")


def _steps_line(steps: list) -> Optional[str]:
    """The slowest steps, and any that failed or were skipped, on one line."""
    if not steps:
        return None
    ran = sorted((st for st in steps if st.get("seconds") is not None), key=lambda st: -st["seconds"])
    shown = ", ".join(f"{st['name']} {st['seconds']:.1f} s" for st in ran[:SLOWEST_SHOWN])
    line = f"  slowest    {shown}  ({len(ran)} steps ran)"
    for status in ("FAILED", "skipped"):
        names = [st["name"] for st in steps if st.get("status") == status]
        if names:
            line += f"; {status}: {', '.join(names)}"
    return line


def format_summary(s: dict) -> str:
    """The run's summary as text a user can read, and paste into a bug report."""
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    ch, cp = s.get("challenger") or {}, s.get("champion")
    shown = SUMMARY_METRICS.get(s.get("task") or "binary", SUMMARY_METRICS["binary"])
    primary_name, primary = shown[0]
    lines = [
        _headline(s),
        "  challenger " + "  ".join(f"{name} {f(ch.get(key))}" for name, key in shown),
        "  champion   " + (f"{primary_name} {f(cp.get(primary))} (v{s.get('champion_version')}, re-scored on this test split)" if cp
                             else f"v{s['champion_version']}, could not be re-scored on this test split"
                             if s.get("champion_version") else "none registered"),
        f"  TFLite max |diff| vs SavedModel {f(s.get('tflite_max_abs_diff'))}",
        f"  serving    {s.get('serving_dir') or 'nothing served yet'}",
    ]
    lines += [f"  - {r}" for r in s.get("reasons", [])]
    lines += [f"  warning: {w}" for w in s.get("warnings") or []]
    steps = _steps_line(s.get("steps") or [])
    if steps:
        lines.append(steps)
    lines.append(f"  summary    {os.path.join(s['run_dir'], 'summary.json')}  ({s.get('wall_seconds')} s)")
    return "\n".join(lines)
