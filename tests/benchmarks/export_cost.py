"""Export's own cost on a finished run: ``python -m tests.benchmarks.export_cost RUN_DIR [--parity-rows N ...]``.

Runs :func:`components.export.core.export` (TensorFlow already imported, so the figures are the
export itself) on the trained model and test split of a local run (``<runs-dir>/run-*``), twice
per parity sample size, and prints wall and CPU seconds (CPU is the figure to compare on a shared
machine) with the TFLite/SavedModel difference it measured. A model trained before train recorded
its threshold is exported at 0.5. Writes only under a temporary folder.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.export_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a finished local run (the folder holding pipeline_root/)")
    p.add_argument("--parity-rows", type=int, nargs="+", default=[20_000], help="parity sample sizes")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    roots = glob.glob(os.path.join(args.run_dir, "pipeline_root", "*"))
    if not roots:
        raise SystemExit(f"{args.run_dir} holds no pipeline_root/<job> folder")
    model_dir = os.path.join(roots[0], "train-model", "model")
    test = os.path.join(roots[0], "ingest-data", "test_data")

    import tensorflow  # noqa: F401  (imported before the clock: not export's own cost)

    from components._shared.threshold import read_threshold
    from components.export.core import export

    threshold = read_threshold(model_dir)
    for rows in args.parity_rows:
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="export-cost-") as out:
                t, c = time.perf_counter(), time.process_time()
                r = export(model_dir, test, os.path.join(out, "sm"), os.path.join(out, "tfl"), "m",
                           threshold=0.5 if threshold is None else threshold, parity_rows=rows)
                m = r.metrics
                print(f"parity_rows {m['parity_rows']:>7} (of {m.get('test_rows', '?')}) run {i + 1}: "
                      f"wall {time.perf_counter() - t:5.1f} s, CPU {time.process_time() - c:5.1f} s, "
                      f"TFLite max |diff| {m['tflite_max_abs_diff']:.2e}, mean {m['tflite_mean_abs_diff']:.2e}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
