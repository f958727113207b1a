"""What a user sees while a pipeline runs on this machine: one line per step as it ends (name,
status, seconds, one key figure), and on a terminal a live line naming the running steps.

kfp.local's orchestrators run every task through ``kfp.local.orchestrator.task_executor.
execute_single_task``, looked up on that module at each call; :func:`recording` wraps it for the
duration of a run and restores it afterwards. Several tasks may run at once (independent tasks of
the DAG), so :class:`StepRecorder` takes a lock around its state and prints each line whole.

Console output goes through rich (plain text when the stream is not a terminal, as in CI logs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional, TextIO

OK, FAILED, SKIPPED, RUNNING = "ok", "FAILED", "skipped", "running"
# The versions summary.json records (importlib.metadata: nothing is imported to read them).
VERSIONED_PACKAGES = ("kfp-tf-gate", "kfp", "tensorflow", "mlflow")
NAME_WIDTH = 19  # "champion-reference" and a space

log = logging.getLogger(__name__)
_USERINFO = re.compile(r"(://)[^/@\s]+@")  # user:password@ in a URI (an MLflow server's, say)


@dataclasses.dataclass
class Step:
    task: str  # the task's key in the pipeline spec (ingest-data)
    name: str  # its display name (ingest)
    start: float  # seconds after the recorder was made
    seconds: Optional[float] = None
    status: str = RUNNING
    figure: str = ""


def _metadata(outputs: dict, name: str) -> dict:
    art = (outputs or {}).get(name)
    return dict(getattr(art, "metadata", None) or {})


def _count(value) -> str:
    return f"{int(value):,}" if value is not None else "?"


def _ingest(o: dict) -> str:
    m = _metadata(o, "metrics")
    return f"rows train {_count(m.get('train_rows'))} / eval {_count(m.get('eval_rows'))} / test {_count(m.get('test_rows'))}"


def _reference(o: dict) -> str:
    version = _metadata(o, "reference").get("version")
    return f"champion v{version}" if version else "no champion yet"


def _validate(o: dict) -> str:
    m = _metadata(o, "metrics")
    n = int(m.get("anomalies", 0))
    return f"{n} anomal{'y' if n == 1 else 'ies'} ({int(m.get('blocking_anomalies', 0))} blocking)"


def _drift(o: dict) -> str:
    m = _metadata(o, "metrics")
    if "drifted_features" not in m:
        return "no report" if _metadata(o, "drift").get("error") else ""
    return f"{int(m['drifted_features'])} drifted feature(s)"


def _engineer(o: dict) -> str:
    m = _metadata(o, "transform_spec")
    return f"{int(m.get('numeric', 0))} numeric, {int(m.get('categorical', 0))} categorical features"


def _train(o: dict) -> str:
    from components._shared.task import TASKS

    m = _metadata(o, "metrics")
    epochs = m.get("epochs_run", _metadata(o, "model").get("epochs_run"))
    text = f"{_count(epochs)} epochs"
    for task in TASKS.values():  # train logs eval_<first fit metric> of its task
        key = f"eval_{task.fit_metrics[0]}"
        if key in m:
            return f"{text}, eval {task.fit_metrics[0]} {m[key]:.4f}"
    return text


def _evaluate(o: dict) -> str:
    from components._shared.task import TASKS

    m = _metadata(o, "metrics")
    for task in TASKS.values():  # binary (auc) first: its metrics also hold a log loss
        if task.primary in m:
            return f"test {task.primary} {m[task.primary]:.4f}"
    return ""


def _compare(o: dict) -> str:
    promote = _metadata(o, "decision").get("promote")
    if promote is None:
        promote = o.get("Output")
    return "promote" if promote else "keep the champion (not promoted)"


def _export(o: dict) -> str:
    diff = _metadata(o, "metrics").get("tflite_max_abs_diff")
    return f"TFLite max |diff| {diff:.2g}" if diff is not None else ""


def _deploy(o: dict) -> str:
    m = _metadata(o, "deployment")
    if not m.get("version"):
        return ""
    if m.get("alias") == "champion":
        return f"v{m['version']} is champion"
    return f"registered v{m['version']} as {m.get('alias') or 'a version'}"


# Display name (pipelines/training.py set_display_name) -> its figure, from the task's outputs.
FIGURES: dict[str, Callable[[dict], str]] = {
    "ingest": _ingest, "champion-reference": _reference, "validate": _validate, "drift-report": _drift,
    "engineer": _engineer, "train": _train, "evaluate": _evaluate, "compare": _compare, "export": _export,
    "deploy": _deploy,
}


def key_figure(name: str, outputs: Optional[dict]) -> str:
    """The one figure shown for step ``name``, read from the outputs kfp.local returned for it
    (artifacts' metadata, parameters); "" when there is none. A display never fails a run."""
    fn = FIGURES.get(name)
    if fn is None or not outputs:
        return ""
    try:
        return fn(outputs)
    except Exception as exc:  # noqa: BLE001 (an odd output must not end a run that succeeded)
        log.debug("no key figure for %s: %s", name, exc)
        return ""


def planned_steps(pipeline_spec) -> list[tuple[str, str, Optional[str]]]:
    """(task key, display name, enclosing condition's name or None) of every executor task of a
    PipelineSpec, conditions' sub-DAGs included."""
    out: list = []

    def walk(dag, condition: Optional[str]) -> None:
        for key, task in dag.tasks.items():
            comp = pipeline_spec.components[task.component_ref.name]
            if comp.WhichOneof("implementation") == "dag":
                walk(comp.dag, task.task_info.name or key)
            else:
                out.append((key, task.task_info.name or key, condition))

    walk(pipeline_spec.root.dag, None)
    return out


def package_versions() -> dict:
    """Versions of the packages a run used, without importing them (TensorFlow takes seconds)."""
    from importlib import metadata

    versions: dict = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def run_parameters(pipeline, arguments: dict) -> dict:
    """Every parameter of ``pipeline`` (a pipeline function or a loaded compiled file) as this run
    used it: the argument given, else the declared default; credentials in URIs are masked."""
    values = {name: arguments.get(name, spec.default) for name, spec in pipeline.component_spec.inputs.items()}
    values.update({k: v for k, v in arguments.items() if k not in values})
    return {k: _USERINFO.sub(r"\1***@", v) if isinstance(v, str) else v for k, v in values.items()}


class StepRecorder:
    """Start, end, status and key figure of each step. Safe to call from several threads at once.

    Args:
        console_fd: Where a run prints a line per finished step: 1 (stdout) or 2 (stderr), as they
            were before the run redirected them to its log (see :func:`recording`); None: record only.
        live: On a terminal, also show a live line with the running steps and their elapsed time.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, console_fd: Optional[int] = None, live: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.console_fd = console_fd
        self._want_live = live
        self._clock = clock
        self._t0 = clock()
        self._state = threading.Lock()  # never held while printing (the live refresh takes it)
        self._printing = threading.Lock()
        self._steps: dict[str, Step] = {}  # by task key, in start order
        self._console = None
        self._live = None

    def attach(self, stream: Optional[TextIO]) -> StepRecorder:
        """Print on ``stream`` from now on (None: print nothing)."""
        if stream is None:
            self._console = None
            return self
        from rich.console import Console

        self._console = Console(file=stream, soft_wrap=True, highlight=False, emoji=False)
        return self

    # -- recording (called by the wrapped execute_single_task, possibly from several threads)

    def started(self, task: str, name: str) -> None:
        with self._state:
            self._steps[task] = Step(task, name, round(self._clock() - self._t0, 2))

    def finished(self, task: str, status: str, outputs: Optional[dict] = None) -> Step:
        now = self._clock() - self._t0
        with self._state:
            step = self._steps.get(task) or self._steps.setdefault(task, Step(task, task, round(now, 2)))
            name = step.name
        figure = key_figure(name, outputs) if status == OK else ""  # may read metadata: outside the lock
        with self._state:
            step.seconds = round(max(0.0, now - step.start), 2)
            step.status, step.figure = status, figure
            done = dataclasses.replace(step)
        self._print(done)
        return done

    def close(self, plan: Optional[list] = None) -> None:
        """After a successful run: every planned step that never started was skipped (its condition
        was false); print a line for each."""
        for task, name, condition in plan or ():
            with self._state:
                if task in self._steps:
                    continue
                step = self._steps[task] = Step(task, name, round(self._clock() - self._t0, 2), None, SKIPPED,
                                                f"condition '{condition}' was false" if condition else "not run")
            self._print(step)

    def steps(self) -> list[Step]:
        with self._state:
            return [dataclasses.replace(s) for s in self._steps.values()]

    def as_list(self) -> list[dict]:
        """summary.json's ``steps``, in the order they started (a list: summary.json sorts keys):
        {"name", "status", "seconds", "start"}; ``start`` is seconds after the run began, ``seconds``
        is null for a step that did not run."""
        return [{"name": s.name, "status": s.status, "seconds": s.seconds, "start": s.start} for s in self.steps()]

    # -- console

    @staticmethod
    def line(step: Step) -> str:
        """The plain text of a step's line."""
        secs = "-" if step.seconds is None else f"{step.seconds:.1f} s"
        return f"  {step.name:<{NAME_WIDTH}}{step.status:<8}{secs:>8}  {step.figure}".rstrip()

    def _print(self, step: Step) -> None:
        if self._console is None:
            return
        from rich.text import Text

        style = {OK: "green", FAILED: "bold red", SKIPPED: "dim"}.get(step.status, "")
        text = Text(self.line(step))
        start = 2 + NAME_WIDTH
        text.stylize(style, start, start + len(step.status))
        with self._printing:
            self._console.print(text)
            live = self._live
            if live is not None:  # redraw now: the frame under the line still shows the step running
                live.refresh()

    def _live_view(self):
        now = self._clock()
        with self._state:
            running = [s for s in self._steps.values() if s.status == RUNNING]
            names = ", ".join(f"{s.name} {now - self._t0 - s.start:.0f} s" for s in running)
        self._spinner.update(text=f"running {names or '...'}  (total {now - self._t0:.0f} s)")
        return self._spinner

    def __enter__(self) -> StepRecorder:
        if self._want_live and self._console is not None and self._console.is_terminal:
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", text="")
            # redirect_*=False: fd 1/2 belong to the run's log; only this console is ours.
            self._live = Live(console=self._console, get_renderable=self._live_view, refresh_per_second=4,
                              transient=True, redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._console is not None:
            self._console.file.flush()


@contextlib.contextmanager
def recording(recorder: StepRecorder, stream: Optional[TextIO] = None) -> Iterator[StepRecorder]:
    """Record every task kfp.local runs, for the duration of the block, printing on ``stream`` (the
    previous ``execute_single_task`` is restored afterwards, also on error)."""
    from kfp.local import status as kfp_status
    from kfp.local.orchestrator import task_executor

    original = task_executor.execute_single_task

    def execute_single_task(*args: Any, **kwargs: Any):
        task_name = kwargs.get("task_name", args[0] if args else "?")
        spec = kwargs.get("task_spec", args[1] if len(args) > 1 else None)
        name = (spec.task_info.name if spec is not None else "") or task_name
        recorder.started(task_name, name)
        try:
            outputs, result = original(*args, **kwargs)
        except BaseException:
            recorder.finished(task_name, FAILED)
            raise
        recorder.finished(task_name, OK if result == kfp_status.Status.SUCCESS else FAILED, outputs)
        return outputs, result

    recorder.attach(stream)
    task_executor.execute_single_task = execute_single_task
    try:
        with recorder:
            yield recorder
    finally:
        task_executor.execute_single_task = original
