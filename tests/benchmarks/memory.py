"""``python -m tests.benchmarks.memory`` (``make bench-memory``): peak RSS of each data step by rows.

Issue 19's target: a data step's peak RSS at 10M rows is at most 1.5x its peak at 1M, and 50M
rows pass ingest -> validate -> engineer on this machine. For each row count and input format,
each step runs in a fresh process (:mod:`tests.benchmarks.stage`: the component's wrapper with
real artifacts, as the pipeline runs it), its process tree watched by :mod:`procmon`, the peak
being the larger of the sampled tree and the step's own VmHWM.

Data: the bench's churn generator (:func:`tests.benchmarks.bench.generate`, 1M-row chunks with
unique ids), as a CSV file (up to :data:`MAX_CSV_ROWS`) and as a folder of Parquet shards (1M
rows each, so 50M rows take ~0.8 GB of disk instead of a 4.6 GB CSV; beyond 10M rows the chunks
repeat the first ten with new ids, see :func:`generate_parquet`). Cached in ``<out>/data``.

One function per step (``step_<name>``, registered in :data:`STEPS`), each taking the work folder
of one row count and format in which the earlier steps have run:

    python -m tests.benchmarks.memory --rows 1000000 10000000 50000000 --steps ingest
    python -m tests.benchmarks.memory --rows 100000 --formats csv --out /tmp/mem   # a quick look
    python -m tests.benchmarks.memory --scoring --rows 1000000 4000000   # evaluate, compare: batches vs whole split

Writes ``<out>/memory.json`` (merged with earlier runs in the same folder) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from tests.benchmarks.bench import (
    CHUNK_ROWS,
    ID_COLUMN,
    LABEL,
    MODEL_NAME,
    ROOT,
    _env,
    dataset,
    git_commit,
)
from tests.benchmarks.procmon import TreeMonitor, loadavg, machine

MAX_CSV_ROWS = 10_000_000  # larger inputs are measured as Parquet shards only
FORMATS = ("csv", "parquet")


# --------------------------------------------------------------------------- data


def parquet_dataset(rows: int, data_dir: str, log=print) -> str:
    """The churn dataset at ``rows`` rows as a folder of 1M-row Parquet shards (generated once)."""
    folder = os.path.join(data_dir, f"churn-{rows}-parquet")
    if os.path.isdir(folder):
        return folder
    t0 = time.perf_counter()
    code = f"from tests.benchmarks.memory import generate_parquet; generate_parquet({int(rows)}, {folder!r})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    log(f"generated {folder} ({rows:,} rows, {size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    return folder


def generate_parquet(rows: int, folder: str, distinct_chunks: int = 10) -> None:
    """The rows :func:`tests.benchmarks.bench.generate` writes as CSV, as ``part-NNNNN.parquet`` shards.

    Beyond ``distinct_chunks`` 1M-row chunks (10M rows), a chunk repeats chunk ``k % distinct_chunks``
    with its own unique ids: generating 50M distinct rows takes ~30 min here, and what a data step holds
    in memory does not depend on the values repeating. Resumes an interrupted generation.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.data import generate_churn

    tmp = f"{folder}.tmp"
    os.makedirs(tmp, exist_ok=True)
    done, k = 0, 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        part = os.path.join(tmp, f"part-{k:05d}.parquet")
        if not os.path.exists(part):
            if k < distinct_chunks:
                table = pa.Table.from_pandas(generate_churn(n, seed=7 + k), preserve_index=False)
            else:
                table = pq.read_table(os.path.join(tmp, f"part-{k % distinct_chunks:05d}.parquet")).slice(0, n)
            if rows > 2 * CHUNK_ROWS:  # as bench.generate: unique ids across chunks
                perm = np.random.default_rng(1000 + k).permutation(n) + done
                ids = pa.array([f"C{i:08d}" for i in perm])
                table = table.set_column(table.schema.get_field_index(ID_COLUMN), ID_COLUMN, ids)
            pq.write_table(table, f"{part}.partial", compression="zstd")
            os.replace(f"{part}.partial", part)
        done, k = done + n, k + 1
    os.replace(tmp, folder)


def data_uri(rows: int, fmt: str, data_dir: str, log=print) -> str:
    if fmt == "csv":
        return dataset(rows, data_dir, log=log)
    return parquet_dataset(rows, data_dir, log=log)


# --------------------------------------------------------------------------- one step


def run_step(work: str, step: str, rows: int, log=print) -> dict:
    """Run one step's wrapper in a fresh process on the work folder's config; its peak RSS and time."""
    config_path = os.path.join(work, "config.json")
    err_path = os.path.join(work, f"stage-{step}.err")
    with open(os.path.join(work, f"stage-{step}.out"), "w") as out, open(err_path, "w") as err:
        load_before, t0 = loadavg(), time.time()
        proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.stage", config_path, step],
                                cwd=ROOT, env=_env(), stdout=out, stderr=err)
        mon = TreeMonitor(proc.pid, root_label=step, label_children_as_root=True, interval=0.1).start()
        rc = proc.wait()
        wall = time.time() - t0
        mon.stop()
    child = {}
    res_path = os.path.join(work, f"result-{step}.json")
    if os.path.exists(res_path):
        with open(res_path) as fh:
            child = json.load(fh)
    peak = max(mon.peak_total, child.get("vm_hwm_bytes") or 0)
    r = {"step": step, "rows": rows, "returncode": rc, "wall_s": round(wall, 1), "peak_rss_bytes": peak,
         "peak_rss_mb": round(peak / 2**20), "rows_per_s": round(rows / wall), "loadavg_before": load_before,
         "noise": mon.noise()}
    if rc != 0 or "error" in child:
        r["error"] = child.get("error") or f"exit status {rc}"
        with open(err_path, errors="replace") as fh:
            r["stderr_tail"] = "\n".join(fh.read().splitlines()[-15:])
        log(f"  {step} failed: {r['error']}")
    else:
        log(f"  {step}: {wall:.1f} s, peak RSS {peak / 2**20:,.0f} MB")
    return r


def new_work(work: str, uri: str, rows: int) -> str:
    """A fresh work folder whose config the steps read (the parameters bench.run_stages passes)."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    params = {
        "data_uri": os.path.abspath(uri),
        "label": LABEL,
        "id_column": ID_COLUMN,
        "model_name": MODEL_NAME,
        "mlflow_tracking_uri": f"sqlite:///{os.path.join(work, 'mlflow.db')}",
        "serving_base_dir": os.path.join(work, "serving"),
        "checkpoint_root": os.path.join(work, "checkpoints"),
        "pipeline_run": f"memory-{rows}",
    }
    with open(os.path.join(work, "config.json"), "w") as fh:
        json.dump({"work": work, "params": params}, fh)
    return work


# --------------------------------------------------------------------------- steps


def step_ingest(work: str, rows: int, log=print) -> dict:
    """Ingest: read the source in batches, write the three splits as Parquet shards."""
    r = run_step(work, "ingest", rows, log)
    outputs = os.path.join(work, "artifacts", "ingest")
    if not r.get("error"):
        from components._shared import io

        r["split_rows"] = {s: io.parquet_num_rows(os.path.join(outputs, f"{s}_data")) for s in ("train", "eval", "test")}
        r["train_shards"] = len(io.parquet_files(os.path.join(outputs, "train_data")))
    return r


def step_validate(work: str, rows: int, log=print) -> dict:
    """Validate: the champion lookup (no champion here: a first run), then the schema, anomalies
    and PSI over every row of the three splits, read batch by batch (the peak is validate's)."""
    ref = run_step(work, "reference", rows, log)
    if ref.get("error"):
        return {**ref, "step": "validate"}
    r = run_step(work, "validate", rows, log)
    if not r.get("error"):
        from components._shared import io

        summary = io.read_json(os.path.join(work, "artifacts", "validate", "anomalies"))
        r["anomalies"] = len(summary["anomalies"])
        r["features"] = len(summary["features"])
    return r


def step_drift(work: str, rows: int, log=print) -> dict:
    """The drift report: evidently on a bounded sample of each side (20,000 rows by default)."""
    return run_step(work, "drift", rows, log)


def step_engineer(work: str, rows: int, log=print) -> dict:
    """Engineer: the transform spec fitted on the train split in two streaming passes."""
    r = run_step(work, "engineer", rows, log)
    if not r.get("error"):
        from components._shared import io

        spec = io.read_json(os.path.join(work, "artifacts", "engineer", "transform_spec"))
        r["train_rows"] = spec["train_rows"]
    return r


STEPS: dict[str, Callable] = {"ingest": step_ingest, "validate": step_validate, "drift": step_drift,
                              "engineer": step_engineer}  # in pipeline order; each needs the ones before


# --------------------------------------------------------------------------- scoring steps

# evaluate's and compare's scoring (components._shared.scoring.score_split) against the whole-split path they replaced
# (every column in one DataFrame), each in a fresh process.
COMPARE_SETUP = ("from components.compare.core import Gates, champion_scorer, compare, compare_with_champion\n"
                 "EV = {'metrics': {'auc': 0.8, 'ece': 0.01, 'max_auc_gap': 0.0}, 'threshold': 0.5}\n")
SCORING_CODE = {
    "evaluate": "from components.evaluate.core import evaluate\nauc = evaluate(M, T, T).metrics['auc']",
    "evaluate (whole split)": (
        "from components._shared import io, scoring\nfrom components._shared.labels import labels\n"
        "from components._shared.model import load_scorer\nfrom components._shared.threshold import read_threshold\n"
        "from components._shared.transform import encode\nfrom components.evaluate.core import evaluate_predictions\n"
        "spec = scoring.model_spec(M)\ndf = io.read_parquet(T)\n"
        "p = scoring.as_task_output(load_scorer(M)(encode(df, spec)), spec)\n"
        "ev = evaluate_predictions(labels(df, spec), p, None, None, df, spec, threshold=read_threshold(M))\n"
        "auc = ev.metrics['auc']"),
    # The model against itself as champion: both scored, then the paired bootstrap.
    "compare": (COMPARE_SETUP + "d = compare(M, T, EV, Gates(), champion_dir=M, champion_version='1')\n"
                "auc = d.champion['auc']"),
    "compare (whole split)": (
        COMPARE_SETUP + "from components._shared import io, scoring\nfrom components._shared.labels import labels\n"
        "spec = scoring.model_spec(M)\ndf = io.read_parquet(T)\np = scoring.score(M, df, spec)\n"
        "d = compare_with_champion(dict(EV['metrics']), labels(df, spec), p, df, Gates(), champion_scorer(M, spec), '1', "
        "threshold=0.5, spec=spec)\nauc = d.champion['auc']"),
}


def scoring_memory(rows_list: list, out: str) -> list:
    """Peak RSS of evaluate and compare on a test split of each row count: a small model (20,000 churn rows,
    one epoch) and its test split repeated to the row count as 1M-row shards (made once in ``out``)."""
    from components._shared import io
    from pipelines.data import generate_churn
    from tests.stage_helpers import prepare, train_small

    model = os.path.join(out, "model")
    if not os.path.exists(os.path.join(model, "model.keras")):
        train_small(prepare(generate_churn(20_000, seed=5), os.path.join(out, "small")), model, epochs=1)
    test = io.read_parquet_arrow(os.path.join(out, "small", "test.parquet"))
    results = []
    for rows in rows_list:
        path = os.path.join(out, f"test-{rows}")
        if not os.path.isdir(path):
            with io.ShardWriter(path) as w:
                for start in range(0, rows, test.num_rows):
                    w.write(test.slice(0, min(test.num_rows, rows - start)))
        for step, code in SCORING_CODE.items():
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
            script = (f"import time\nM, T, t0 = {model!r}, {path!r}, time.time()\n{code}\n"
                      "hwm = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM'))\n"
                      "print(auc, int(hwm.split()[1]) * 1024, time.time() - t0)")
            res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True,
                                 check=True)
            auc, peak, wall = res.stdout.split()[-3:]
            results.append({"step": step, "rows": rows, "format": "parquet", "peak_rss_bytes": int(peak),
                            "peak_rss_mb": round(int(peak) / 2**20), "wall_s": round(float(wall), 1), "auc": float(auc)})
            print(f"  {rows:,} rows, {step}: {float(wall):.1f} s, peak RSS {int(peak) / 2**20:,.0f} MB, AUC {auc}")
    return results


# --------------------------------------------------------------------------- main


def table(results: list) -> str:
    """Markdown: peak RSS (MB) per step and rows, and the 10M / 1M ratio."""
    keys = sorted({(r["step"], r["format"]) for r in results}, key=lambda k: (list(STEPS).index(k[0])
                                                                             if k[0] in STEPS else 99, k[1]))
    sizes = sorted({r["rows"] for r in results})
    head = "| step | input | " + " | ".join(f"{n:,} rows" for n in sizes) + " | 10M / 1M |"
    lines = [head, "|---|---|" + "---:|" * (len(sizes) + 1)]
    for step, fmt in keys:
        by = {r["rows"]: r for r in results if (r["step"], r["format"]) == (step, fmt)}
        cells = []
        for n in sizes:
            r = by.get(n)
            cells.append("" if r is None else ("failed" if r.get("error") else
                                                f"{r['peak_rss_mb']:,} MB, {r['wall_s']:.0f} s"))
        a, b = by.get(1_000_000), by.get(10_000_000)
        ratio = f"{b['peak_rss_bytes'] / a['peak_rss_bytes']:.2f}" if a and b and not (a.get("error") or
                                                                                        b.get("error")) else ""
        lines.append(f"| {step} | {fmt} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS))
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                    help=f"input formats; CSV only up to {MAX_CSV_ROWS:,} rows")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results"))
    ap.add_argument("--keep", action="store_true", help="keep each work folder (the steps' outputs)")
    ap.add_argument("--scoring", action="store_true",
                    help="measure evaluate and compare on a test split of each --rows (a small model; no data steps)")
    args = ap.parse_args(argv)
    if args.scoring:
        results = scoring_memory(args.rows, os.path.join(args.out, "scoring"))
        lines = ["| step | " + " | ".join(f"{n:,} rows" for n in args.rows) + " |", "|---|" + "---:|" * len(args.rows)]
        for step in SCORING_CODE:
            lines.append(f"| {step} | " + " | ".join(f"{r['peak_rss_mb']:,} MB, {r['wall_s']:.0f} s"
                                                    for r in results if r["step"] == step) + " |")
        print("\n".join(lines))
        return 0
    data_dir, path = os.path.join(args.out, "data"), os.path.join(args.out, "memory.json")
    done = []
    if os.path.exists(path):
        with open(path) as fh:
            done = json.load(fh)["results"]
    wanted = [s for s in STEPS if s in args.steps]
    last = max(list(STEPS).index(s) for s in wanted)
    for rows in args.rows:
        for fmt in args.formats:
            if fmt == "csv" and rows > MAX_CSV_ROWS:
                continue
            uri = data_uri(rows, fmt, data_dir)
            usage = shutil.disk_usage(args.out)
            print(f"{rows:,} rows, {fmt}: {uri} (disk free {usage.free / 1e9:.0f} GB)")
            work = new_work(os.path.join(args.out, "memory", f"{rows}-{fmt}"), uri, rows)
            for step in list(STEPS)[: last + 1]:
                r = STEPS[step](work, rows, log=print)
                r["format"] = fmt
                if step in wanted:
                    done = [d for d in done if (d["step"], d["rows"], d["format"]) != (step, rows, fmt)] + [r]
                if r.get("error"):
                    break
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            with open(path, "w") as fh:
                json.dump({"machine": machine(), "commit": git_commit(), "results": done}, fh, indent=2)
    print(table([d for d in done if d["step"] in wanted]))
    print(f"wrote {path}")
    return 0 if not any(d.get("error") for d in done if d["step"] in wanted) else 1


if __name__ == "__main__":
    sys.exit(main())
