"""pipelines.local_dag: kfp.local runs independent tasks together, keeps dsl.If and kfp's failure report.

Toy pipelines of tiny lightweight components run by kfp.local's SubprocessRunner in this venv.
Overlap is proven by the tasks themselves: each branch waits for the other's file before it ends,
which only a runner that runs them at once lets both do.
"""

import builtins
import logging

import pytest
from kfp import dsl, local

from pipelines.local_dag import PARALLELISM_ENV, concurrent_local_dag, parallelism_from_env

BASE = "python:3.11"


@dsl.component(base_image=BASE, install_kfp_package=False)
def meet(folder: str, me: str, other: str) -> str:
    """Write <me>, wait for <other> (fails after 60 s alone); return 'start end' times."""
    import os
    import time

    start = time.time()
    open(os.path.join(folder, me), "w").close()
    deadline = start + 60
    while not os.path.exists(os.path.join(folder, other)):
        if time.time() > deadline:
            raise RuntimeError(f"{other} never ran beside {me}")
        time.sleep(0.05)
    return f"{start} {time.time()}"


@dsl.component(base_image=BASE, install_kfp_package=False)
def join(a: str, b: str, flag: str) -> str:
    return flag


@dsl.component(base_image=BASE, install_kfp_package=False)
def touch(folder: str, name: str) -> str:
    import os

    open(os.path.join(folder, name), "w").close()
    return name


@dsl.component(base_image=BASE, install_kfp_package=False)
def fail_after_touch(folder: str) -> str:
    import os

    open(os.path.join(folder, "failing"), "w").close()
    raise ValueError("this step fails on purpose")


@dsl.component(base_image=BASE, install_kfp_package=False)
def finish_after(folder: str, wait_for: str) -> str:
    """Ends 3 s after <wait_for> exists: the failure is known to the runner before this ends."""
    import os
    import time

    while not os.path.exists(os.path.join(folder, wait_for)):
        time.sleep(0.05)
    time.sleep(3)
    open(os.path.join(folder, "slow-finished"), "w").close()
    return "done"


@dsl.component(base_image=BASE, install_kfp_package=False)
def stamp(folder: str, name: str) -> str:
    """Write 'start end' times of a short task to <folder>/<name>."""
    import os
    import time

    start = time.time()
    time.sleep(0.2)
    with open(os.path.join(folder, name), "w") as fh:
        fh.write(f"{start} {time.time()}")
    return name


@dsl.pipeline
def three_independent(folder: str):
    for name in ("stamp", "stamp-2", "stamp-3"):  # the task names kfp gives them
        stamp(folder=folder, name=name).set_caching_options(False)


@dsl.pipeline
def branches(folder: str, flag: str) -> str:
    a = meet(folder=folder, me="a", other="b").set_caching_options(False)
    b = meet(folder=folder, me="b", other="a").set_caching_options(False)
    j = join(a=a.output, b=b.output, flag=flag).set_caching_options(False)
    with dsl.If(j.output == "yes"):
        touch(folder=folder, name="taken").set_caching_options(False)
    return a.output


@dsl.pipeline
def one_fails(folder: str):
    bad = fail_after_touch(folder=folder).set_caching_options(False)
    touch(folder=folder, name="after-bad").set_caching_options(False).after(bad)
    slow = finish_after(folder=folder, wait_for="failing").set_caching_options(False)
    touch(folder=folder, name="after-slow").set_caching_options(False).after(slow)


@pytest.fixture
def kfp_local(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)


@pytest.mark.parametrize("flag", ["yes", "no"])
def test_branches_overlap_and_if_is_evaluated_when_ready(tmp_path, kfp_local, flag):
    folder = tmp_path / "work"
    folder.mkdir()
    with concurrent_local_dag(2):
        task = branches(folder=str(folder), flag=flag)
    start, end = map(float, task.output.split())
    assert start < end
    assert (folder / "a").exists() and (folder / "b").exists()
    assert (folder / "taken").exists() == (flag == "yes")


def test_a_failed_task_fails_the_run_with_kfps_error_while_the_other_branch_finishes(tmp_path, kfp_local):
    folder = tmp_path / "work"
    folder.mkdir()
    with concurrent_local_dag(2), pytest.raises(RuntimeError, match=r"FAILURE.*Inner task failed: .*fail-after-touch"):
        one_fails(folder=str(folder))
    assert (folder / "slow-finished").exists()  # running when the other failed: it finished
    assert not (folder / "after-bad").exists()
    assert not (folder / "after-slow").exists()  # no new work once a task failed


def test_one_at_a_time_follows_kfps_own_order(tmp_path, kfp_local):
    from kfp.local import graph_utils

    folder = tmp_path / "work"
    folder.mkdir()
    with concurrent_local_dag(1):
        three_independent(folder=str(folder))
    outputs = {task: tuple(map(float, (folder / task).read_text().split())) for task in ("stamp", "stamp-2", "stamp-3")}
    kfp_order = [t for t in reversed(graph_utils.topological_sort_tasks(
        dict(three_independent.pipeline_spec.root.dag.tasks))) if t.startswith("stamp")]
    assert sorted(outputs, key=lambda t: outputs[t][0]) == kfp_order
    spans = sorted(outputs.values())
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:], strict=False))  # never two at once


def test_kfp_and_process_state_are_restored(tmp_path, kfp_local):
    from kfp.local import logging_utils
    from kfp.local.orchestrator import dag_orchestrator, enhanced_dag_orchestrator

    before = (builtins.print, logging.getLogger().handlers[:], dag_orchestrator.run_dag,
              enhanced_dag_orchestrator.run_enhanced_dag, logging_utils.indented_print)
    folder = tmp_path / "work"
    folder.mkdir()
    with concurrent_local_dag(2):
        branches(folder=str(folder), flag="no")
    after = (builtins.print, logging.getLogger().handlers[:], dag_orchestrator.run_dag,
             enhanced_dag_orchestrator.run_enhanced_dag, logging_utils.indented_print)
    assert after == before


def test_parallelism_setting(monkeypatch):
    from components._shared.errors import PipelineError

    monkeypatch.setenv(PARALLELISM_ENV, "1")
    assert parallelism_from_env() == 1
    monkeypatch.setenv(PARALLELISM_ENV, "0")
    with pytest.raises(PipelineError, match=PARALLELISM_ENV):
        parallelism_from_env()
    monkeypatch.delenv(PARALLELISM_ENV)
    assert parallelism_from_env() >= 2
