"""``python -m tests.benchmarks.predict`` (``make bench-predict``): batch-scoring throughput and memory.

A churn model is trained once (20k rows, 2 epochs, the unit tests' helpers) and laid out as the
prediction pipeline's ``resolve-model`` writes it; then, for each row count, the churn table (generated
in 1M-row Parquet shards, cached in ``<out>/data``) is scored by ``components.predict.core.predict`` in
a fresh process, to a folder of Parquet shards. Reported per run: rows/s of the scoring loop (read,
check, encode, score, write), the process's wall time including imports and the reference scoring,
and its peak RSS (``VmHWM``). Results go to ``<out>/predict.json``.

    python -m tests.benchmarks.predict                        # 1M rows, Parquet and CSV input
    python -m tests.benchmarks.predict --rows 10000000 --formats parquet
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHUNK_ROWS = 1_000_000

_CHILD = """
def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a big parent would
    # report the parent's peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import json, os, sys, time
t0 = time.perf_counter()
from components.predict.core import predict
from components.predict.resolve import load
c0 = sum(os.times()[:2])
summary = predict(sys.argv[1], load(sys.argv[2]), sys.argv[3]).summary
cpu = sum(os.times()[:2]) - c0
print(json.dumps({"rows": summary["rows"], "rows_per_second": summary["rows_per_second"],
                  "scoring_seconds": summary["seconds"],
                  "cpu_seconds_in_predict": cpu, "rows_per_cpu_second": summary["rows"] / cpu, "wall_seconds": time.perf_counter() - t0,
                  "peak_rss_mb": peak_rss_mb(),
                  "files": len(summary["files"]), "warnings": summary["warnings"]}))
"""


def build_model(folder: str) -> str:
    """Train the churn model once into ``folder`` (prediction layout); returns the folder."""
    from components._shared import io
    from components._shared.champion import stage_artifacts
    from components.predict.resolve import INFO_FILE
    from pipelines.data import generate_churn
    from tests.stage_helpers import prepare, train_small

    if os.path.exists(os.path.join(folder, INFO_FILE)):
        return folder
    prepared = prepare(generate_churn(20_000, seed=7), os.path.join(folder, "prep"))
    model_dir = os.path.join(folder, "model")
    train_small(prepared, model_dir, epochs=2, batch_size=512)
    stage_artifacts(folder, model_dir, "", prepared.schema, prepared.train, {}, {}, {})
    io.write_json({"name": "churn-model", "version": "1", "requested": "benchmark", "threshold": 0.5,
                   "auc_at_training": None}, os.path.join(folder, INFO_FILE))
    return folder


def table(rows: int, fmt: str, data_dir: str) -> str:
    """The churn table without its label at ``rows`` rows: a folder of 1M-row shards (cached)."""
    import numpy as np

    from components._shared import io
    from pipelines.data import ID_COLUMN, LABEL, generate_churn

    folder = os.path.join(data_dir, f"score-{rows}-{fmt}")
    if os.path.exists(folder):
        return folder
    tmp = folder + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    done, k = 0, 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        df = generate_churn(n, seed=100 + k).drop(columns=[LABEL])
        df[ID_COLUMN] = [f"C{i:09d}" for i in np.arange(done, done + n)]
        path = os.path.join(tmp, f"part-{k:04d}.{fmt}")
        if fmt == "parquet":
            io.write_parquet(df, path)
        else:
            df.to_csv(path, index=False)
        done, k = done + n, k + 1
    os.replace(tmp, folder)
    return folder


def score(data: str, model: str, out: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, data, model, out], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--formats", nargs="+", choices=("parquet", "csv"), default=["parquet", "csv"])
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest is reported")
    p.add_argument("--out", default="bench-results")
    args = p.parse_args(argv)
    import shutil

    out = os.path.abspath(args.out)
    model = build_model(os.path.join(out, "predict-model"))
    results = []
    for rows in args.rows:
        for fmt in args.formats:
            data = table(rows, fmt, os.path.join(out, "data"))
            dest = os.path.join(out, "predictions", f"{rows}-{fmt}")
            runs = []
            for _ in range(args.repeat):
                load = os.getloadavg()[0]
                runs.append({"input_rows": rows, "format": fmt, "load_before": round(load, 2),
                             **score(data, model, dest)})
                shutil.rmtree(dest, ignore_errors=True)
            r = max(runs, key=lambda x: x["rows_per_second"])
            r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
            r["rows_per_second_all_runs"] = [x["rows_per_second"] for x in runs]
            results.append(r)
            print(f"{rows:>11,} rows {fmt:8} {r['rows_per_second']:>12,.0f} rows/s scoring (best of {len(runs)}; "
                  f"{r['rows_per_cpu_second']:,.0f} rows per CPU-second)  {r['wall_seconds']:6.1f} s process  "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB  (load {r['load_before']:.1f})")
    path = os.path.join(out, "predict.json")
    old = json.load(open(path)) if os.path.exists(path) else []
    with open(path, "w") as fh:
        json.dump(old + [{"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}], fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
