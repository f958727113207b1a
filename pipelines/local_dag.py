"""kfp.local's DAG runner, starting every task whose upstream tasks are done (up to N at once).

kfp 2.17's local orchestrators (``dag_orchestrator.run_dag``, ``enhanced_dag_orchestrator.run_enhanced_dag``)
walk a DAG one task at a time in topological order, so branches that a cluster runs together
(champion-reference beside ingest, drift-report beside engineer and train, export beside compare)
add up. :func:`run_dag` has their contract (signature, return value, IOStore, fail stack) and
:func:`concurrent_local_dag` installs it in their place for the duration of a local run:

- a task starts as soon as every task it depends on has finished (up to N leaf tasks at once,
  process-wide; ``$KFP_TF_GATE_LOCAL_PARALLELISM``, default :data:`DEFAULT_PARALLELISM`). Among ready
  tasks the one earlier in kfp's own topological order starts first, so with N = 1 the order is kfp's;
- ``dsl.If`` conditions are evaluated (by kfp's ConditionEvaluator) when the task is ready;
  ``dsl.ParallelFor`` runs through kfp's own loop code; nested DAGs go through kfp's ``execute_task``,
  which calls this runner again (module attribute);
- a failed task stops the scheduling of new work; running tasks finish; the DAG returns FAILURE with
  the failed task (and, for a nested DAG, its inner chain) on ``fail_stack`` as kfp's runners do, so
  ``raise_on_error`` and its message are kfp's. Exit handlers run after the body, as in kfp.
- leaf tasks go through ``task_executor.execute_single_task`` looked up at each call, so a wrapper
  installed on that module attribute (progress reporting, retries' clock) sees every task.

kfp.local swaps two process-wide things while a task runs: the root logger's handlers and
``builtins.print`` (to indent a task's streamed log). Entered from two threads, each would restore
the other's replacement and leave it installed; :func:`concurrent_local_dag` replaces both with
reference-counted versions that install once and restore when the last task ends.

What the tasks of this project share, and why they can overlap (see pipelines/training.py): the
MLflow store (SQLite in a local run) is touched by champion-reference, train, compare and deploy,
which are ordered by their data dependencies, so no two of them run at once; the serving base is
read by compare and written by deploy, also ordered; attempt markers, checkpoints and kfp.local's
output files are per task; the runs-dir lock is held by the calling process, not by tasks.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, Optional

PARALLELISM_ENV = "KFP_TF_GATE_LOCAL_PARALLELISM"
# Two cores here, and the training DAG has two tasks ready together (three only if drift-report
# outlasts engineer and train): README "Performance", Concurrent local runs.
DEFAULT_PARALLELISM = 2
SLOT_POLL_SECONDS = 0.05  # how often a DAG whose ready task waits for a slot looks again

logger = logging.getLogger(__name__)

_state_lock = threading.Lock()
_slots: Optional[threading.BoundedSemaphore] = None  # leaf tasks running at once, process-wide


def parallelism_from_env() -> int:
    """$KFP_TF_GATE_LOCAL_PARALLELISM as a whole number >= 1 (DEFAULT_PARALLELISM when unset).

    Raises:
        PipelineError: The variable is set to something else.
    """
    from components._shared.errors import PipelineError

    raw = os.environ.get(PARALLELISM_ENV, "").strip()
    if not raw:
        return DEFAULT_PARALLELISM
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise PipelineError(f"{PARALLELISM_ENV} must be a whole number of tasks, 1 or more, got {raw!r}")
    return value


def run_dag(
    pipeline_resource_name: str,
    dag_component_spec,
    executors: dict,
    components: dict,
    dag_arguments: dict,
    pipeline_root: str,
    runner,
    unique_pipeline_id: str,
    fail_stack: list,
    parent_io_store=None,
) -> tuple[dict, Any]:
    """Run a DAG's tasks, each as soon as its upstream tasks are done; kfp's ``run_enhanced_dag`` contract.

    Returns:
        ``(outputs, status)``; on FAILURE the outputs are ``{}`` and ``fail_stack`` holds the failed
        task (innermost first), as with kfp's own runners.
    """
    from kfp.local import graph_utils, io, status
    from kfp.local.orchestrator import enhanced_dag_orchestrator as edo
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
    from kfp.pipeline_spec import pipeline_spec_pb2

    arguments = OrchestratorUtils.join_user_inputs_and_defaults(
        dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions)
    io_store = io.IOStore(parent=parent_io_store)
    for k, v in arguments.items():
        io_store.put_parent_input(k, v)

    completed = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
    exit_tasks, body = [], {}
    for name, spec in dag_component_spec.dag.tasks.items():
        if spec.trigger_policy.strategy == completed and edo._has_task_final_status_input(spec):
            exit_tasks.append((name, spec))
        else:
            body[name] = spec
    # kfp's order, first to run first: ready tasks start in this order (N = 1 gives kfp's order).
    rank = {name: i for i, name in enumerate(reversed(graph_utils.topological_sort_tasks(body)))}
    upstream = {name: {d for d in spec.dependent_tasks if d in body} for name, spec in body.items()}
    common = dict(pipeline_resource_name=pipeline_resource_name, components=components, executors=executors,
                  io_store=io_store, pipeline_root=pipeline_root, runner=runner,
                  unique_pipeline_id=unique_pipeline_id)
    parallel_executor = edo.ParallelExecutor()

    def is_leaf(spec) -> bool:
        return not (spec.WhichOneof("iterator") and edo._has_valid_iterator(spec)) and \
            components[spec.component_ref.name].WhichOneof("implementation") != "dag"

    def execute(name: str, spec, task_fail_stack: list, slot: bool):
        """One task in a worker thread: (outputs, status); ``slot``: release a leaf slot at the end."""
        try:
            if spec.WhichOneof("iterator") and edo._has_valid_iterator(spec):
                failed = edo._run_parallel_for_task(task_name=name, task_spec=spec, fail_stack=task_fail_stack,
                                                    parallel_executor=parallel_executor, **common)
                return {}, status.Status.FAILURE if failed else status.Status.SUCCESS
            if not is_leaf(spec):
                # A nested DAG holds no slot: its own tasks take them (else it could wait on itself).
                return edo.execute_task(task_name=name, task_spec=spec, fail_stack=task_fail_stack, **common)
            return edo.task_executor.execute_single_task(task_name=name, task_spec=spec,
                                                         fail_stack=task_fail_stack, **common)
        finally:
            if slot:
                _release_slot()

    finished: set = set()  # succeeded, or skipped by a false condition (kfp runs their dependents too)
    failed: set = set()  # failed, or not run because a task failed
    running: dict = {}  # future -> (task name, its own fail stack)
    waiting = set(body)
    body_failed = False
    error: Optional[BaseException] = None

    def start_ready() -> bool:
        """Start what can start, in kfp's order; True when a ready task waits for a free slot."""
        nonlocal body_failed
        blocked: set = set()
        ready = [n for n in waiting if upstream[n] <= finished | failed]
        while ready:
            for name in sorted(ready, key=rank.__getitem__):
                spec = body[name]
                if body_failed and spec.trigger_policy.strategy != completed:
                    # A failed task stops new work (ignore_upstream_failure tasks still run); kfp
                    # records tasks it skips as FAILED.
                    waiting.discard(name)
                    failed.add(name)
                    io_store.put_task_status(name, "FAILED")
                    if upstream[name] & failed:
                        logging.info(f"Skipping task {name}: upstream task(s) {sorted(upstream[name] & failed)} failed.")
                elif spec.trigger_policy.condition and not edo.ConditionEvaluator.evaluate_condition(
                        spec.trigger_policy.condition, io_store):
                    waiting.discard(name)
                    logging.info(f"Skipping conditional task {name} (condition evaluated to False)")
                    finished.add(name)
                elif is_leaf(spec) and (blocked or not _take_slot()):
                    blocked.add(name)  # taken here, in kfp's order, not raced for by worker threads
                else:
                    waiting.discard(name)
                    task_fail_stack: list = []
                    running[pool.submit(execute, name, spec, task_fail_stack, is_leaf(spec))] = (name, task_fail_stack)
            ready = [n for n in waiting if upstream[n] <= finished | failed and n not in blocked]
        return bool(blocked)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(body)), thread_name_prefix="kfp-local-dag")
    try:
        blocked = start_ready()
        while running or blocked:
            # A slot may be freed by a task of another DAG (a nested one): then look again shortly.
            done, _ = concurrent.futures.wait(running, timeout=SLOT_POLL_SECONDS if blocked else None,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: rank[running[f][0]]):
                name, task_fail_stack = running.pop(future)
                loop = bool(body[name].WhichOneof("iterator"))  # kfp's loop code stores its own results
                try:
                    outputs, task_status = future.result()
                except Exception as exc:  # kfp.local's own error, not a task's: raised once the rest finish
                    error = error or exc
                    outputs, task_status = {}, status.Status.FAILURE
                if task_status == status.Status.SUCCESS:
                    if not loop:
                        io_store.put_task_status(name, "SUCCEEDED")
                        for key, value in outputs.items():
                            io_store.put_task_output(name, key, value)
                    finished.add(name)
                    continue
                if not loop:
                    io_store.put_task_status(name, "FAILED")
                failed.add(name)
                if not body_failed:  # one chain on the stack, the first failure's, as kfp reports it
                    fail_stack.extend(task_fail_stack)
                    fail_stack.append(name)
                else:
                    logging.error(f"Task {name} failed as well")
                body_failed = True
            blocked = start_ready()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # e.g. Ctrl-C: the tasks' processes get it too
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error
    for name in waiting:  # only left when a failure stopped the rest
        failed.add(name)
        io_store.put_task_status(name, "FAILED")
    body_failed = body_failed or bool(waiting)

    if body_failed and not exit_tasks:
        return {}, status.Status.FAILURE
    exit_failed = False
    for name, spec in exit_tasks:  # after the body, one at a time, whatever the body's outcome (kfp)
        outputs, task_status = edo.execute_task(task_name=name, task_spec=spec, fail_stack=fail_stack, **common)
        io_store.put_task_status(name, "SUCCEEDED" if task_status == status.Status.SUCCESS else "FAILED")
        if task_status == status.Status.SUCCESS:
            for key, value in outputs.items():
                io_store.put_task_output(name, key, value)
        else:
            fail_stack.append(name)
            exit_failed = True
    if body_failed or exit_failed:
        return {}, status.Status.FAILURE
    return OrchestratorUtils.get_dag_outputs(dag_outputs_spec=dag_component_spec.dag.outputs,
                                             io_store=io_store), status.Status.SUCCESS


def _take_slot() -> bool:
    """A leaf task's slot, without waiting (no limit outside concurrent_local_dag)."""
    slots = _slots
    return slots is None or slots.acquire(blocking=False)


def _release_slot() -> None:
    slots = _slots
    if slots is not None:
        slots.release()


class _Shared:
    """A process-wide replacement installed by the first user and restored by the last (thread-safe)."""

    def __init__(self, install, restore):
        self._install, self._restore = install, restore
        self._users = 0
        self._saved = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, *args, **kwargs) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = self._install()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._restore(self._saved)


def _shared_logger_context(stream_of) -> _Shared:
    """kfp's ``local_logger_context`` (root logger to stdout at INFO, as kfp formats it), shared by threads."""
    from kfp.local import logging_utils

    def install():
        root = logging.getLogger()
        saved = root.level, root.handlers[:]
        handler = logging.StreamHandler(stream_of())
        handler.setFormatter(logging_utils.MillisecondFormatter(
            fmt="%(asctime)s - %(levelname)s - %(message)s", datefmt="%H:%M:%S.%f"))
        root.handlers.clear()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        return saved

    def restore(saved):
        root = logging.getLogger()
        root.handlers.clear()
        root.setLevel(saved[0])
        for handler in saved[1]:
            root.addHandler(handler)

    return _Shared(install, restore)


def _shared_indented_print(num_spaces: int = 4):
    """kfp's ``indented_print``, shared by threads; one task's line is never split by another's."""
    lock = threading.Lock()

    def install():
        original = builtins.print

        def indented(*args, **kwargs):
            with lock:
                original(" " * num_spaces, end="")
                return original(*args, **kwargs)

        builtins.print = indented
        return original

    def restore(original):
        builtins.print = original

    shared = _Shared(install, restore)

    def factory(num_spaces: int = num_spaces):  # kfp calls it with no argument
        return shared()

    return factory


@contextlib.contextmanager
def concurrent_local_dag(parallelism: Optional[int] = None) -> Iterator[int]:
    """Install :func:`run_dag` as kfp.local's DAG runners (both), for the ``with`` block; yields N.

    Args:
        parallelism: Leaf tasks at once (default: $KFP_TF_GATE_LOCAL_PARALLELISM, else DEFAULT_PARALLELISM).
    """
    import sys

    from kfp.local import logging_utils
    from kfp.local.orchestrator import dag_orchestrator, enhanced_dag_orchestrator

    global _slots
    n = parallelism if parallelism is not None else parallelism_from_env()
    # pipeline_orchestrator looks both up at each run: flat DAGs -> run_dag, control flow -> run_enhanced_dag.
    saved = (dag_orchestrator.run_dag, enhanced_dag_orchestrator.run_enhanced_dag,
             logging_utils.local_logger_context, logging_utils.indented_print, _slots)
    dag_orchestrator.run_dag = run_dag
    enhanced_dag_orchestrator.run_enhanced_dag = run_dag
    logging_utils.local_logger_context = _shared_logger_context(lambda: sys.stdout)
    logging_utils.indented_print = _shared_indented_print()
    _slots = threading.BoundedSemaphore(n)
    try:
        yield n
    finally:
        (dag_orchestrator.run_dag, enhanced_dag_orchestrator.run_enhanced_dag,
         logging_utils.local_logger_context, logging_utils.indented_print, _slots) = saved
