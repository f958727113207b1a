"""Multi-worker training on loopback: N worker processes with TF_CONFIG on free local ports.

``start_workers`` is what a cluster does for ``python -m components.train.worker`` (one process per
replica, each with its own TF_CONFIG); the unit test of multi-worker training and this benchmark
both use it. The benchmark trains the same prepared data with one worker and with two and reports
examples/s after the first epoch, wall time and eval AUC::

    python -m tests.benchmarks.multiworker --rows 200000 --epochs 3

On this machine (2 cores shared by both workers, gRPC over loopback) two workers cannot be faster
than one: the figure measures the cost of the collective ops per step, not cluster speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from typing import Optional

WORKER = [sys.executable, "-m", "components.train.worker", "--config"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_workers(config_path: str, workers: int, log_dir: str, threads: int = 1,
                  env: Optional[dict] = None, tag: str = "") -> list:
    """Start ``workers`` replicas of the worker command (TF_CONFIG on fresh loopback ports); worker
    0 is the chief. Logs go to ``log_dir/worker-<i><tag>.log``. One worker gets no TF_CONFIG."""
    ports = free_ports(workers)
    procs = []
    for i in range(workers):
        e = {**os.environ, **(env or {}), "TF_NUM_INTRAOP_THREADS": str(threads),
             "TF_NUM_INTEROP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "1"}
        e.pop("TF_CONFIG", None)
        if workers > 1:
            e["TF_CONFIG"] = tf_config(ports, i)
        log = open(os.path.join(log_dir, f"worker-{i}{tag}.log"), "w")
        procs.append(subprocess.Popen(WORKER + [config_path], env=e, stdout=log, stderr=subprocess.STDOUT,
                                      cwd=os.getcwd()))
    return procs


def wait_all(procs: list, timeout: float) -> list:
    """Exit codes (None for a process still running after ``timeout`` s in all; it is killed)."""
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append(None)
    return codes


def write_config(prepared, out_dir: str, epochs: int, batch_size: int = 0, seed: int = 0) -> str:
    """A worker config (components/train/distributed.py) for ``prepared`` (tests.stage_helpers.Prepared)."""
    os.makedirs(out_dir, exist_ok=True)
    cfg = {"train_path": prepared.train, "eval_path": prepared.eval, "spec": prepared.spec,
           "model_dir": os.path.join(out_dir, "model"), "checkpoint_dir": os.path.join(out_dir, "checkpoints"),
           "result_path": os.path.join(out_dir, "result.json"),
           "config": {"epochs": epochs, "batch_size": batch_size, "seed": seed, "early_stopping_patience": 0}}
    path = os.path.join(out_dir, "config.json")
    with open(path, "w") as fh:
        json.dump(cfg, fh)
    return path


def run(prepared, out_dir: str, workers: int, epochs: int, batch_size: int, threads: int) -> dict:
    config = write_config(prepared, out_dir, epochs, batch_size)
    t0 = time.perf_counter()
    codes = wait_all(start_workers(config, workers, out_dir, threads=threads), timeout=3600)
    wall = time.perf_counter() - t0
    if codes != [0] * workers:
        raise RuntimeError(f"{workers} worker(s) exited with {codes}; logs in {out_dir}")
    with open(os.path.join(out_dir, "result.json")) as fh:
        result = json.load(fh)
    return {"workers": workers, "wall_seconds": round(wall, 1),
            "examples_per_second": round(result["examples_per_second"]),
            "eval_auc": round(result["metrics"]["eval_auc"], 4), "epochs_run": result["epochs_run"]}


def main(argv: Optional[list] = None) -> int:
    from pipelines.data import generate_churn
    from tests.stage_helpers import prepare

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=0, help="global batch; 0 = auto (as the pipeline)")
    ap.add_argument("--out", default="bench-results/multiworker")
    args = ap.parse_args(argv)
    data_dir = os.path.join(args.out, f"data-{args.rows}")
    prepared = prepare(generate_churn(args.rows, seed=7), data_dir)
    rows = []
    # One worker with both cores, one worker with one core (what each of two workers has), two workers.
    for workers, threads in ((1, 2), (1, 1), (2, 1)):
        r = run(prepared, os.path.join(args.out, f"w{workers}-t{threads}"), workers, args.epochs,
                args.batch_size, threads)
        r["threads_per_worker"] = threads
        rows.append(r)
        print(json.dumps(r), flush=True)
    one = next(r for r in rows if r["workers"] == 1 and r["threads_per_worker"] == 2)
    two = rows[-1]
    summary = {"rows": args.rows, "epochs": args.epochs, "runs": rows,
               "auc_difference": round(abs(two["eval_auc"] - one["eval_auc"]), 4),
               "throughput_ratio_2_to_1": round(two["examples_per_second"] / one["examples_per_second"], 3)}
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
