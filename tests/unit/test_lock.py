"""File locks across processes: the runs dir and a fresh MLflow SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components._shared.lock import LockTimeout, hold, read_holder

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

_HOLDER = """
import sys, time
from components._shared.lock import hold
with hold(sys.argv[1], "the thing"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(lock: str, seconds: float = 60.0) -> subprocess.Popen:
    """Another process that holds ``lock`` for ``seconds`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, lock, str(seconds), "--token", "s3cret"],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def stop():
    procs = []
    yield procs.append
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_holder_notes_who_it_is_and_clears_the_note_on_release(tmp_path):
    lock = str(tmp_path / "x.lock")
    with hold(lock, "the thing", timeout=0):
        note = read_holder(lock)
        assert note["pid"] == os.getpid() and note["host"] and note["started"] and note["command"]
        with hold(lock, "the thing", timeout=0):  # re-entrant in one thread
            pass
        assert read_holder(lock)["pid"] == os.getpid()
    assert read_holder(lock) is None
    with hold(lock, "the thing", timeout=0):  # free again
        pass


def test_a_second_process_fails_after_its_timeout_with_one_sentence_naming_the_holder(tmp_path, stop):
    lock = str(tmp_path / "x.lock")
    proc = _holder(lock)
    stop(proc)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as err:
        with hold(lock, "the runs dir /r", timeout=0.5):
            pytest.fail("acquired a lock another process holds")
    assert 0.5 <= time.monotonic() - started < 5
    msg = str(err.value)
    assert msg.startswith(f"another process (pid {proc.pid} on ")
    assert "holds the runs dir /r after waiting 0.5 s; wait for it to finish" in msg
    assert "--token ***" in msg and "s3cret" not in msg  # secrets never land in a lock file
    assert "\n" not in msg


def test_a_waiting_process_gets_the_lock_when_the_holder_ends(tmp_path, stop):
    lock = str(tmp_path / "x.lock")
    proc = _holder(lock, seconds=1.0)
    stop(proc)
    started = time.monotonic()
    with hold(lock, "the thing", timeout=30):
        waited = time.monotonic() - started
        assert read_holder(lock)["pid"] == os.getpid()
    assert 0.3 < waited < 15


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, stop):
    lock = str(tmp_path / "x.lock")
    proc = _holder(lock)
    stop(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(lock)["pid"] == proc.pid  # its note stays until the next holder
    with hold(lock, "the thing", timeout=2):
        assert read_holder(lock)["pid"] == os.getpid()


@pytest.mark.parametrize("command", ["run", "rollback", "approve"])
def test_a_command_that_may_deploy_fails_with_one_sentence_while_another_holds_the_runs_dir(tmp_path, stop,
                                                                                            command):
    from pipelines.data import generate_churn
    from pipelines.local import RUNS_DIR_LOCK

    runs = tmp_path / "runs"
    argv = ["--runs-dir", str(runs)]
    if command == "run":
        data = tmp_path / "small.csv"
        generate_churn(300, seed=1).to_csv(data, index=False)
        argv += ["--data", str(data), "--label", "churned"]
    proc = _holder(str(runs / RUNS_DIR_LOCK))
    stop(proc)
    r = subprocess.run([sys.executable, "-m", "pipelines", command, *argv], capture_output=True, text=True,
                       timeout=120, env={**ENV, "KFP_TF_GATE_LOCK_TIMEOUT": "0.5"}, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # a short wait says nothing until it gives up
    last = lines[-1]
    assert last.startswith(f"error: another process (pid {proc.pid} on ")
    assert f"holds the runs dir {runs} after waiting 0.5 s; wait for it to finish" in last
    assert sorted(p.name for p in runs.iterdir()) == [RUNS_DIR_LOCK]  # nothing ran


_CONFIGURE = """
import os, sys, time
from components._shared import registry
import mlflow
folder, me = sys.argv[1], sys.argv[2]
open(os.path.join(folder, "ready-" + me), "w").close()
while not os.path.exists(os.path.join(folder, "go")):  # both open the store at the same moment
    time.sleep(0.001)
client = registry.configure(f"sqlite:///{folder}/mlflow.db", "churn-model")
print(client.get_experiment_by_name("kfp-tf-gate/churn-model").experiment_id, flush=True)
"""


@pytest.mark.parametrize("attempt", range(2))
def test_two_first_runs_configure_a_fresh_sqlite_store_at_once(tmp_path, attempt):
    """Without the lock, one of the two fails with 'table ... already exists' or an alembic error."""
    procs = [subprocess.Popen([sys.executable, "-c", _CONFIGURE, str(tmp_path), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a process did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
    ids = {out.strip().splitlines()[-1] for out, _ in results}
    assert len(ids) == 1  # one experiment, seen by both
    assert read_holder(str(tmp_path / "mlflow.db.lock")) is None


def test_the_lock_file_of_a_store_sits_beside_it_and_names_it(tmp_path, stop):
    from components._shared import registry

    db = tmp_path / "mlflow.db"
    proc = _holder(str(db) + ".lock")
    stop(proc)
    saved = registry.STORE_LOCK_SECONDS
    registry.STORE_LOCK_SECONDS = 0.3
    try:
        with pytest.raises(LockTimeout, match=f"holds the MLflow store {db} "):
            registry.configure(f"sqlite:///{db}")
    finally:
        registry.STORE_LOCK_SECONDS = saved
    assert json.loads((tmp_path / "mlflow.db.lock").read_text())["pid"] == proc.pid
