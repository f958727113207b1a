"""``python -m tests.benchmarks.bigquery``: rows/s of bq:// ingest against the emulator.

The churn table (:func:`tests.benchmarks.memory.parquet_dataset`, 1M-row Parquet shards, cached in
``<out>/data``) is loaded into the BigQuery emulator (tests/fakes/bigquery_server.py, a separate
process on loopback); then ``components.ingest.core.ingest`` runs on ``bq://`` in a fresh process
with the real clients: statistics and split in SQL, each split through the Storage Read API in
parallel streams to Parquet shards. For comparison the same rows are ingested from the Parquet
files. Reported: wall time and rows/s of each, seconds of the SQL phase and of each split's read,
streams per split, and each ingest process's peak RSS (``VmHWM``). Results go to ``<out>/bigquery.json``.

The emulator runs on DuckDB on this machine, sharing its 2 cores with the ingest process: the
figures measure our client path (sessions, parallel streams, Arrow decoding, Parquet writing), not
BigQuery's servers, its quotas or its network.

    python -m tests.benchmarks.bigquery                 # 1M rows
    python -m tests.benchmarks.bigquery --rows 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEL = "churned"

_CHILD = """
import json, os, sys, time
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
from components.ingest.core import ingest
out = sys.argv[2]
t1 = time.perf_counter()
r = ingest(sys.argv[1], "churned", os.path.join(out, "train"), os.path.join(out, "eval"), os.path.join(out, "test"))
t2 = time.perf_counter()
print(json.dumps({"rows": sum(r.rows.values()), "split_rows": r.rows, "id_column": r.id_column,
                  "ingest_seconds": t2 - t1, "wall_seconds": t2 - t0, "peak_rss_mb": peak_rss_mb(),
                  "read_sessions": getattr(r, "read_sessions", None)}))
"""


def _child(uri: str, out: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, uri, out], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"ingest of {uri} failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rows_per_second"] = result["rows"] / result["ingest_seconds"]
    return result


def bench_bigquery(rows: int, out: str, log=print) -> dict:
    """Load ``rows`` churn rows into the emulator, ingest them from bq:// and from Parquet; the figures."""
    import pyarrow.parquet as pq

    from tests.benchmarks.memory import parquet_dataset
    from tests.benchmarks.procmon import machine
    from tests.fakes.bigquery_server import BigQueryEmulator

    folder = parquet_dataset(rows, os.path.join(out, "data"), log=log)
    work = os.path.join(out, f"bigquery-{rows}")
    with BigQueryEmulator(start_timeout=120) as bq:
        t0 = time.perf_counter()
        table_id = f"{bq.project}.bench.churn"
        for f in sorted(os.listdir(folder)):
            bq.load_arrow(pq.read_table(os.path.join(folder, f)), table_id)
        load_seconds = time.perf_counter() - t0
        log(f"loaded {rows:,} rows into the emulator in {load_seconds:.1f} s")
        by_bq = _child(f"bq://{table_id}", os.path.join(work, "bq"), bq.env())
    log(f"bq:// ingest: {by_bq['rows_per_second']:,.0f} rows/s")
    by_file = _child(folder, os.path.join(work, "file"), {})
    log(f"Parquet ingest: {by_file['rows_per_second']:,.0f} rows/s")
    return {"rows": rows, "load_seconds": load_seconds, "bigquery": by_bq, "parquet": by_file, "machine": machine(),
            "command": f"python -m tests.benchmarks.bigquery --rows {rows}"}


def table(result: dict) -> str:
    bq, pf = result["bigquery"], result["parquet"]
    s = bq["read_sessions"]
    reads = ", ".join(f"{k} {s[k]['seconds']:.1f} s / {s[k]['streams']} streams" for k in ("train", "eval", "test"))
    return "\n".join([
        "| source | rows | ingest s | rows/s | peak RSS MB | detail |",
        "|---|---|---|---|---|---|",
        f"| bq:// (emulator) | {bq['rows']:,} | {bq['ingest_seconds']:.1f} | {bq['rows_per_second']:,.0f} | "
        f"{bq['peak_rss_mb']:.0f} | SQL {s['sql']['seconds']:.1f} s; reads: {reads} |",
        f"| Parquet files | {pf['rows']:,} | {pf['ingest_seconds']:.1f} | {pf['rows_per_second']:,.0f} | "
        f"{pf['peak_rss_mb']:.0f} | |",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bigquery", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--out", default="bench-results")
    args = p.parse_args(argv)
    result = bench_bigquery(args.rows, args.out)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bigquery.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
