"""Benchmark harness: cached datasets, the end-to-end CLI run, per-step runs, start-up times.

Everything heavy runs in child processes, so the numbers are those of fresh processes (as in
the pipeline) and each one's peak RSS can be watched from here (see :mod:`procmon`).
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Optional

from tests.benchmarks.procmon import TreeMonitor, loadavg, run_figures
from tests.benchmarks.stage import COMPONENTS, ORDER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEL = "churned"
ID_COLUMN = "customer_id"
MODEL_NAME = "churn-model"
FUNC_TO_STAGE: dict = {}
for _stage, (_, _func) in COMPONENTS.items():
    FUNC_TO_STAGE.setdefault(_func, _stage)  # a pipeline task is its first stage (not reference_champion)
TASK_TO_STAGE = {func.replace("_", "-"): stage for func, stage in FUNC_TO_STAGE.items()}
DATA_STAGES = ("ingest", "validate", "engineer")
CHUNK_ROWS = 1_000_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d+) - \w+ - (.*)$")


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop(
        "MLFLOW_TRACKING_URI", None
    )  # the run's own SQLite store, as `python -m pipelines run` defaults
    return env


def wait_for_quiet(max_wait: float, busy_cores: float = 0.5, log=print) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``busy_cores`` cores.

    The machine is shared; starting a measurement in a quiet moment makes numbers from one run
    comparable. Returns the busy cores measured last (over a 2 s window).
    """
    import psutil

    deadline = time.time() + max_wait
    cores = os.cpu_count() or 1
    busy = psutil.cpu_percent(interval=2.0) / 100 * cores
    while busy > busy_cores and time.time() < deadline:
        busy = psutil.cpu_percent(interval=2.0) / 100 * cores
    if busy > busy_cores and max_wait > 0:
        log(
            f"  (machine still busy: {busy:.1f} cores in use by others after waiting {max_wait:.0f} s)"
        )
    return round(busy, 2)


def git_commit() -> Optional[str]:
    """The commit the measured code is at (``git log -1 --format=%h``), "+dirty" with local edits
    to the code a run executes (components/, pipelines/)."""
    try:
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "components", "pipelines"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------- data


def dataset(rows: int, data_dir: str, log=print) -> str:
    """The default churn dataset at ``rows`` rows, as CSV, generated once and cached by row count.

    Generated in a child process, so this one stays small (its children's peak RSS is measured).
    """
    path = os.path.join(data_dir, f"churn-{rows}.csv")
    if os.path.exists(path):
        return path
    os.makedirs(data_dir, exist_ok=True)
    t0 = time.perf_counter()
    code = f"from tests.benchmarks.bench import generate; generate({int(rows)}, {path!r})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True)
    log(
        f"generated {path} ({rows:,} rows, {os.path.getsize(path) / 1e6:.0f} MB) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return path


def generate(rows: int, path: str) -> None:
    """Up to 2M rows this is exactly ``generate_churn(rows, seed=7)`` (what ``python -m pipelines
    run`` writes). Larger tables are written in 1M-row chunks (seed 7 + chunk, ids made unique), so
    10M rows need ~2 GB to generate instead of ~15 GB."""
    from pipelines.data import ID_COLUMN as ID
    from pipelines.data import generate_churn

    tmp = f"{path}.tmp-{os.getpid()}"
    if rows <= 2 * CHUNK_ROWS:
        generate_churn(rows, seed=7).to_csv(tmp, index=False)
    else:
        import numpy as np

        done, k = 0, 0
        while done < rows:
            n = min(CHUNK_ROWS, rows - done)
            df = generate_churn(n, seed=7 + k)
            perm = np.random.default_rng(1000 + k).permutation(n) + done
            df[ID] = [f"C{i:08d}" for i in perm]
            df.to_csv(tmp, index=False, header=(k == 0), mode="w" if k == 0 else "a")
            done, k = done + n, k + 1
    os.replace(tmp, path)


# --------------------------------------------------------------------------- end to end


def _log_times(log_path: str, day: datetime.date) -> list:
    """(epoch seconds, message) for every timestamped line the local runner wrote."""
    out, prev = [], None
    with open(log_path, errors="replace") as fh:
        for raw in fh:
            m = LOG_LINE.match(ANSI.sub("", raw.rstrip("\n")))
            if not m:
                continue
            h, mi, s, frac, msg = m.groups()
            t = datetime.datetime.combine(
                day, datetime.time(int(h), int(mi), int(s), int(frac.ljust(6, "0")[:6]))
            )
            ts = t.timestamp()
            if prev is not None and ts < prev - 3600:  # past midnight
                day += datetime.timedelta(days=1)
                ts += 86400
            prev = ts
            out.append((ts, msg))
    return out


def task_times(log_path: str, started: float) -> dict:
    """Per task: start, end, status, from the runner's "Executing task" / "finished" lines."""
    day = datetime.datetime.fromtimestamp(started).date()
    tasks: dict = {}
    pipeline: dict = {}
    for ts, msg in _log_times(log_path, day):
        m = re.match(r"Executing task '([\w-]+)'", msg)
        if m:
            tasks.setdefault(m.group(1), {})["start"] = ts
            continue
        m = re.match(r"Task '([\w-]+)' finished with status (\w+)", msg)
        if m:
            tasks.setdefault(m.group(1), {}).update(end=ts, status=m.group(2))
            continue
        if msg.startswith("Running pipeline"):
            pipeline["start"] = ts
        elif re.match(r"Pipeline '.*' finished with status", msg):
            pipeline["end"] = ts
    for t in tasks.values():
        if "start" in t and "end" in t:
            t["wall_s"] = t["end"] - t["start"]
    return {"tasks": tasks, "pipeline": pipeline}


def _artifact_metadata(root: str, task: str, output: str) -> dict:
    hits = sorted(glob.glob(os.path.join(root, "**", task, "executor_output.json"), recursive=True))
    if not hits:
        return {}
    with open(hits[-1]) as fh:
        out = json.load(fh)
    for art in (out.get("artifacts", {}).get(output, {}) or {}).get("artifacts", []):
        return {k: v for k, v in (art.get("metadata") or {}).items() if k != "display_name"}
    return {}


# Smoke mode: a model trained for one epoch on a few hundred rows must still reach deploy. The
# gates stay configured (with none, nothing is ever promoted) but cannot fail.
GATES_OFF = {"min_auc": 0.0, "max_ece": 1.0, "max_auc_gap": 1.0}


def run_end_to_end(
    csv: str,
    rows: int,
    runs_dir: str,
    epochs: Optional[int] = None,
    gates_off: bool = False,
    quiet_wait: float = 0.0,
    log=print,
    fresh: bool = True,
) -> dict:
    """``python -m pipelines run --data CSV`` in a fresh runs dir (so the run promotes and deploys),
    or with ``fresh=False`` in the runs dir as an earlier run left it (a champion to validate
    against, re-score and, usually, keep)."""
    cmd = [
        sys.executable,
        "-m",
        "pipelines",
        "run",
        "--data",
        csv,
        "--label",
        LABEL,
        "--id-column",
        ID_COLUMN,
        "--runs-dir",
        runs_dir,
        "--model-name",
        MODEL_NAME,
        "--json",
    ]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    if gates_off:
        for k, v in GATES_OFF.items():
            cmd += ["--param", f"{k}={v}"]
    if fresh:
        shutil.rmtree(runs_dir, ignore_errors=True)
    os.makedirs(runs_dir, exist_ok=True)
    busy_before = wait_for_quiet(quiet_wait, log=log) if quiet_wait else None
    load_before = loadavg()
    out_path, err_path = os.path.join(runs_dir, "cli.out"), os.path.join(runs_dir, "cli.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=err)
        mon = TreeMonitor(proc.pid, root_label="runner").start()
        rc = proc.wait()
        t1 = time.time()
        mon.stop()
    result: dict = {**run_figures(" ".join(["python"] + cmd[1:]), rc, t0, t1, load_before, busy_before, mon),
                    "rss_samples": mon.samples}
    with open(err_path, errors="replace") as fh:
        err_text = fh.read()
    summary = None
    try:
        with open(out_path) as fh:
            summary = json.loads(fh.read())
    except ValueError:
        hits = sorted(glob.glob(os.path.join(runs_dir, "run-*", "summary.json")))
        if hits:
            with open(hits[-1]) as fh:
                summary = json.load(fh)
    if rc != 0 or summary is None:
        result["error"] = (err_text.strip().splitlines() or [f"exit status {rc}"])[-1]
        log(f"  end-to-end run failed: {result['error']}")
    logs = sorted(glob.glob(os.path.join(runs_dir, "run-*", "pipeline.log")))
    steps: dict = {}
    runner: dict = {}
    if logs:
        result["log"] = logs[-1]
        parsed = task_times(logs[-1], t0)
        for task, t in parsed["tasks"].items():
            stage = TASK_TO_STAGE.get(task, task)
            func = COMPONENTS.get(stage, (None, task))[1]
            steps[stage] = {
                "wall_s": t.get("wall_s"),
                "start_s": t["start"] - t0 if "start" in t else None,  # since the CLI started
                "end_s": t["end"] - t0 if "end" in t else None,
                "status": t.get("status"),
                "peak_rss_bytes": mon.peaks.get(func),
                "cpu_s": mon.cpu_seconds.get(func),
                "rows_per_s": rows / t["wall_s"] if t.get("wall_s") else None,
            }
        starts = [t["start"] for t in parsed["tasks"].values() if "start" in t]
        ends = [t["end"] for t in parsed["tasks"].values() if "end" in t]
        # Independent tasks may run side by side: the time some task runs is the union of their
        # intervals, and the runner's own time is the rest (not the wall minus the sum of walls).
        task_busy = busy_seconds(
            [(t["start"], t["end"]) for t in parsed["tasks"].values() if "start" in t and "end" in t]
        )
        result["task_walls_sum_s"] = sum(s["wall_s"] or 0 for s in steps.values())
        result["task_busy_s"] = task_busy
        if starts and ends:
            runner = {
                "before_first_task_s": min(starts)
                - t0,  # CLI imports, preflight, MLflow set-up, pipeline build
                "after_last_task_s": t1 - max(ends),  # summary, exit
                "between_tasks_s": (max(ends) - min(starts)) - task_busy,
            }
        runner["total_s"] = result["wall_s"] - task_busy
        runner["peak_rss_bytes"] = mon.peaks.get("runner")
        runner["cpu_s"] = mon.cpu_seconds.get("runner")
    result["steps"] = {s: steps[s] for s in ORDER if s in steps}
    result["runner"] = runner
    if summary:
        run_dir = summary.get("run_dir") or os.path.dirname(result.get("log", ""))
        root = os.path.join(run_dir, "pipeline_root")
        result["summary"] = {
            k: summary.get(k)
            for k in (
                "run_id",
                "promoted",
                "model_version",
                "reasons",
                "tflite_max_abs_diff",
                "wall_seconds",
            )
        }
        result["challenger"] = {
            k: v
            for k, v in (summary.get("challenger") or {}).items()
            if k in ("auc", "pr_auc", "ece", "f1")
        }
        result["export"] = summary.get("export") or {}
        result["train"] = _artifact_metadata(root, "train-model", "metrics")
        result["ingest"] = _artifact_metadata(root, "ingest-data", "metrics")
    train_wall = (steps.get("train") or {}).get("wall_s")
    if train_wall:
        result["outside_training_s"] = result["wall_s"] - train_wall
        result["outside_training_share"] = result["outside_training_s"] / result["wall_s"]
    if steps:
        result["peak_rss_step"] = max(
            ((s, v["peak_rss_bytes"] or 0) for s, v in steps.items()), key=lambda kv: kv[1]
        )
    return result


def busy_seconds(intervals: list) -> float:
    """Length of the union of ``(start, end)`` intervals: the time at least one of them runs."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


# --------------------------------------------------------------------------- per step


def _import_times(err_path: str) -> dict:
    """Sum of top-level ``-X importtime`` cumulative times, before and after the call marker."""
    from tests.benchmarks.stage import CALL_MARKER

    phase = "startup"
    totals = {"startup": 0, "call": 0}
    top: dict = {"startup": {}, "call": {}}
    with open(err_path, errors="replace") as fh:
        for line in fh:
            if line.strip() == CALL_MARKER:
                phase = "call"
                continue
            if not line.startswith("import time:"):
                continue
            parts = line[len("import time:") :].split("|")
            if len(parts) != 3 or not parts[1].strip().isdigit():
                continue
            name = parts[2].rstrip("\n")
            if len(name) - len(name.lstrip(" ")) > 1:  # nested: counted in its parent's cumulative
                continue
            us = int(parts[1])
            totals[phase] += us
            top[phase][name.strip()] = top[phase].get(name.strip(), 0) + us
    best = {
        p: sorted(((n, round(us / 1e6, 3)) for n, us in d.items()), key=lambda kv: -kv[1])[:5]
        for p, d in top.items()
    }
    return {
        "startup_imports_s": totals["startup"] / 1e6,
        "call_imports_s": totals["call"] / 1e6,
        "top_call_imports": best["call"],
        "top_startup_imports": best["startup"],
    }


def run_stages(
    csv: str,
    rows: int,
    work: str,
    stages: list,
    epochs: Optional[int] = None,
    stall: bool = True,
    gates_off: bool = False,
    quiet_wait: float = 0.0,
    log=print,
) -> dict:
    """Each step's wrapper in its own fresh process, in pipeline order, on the same data."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tracking = f"sqlite:///{os.path.join(work, 'mlflow.db')}"
    # As run_local: the experiment's artifacts live under the work folder.
    # No MLflow set-up here: as under `python -m pipelines run`, the first step that needs the
    # store creates it (and pays for that).
    params = {
        "data_uri": os.path.abspath(csv),
        "label": LABEL,
        "id_column": ID_COLUMN,
        "model_name": MODEL_NAME,
        "mlflow_tracking_uri": tracking,
        "serving_base_dir": os.path.join(work, "serving"),
        "checkpoint_root": os.path.join(work, "checkpoints"),
        "pipeline_run": f"bench-{rows}",
    }
    if epochs:
        params["epochs"] = epochs
    if gates_off:
        params.update(GATES_OFF)
    config_path = os.path.join(work, "config.json")
    with open(config_path, "w") as fh:
        json.dump({"work": work, "params": params}, fh)
    results: dict = {}
    needed = set(stages)
    last = max(ORDER.index(s) for s in stages)
    for stage in ORDER[: last + 1]:  # earlier steps run too when a later one needs their outputs
        if stage == "deploy" and results.get("compare", {}).get("returned") is False:
            results["deploy"] = {"skipped": "compare did not promote"}
            continue
        err_path = os.path.join(work, f"stage-{stage}.err")
        busy_before = wait_for_quiet(quiet_wait, log=log) if quiet_wait else None
        with open(os.path.join(work, f"stage-{stage}.out"), "w") as out, open(err_path, "w") as err:
            load_before = loadavg()
            t0 = time.time()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-X",
                    "importtime",
                    "-m",
                    "tests.benchmarks.stage",
                    config_path,
                    stage,
                ],
                cwd=ROOT,
                env=_env(),
                stdout=out,
                stderr=err,
            )
            mon = TreeMonitor(proc.pid, root_label=stage, label_children_as_root=True).start()
            rc = proc.wait()
            t1 = time.time()
            mon.stop()
        res_path = os.path.join(work, f"result-{stage}.json")
        child = {}
        if os.path.exists(res_path):
            with open(res_path) as fh:
                child = json.load(fh)
        r: dict = {
            "wall_s": t1 - t0,
            "returncode": rc,
            "loadavg_before": load_before,
            "other_cores_busy_before": busy_before,
            "noise": mon.noise(),
            # The sampled tree (this step and evidently's child) or the step's own exact peak.
            "peak_rss_bytes": max(mon.peak_total, child.get("vm_hwm_bytes") or 0),
            "peak_rss_main_bytes": child.get("vm_hwm_bytes"),
            "rows_per_s": rows / (t1 - t0),
            "measured": stage in needed,
        }
        r["cpu_s"] = sum(mon.cpu_seconds.values())
        if "t_ready" in child:
            r["startup_s"] = child["t_ready"] - t0
            r["startup_cpu_s"] = child.get("cpu_ready")
        if "t_done" in child:
            r.update(_import_times(err_path))
            call = child["t_done"] - child["t_call"]
            r["call_s"] = call
            r["call_cpu_s"] = (
                child["cpu_done"] - child["cpu_call"]
            )  # this process only (not evidently's)
            r["work_s"] = max(0.0, call - r["call_imports_s"])
            r["startup_and_imports_s"] = r["startup_s"] + r["call_imports_s"]
            r["tensorflow_imported"] = child.get("tensorflow_imported")
            r["heavy_modules"] = child.get("heavy_modules")
            r["returned"] = child.get("returned")
            outs = child.get("outputs", {})
            r["metrics"] = (outs.get("metrics") or {}).get("metadata", {})
        if rc != 0 or "error" in child:
            r["error"] = child.get("error") or f"exit status {rc}"
            with open(err_path, errors="replace") as fh:
                tail = [ln for ln in fh.read().splitlines() if not ln.startswith("import time:")]
            r["stderr_tail"] = "\n".join(tail[-15:])
            results[stage] = r
            log(f"  step {stage} failed: {r['error']}")
            break
        results[stage] = r
        log(
            f"  step {stage}: {r['wall_s']:.1f} s (start-up {r.get('startup_s', 0):.2f} s, imports in step "
            f"{r.get('call_imports_s', 0):.2f} s), peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MB"
        )
        if stage == "train" and stall:
            results["train"]["stall"] = _stall(work, log)
    return results


def _stall(work: str, log=print) -> dict:
    from tests.benchmarks.stage import _produced

    produced = _produced(work)
    out = os.path.join(work, "stall.json")
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.stall",
            produced["model"]["uri"],
            produced["train_data"]["uri"],
            out,
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not os.path.exists(out):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"  stall probe failed: {tail}")
        return {"error": tail}
    with open(out) as fh:
        res = json.load(fh)
    res["probe_wall_s"] = time.time() - t0
    log(
        f"  input stall estimate: {res['stall_seconds_per_epoch']:.2f} s per epoch ({res['stall_share']:.0%})"
    )
    return res
