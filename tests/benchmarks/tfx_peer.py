"""The TFX peer (issue 18): the same CSV and an equivalent model under TFX's LocalDagRunner.

TFX 1.16 (the newest with Linux wheels for all its dependencies) needs Python 3.10, so it lives
in its own virtualenv, created once from ``tfx-requirements.txt`` (313 s here) under
``~/.cache/tfx-peer/venv-1.16`` (``TFX_PEER_VENV`` overrides; ``TFX_PYTHON`` names the Python
3.10 to create it with). The pipeline itself (``tfx_pipeline/run_pipeline.py`` and its module
file) runs in that interpreter and does not import this project; this module only starts it,
watches its process tree (peak RSS, CPU) and reads the JSON it writes.

    python -m tests.benchmarks.tfx_peer --setup                  # create the venv only
    python -m tests.benchmarks.tfx_peer --rows 100000            # one peer run, JSON on stdout
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "tfx-requirements.txt")
PIPELINE = os.path.join(HERE, "tfx_pipeline", "run_pipeline.py")
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "tfx-peer", "venv-1.16")
STAMP = "tfx-peer-stamp.json"
# TFX components and the step(s) of ours that do the same job, for the side-by-side table.
ROLES = (
    ("read and split", ("ingest",), ("CsvExampleGen",)),
    ("statistics, schema, validation", ("validate",), ("StatisticsGen", "SchemaGen", "ExampleValidator")),
    ("feature transform", ("engineer",), ("Transform",)),
    ("training", ("train",), ("Trainer",)),
    ("evaluation and the promotion gate", ("evaluate", "compare"), ("Evaluator",)),
    ("export and push", ("export", "deploy"), ("Pusher",)),
    ("side steps (champion reference, drift report)", ("reference", "drift"), ()),
)


def venv_path() -> str:
    return os.environ.get("TFX_PEER_VENV") or DEFAULT_VENV


def _requirements_hash() -> str:
    with open(REQUIREMENTS, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def venv_status(venv: Optional[str] = None) -> dict:
    """The stamp of a complete venv (with how long it took to create), or {} when it is missing
    or was made from other requirements."""
    venv = venv or venv_path()
    try:
        with open(os.path.join(venv, STAMP)) as fh:
            stamp = json.load(fh)
    except (OSError, ValueError):
        return {}
    if stamp.get("requirements") != _requirements_hash():
        return {}
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        return {}
    return stamp


def find_python310() -> str:
    """A Python 3.10 that runs: $TFX_PYTHON, pyenv's, then PATH's (a pyenv shim on PATH fails
    when no 3.10 is selected, so each candidate is tried)."""
    candidates = [os.environ.get("TFX_PYTHON")]
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.10.*/bin/python3.10")), reverse=True
    )
    candidates.append(shutil.which("python3.10"))
    for c in candidates:
        if not c or not os.path.exists(c):
            continue
        ok = subprocess.run(
            [c, "-c", "import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))"],
            capture_output=True,
        )
        if ok.returncode == 0:
            return c
    raise SystemExit(
        "error: the TFX peer needs Python 3.10 (TFX 1.16 has no wheels for newer Pythons); "
        "none runs from $TFX_PYTHON, ~/.pyenv/versions/3.10.* or PATH"
    )


def ensure_venv(venv: Optional[str] = None, log=print) -> dict:
    """Create the TFX virtualenv unless a complete one exists; returns its stamp."""
    venv = venv or venv_path()
    stamp = venv_status(venv)
    if stamp:
        return stamp
    python = find_python310()
    log(
        f"  creating the TFX peer's virtualenv in {venv} (TFX 1.16, Python 3.10): "
        "about 5 minutes the first time"
    )
    t0 = time.time()
    shutil.rmtree(venv, ignore_errors=True)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    subprocess.run([python, "-m", "venv", venv], check=True)
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    log_path = venv + ".install.log"
    with open(log_path, "w") as fh:
        for args in (["-U", "pip", "setuptools", "wheel"], ["-r", REQUIREMENTS]):
            rc = subprocess.run(pip + args, stdout=fh, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                break
    if rc != 0:
        with open(log_path, errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        raise SystemExit(f"error: installing TFX into {venv} failed ({why}); full log in {log_path}")
    stamp = {
        "requirements": _requirements_hash(),
        "python": python,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "install_s": round(time.time() - t0, 1),
    }
    with open(os.path.join(venv, STAMP), "w") as fh:
        json.dump(stamp, fh)
    log(f"  TFX virtualenv ready in {stamp['install_s']:.0f} s")
    return stamp


def batch_size_of_ours(rows: int) -> int:
    """The batch size ``python -m pipelines run`` picks for ``rows`` (70 % of them train)."""
    from components.train.core import auto_batch_size

    return auto_batch_size(int(rows * 0.7))


def run_peer(
    csv: str,
    rows: int,
    work: str,
    epochs: int = 2,
    batch_size: Optional[int] = None,
    learning_rate: float = 0.002,
    hidden_units: str = "64,32",
    workers: int = 2,
    timeout: Optional[float] = None,
    quiet_wait: float = 0.0,
    log=print,
    venv: Optional[str] = None,
) -> dict:
    """One TFX pipeline run on ``csv``; wall time measured from here (the whole process, imports
    included, as for ours), per-component times from MLMD, test AUC from the Evaluator."""
    from tests.benchmarks.bench import wait_for_quiet
    from tests.benchmarks.procmon import TreeMonitor, loadavg, run_figures

    venv = venv or venv_path()
    stamp = ensure_venv(venv, log=log)
    batch_size = batch_size or batch_size_of_ours(rows)
    os.makedirs(work, exist_ok=True)
    out_json = os.path.join(work, "tfx-result.json")
    if os.path.exists(out_json):
        os.remove(out_json)
    cmd = [
        os.path.join(venv, "bin", "python"),
        PIPELINE,
        "--csv", os.path.abspath(csv),
        "--rows", str(rows),
        "--root", os.path.join(work, "tfx-run"),
        "--out", out_json,
        "--epochs", str(epochs),
        "--batch-size", str(batch_size),
        "--learning-rate", str(learning_rate),
        "--hidden-units", hidden_units,
        "--workers", str(workers),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    busy_before = wait_for_quiet(quiet_wait, log=log) if quiet_wait else None
    load_before = loadavg()
    log_path = os.path.join(work, "tfx-run.log")
    with open(log_path, "w") as fh:
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
        mon = TreeMonitor(proc.pid, root_label="tfx").start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM: the script stops the run and still writes what finished (MLMD times).
            log(f"  TFX peer still running after {timeout:.0f} s: stopping it")
            proc.terminate()
            try:
                rc = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        t1 = time.time()
        mon.stop()
    command = " ".join(["<tfx venv>/bin/python", os.path.relpath(PIPELINE, os.getcwd()), *cmd[2:]])
    result: dict = {
        **run_figures(command, rc, t0, t1, load_before, busy_before, mon),
        "venv": {"path": venv, "install_s": stamp.get("install_s"), "created": stamp.get("created")},
        "log": log_path,
    }
    try:
        with open(out_json) as fh:
            inner = json.load(fh)
    except (OSError, ValueError):
        inner = {}
    result.update(inner)
    result["wall_s"] = t1 - t0  # the outside measurement, not the script's own
    if rc != 0 or not inner or inner.get("error"):
        with open(log_path, errors="replace") as fh:
            tail = [ln for ln in fh.read().splitlines() if ln.strip()]
        result["error"] = inner.get("error") or (tail[-1] if tail else f"exit status {rc}")
        log(f"  TFX peer run failed: {result['error'][:300]}")
    comps = inner.get("components") or {}
    if comps:
        starts = [c["start"] for c in comps.values()]
        ends = [c["end"] for c in comps.values()]
        result["outside_components_s"] = result["wall_s"] - sum(c["wall_s"] for c in comps.values())
        result["before_first_component_s"] = min(starts) - t0
        result["after_last_component_s"] = t1 - max(ends)
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.tfx_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", action="store_true", help="create the TFX virtualenv and stop")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="Beam direct-runner processes")
    p.add_argument("--out", default="bench-results", help="results folder (gitignored)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.setup:
        stamp = ensure_venv()
        print(json.dumps(stamp))
        return 0
    from tests.benchmarks import bench

    out = os.path.abspath(args.out)
    csv = bench.dataset(args.rows, os.path.join(out, "data"))
    res = run_peer(csv, args.rows, os.path.join(out, "tfx", str(args.rows)), epochs=args.epochs,
                   workers=args.workers)
    print(json.dumps({k: v for k, v in res.items() if k != "noise"}, indent=1, default=str))
    return 1 if res.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
