"""``python -m pipelines predict``: run the prediction pipeline locally (kfp.local), as ``run`` runs training.

The registry defaults to the SQLite store under the runs dir (``MLFLOW_TRACKING_URI`` wins), like
``run`` and ``rollback``. Task output goes to ``<runs-dir>/<predict-id>/pipeline.log``; the console gets
a summary, or the one sentence that ended the run (exit 2, and nothing at ``--out``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional

from components._shared.params import PARAMS


def add_parser(sub) -> None:
    from components._shared.registry import CHAMPION

    p = sub.add_parser("predict", help="score a table with a registered model (the champion by default)")
    p.add_argument("--data", required=True, help="table to score: CSV/Parquet file or folder, gs://..., bq://...")
    p.add_argument("--out", required=True,
                   help="predictions: <path>.parquet for one file, a folder or gs://... prefix for Parquet shards, "
                        "or bq://project.dataset.table")
    p.add_argument("--id-column", default="", help="column copied to every prediction (default: the model's id "
                   "column when the table has it, else row numbers)")
    p.add_argument("--model-name", default=None,
                   help="registered model to score with (default: the only one in the registry)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", default="", help="registered version number to score with")
    which.add_argument("--alias", default=CHAMPION, help="registry alias to score with (default: %(default)s)")
    p.add_argument("--runs-dir", default="runs", help="where the MLflow store (SQLite) and run logs live")
    p.add_argument("--anomaly-severity", default=PARAMS.anomaly_severity, metavar="JSON",
                   help='severity overrides, e.g. {"unseen_categories": "blocking"}')
    p.add_argument("--verbose", action="store_true", help="stream task logs to the console")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_predict)


def run_prediction_local(data: str, out: str, runs_dir: str = "runs", model_name: str = PARAMS.model_name,
                         version: str = "", alias: str = "", id_column: str = "",
                         anomaly_severity: str = PARAMS.anomaly_severity, quiet: bool = True,
                         run_id: Optional[str] = None) -> dict:
    """Run the prediction pipeline with kfp.local; returns (and writes) its summary.

    Raises:
        PipelineError: bad input or a failed task (its one sentence).
    """

    from components._shared import io
    from components._shared.values import json_object
    from pipelines.local import default_tracking_uri, new_run_id, run_pipeline_locally
    from pipelines.prediction import build_prediction_pipeline
    from pipelines.training import CompileOptions

    if "://" not in data:
        io.list_shards(data)  # a path that does not exist fails here, before any task starts
    runs_dir = os.path.abspath(runs_dir)
    run_id = run_id or new_run_id().replace("run-", "predict-", 1)
    run_dir = os.path.join(runs_dir, run_id)
    root = os.path.join(run_dir, "pipeline_root")
    os.makedirs(root, exist_ok=True)
    log_path = os.path.join(run_dir, "pipeline.log")
    arguments = {
        "data_uri": os.path.abspath(data) if "://" not in data else data,
        "output_uri": os.path.abspath(out) if "://" not in out else out,
        "model_name": model_name,
        "model_version": str(version or ""),
        "mlflow_tracking_uri": default_tracking_uri(runs_dir),
        "id_column": id_column,
        # the pipeline declares a dict; the CLI gives JSON text
        "anomaly_severity": json_object(anomaly_severity, "--anomaly-severity"),
    }
    if alias:
        arguments["model_alias"] = alias
    pipeline = build_prediction_pipeline(CompileOptions(target="local"))
    started = time.time()
    outputs = run_pipeline_locally(pipeline, arguments, root, log_path, quiet, run_id)
    summary = io.read_json(outputs["summary"].path)
    summary.update({"run_id": run_id, "log": log_path, "wall_seconds": round(time.time() - started, 2)})
    io.write_json(summary, os.path.join(run_dir, "summary.json"))
    return summary


def format_summary(s: dict) -> str:
    rate = f"{s['rows_per_second']:,.0f} rows/s" if s.get("rows_per_second") else ""
    lines = [f"{s['run_id']}: scored {s['rows']:,} rows with {s['model_name']} v{s['model_version']} "
             f"({s['model_requested']}) -> {s['output']}  ({rate} scoring; {s.get('wall_seconds')} s in all)",
             f"  mean score {s['scores']['mean']:.4f}" + (
                 f" (training {s['scores']['training_mean']:.4f}, PSI {s['scores']['psi']:.3f})"
                 if "psi" in s["scores"] else "")]
    live = s.get("live_metrics")
    if live and live.get("auc") is not None:
        decay = live.get("auc_decay")
        lines.append(f"  live AUC {live['auc']:.4f} on {live['rows']:,} labelled rows"
                     + (f" (decay {decay:+.4f} since training)" if decay is not None else ""))
    lines += [f"  warning: {w}" for w in s.get("warnings", [])]
    lines.append(f"  summary {os.path.join(os.path.dirname(s['log']), 'summary.json')}")
    return "\n".join(lines)


def only_registered_model(runs_dir: str) -> str:
    """The one model of the runs dir's registry (--model-name's default), checked before any task starts.

    Raises:
        ConfigError: No store there, or not exactly one model in it (one sentence).
    """
    from components._shared.registry import quiet_mlflow_logs, require_store
    from pipelines.local import default_tracking_uri, registry_model_name

    uri = default_tracking_uri(runs_dir)
    require_store(uri)  # a prediction never creates a registry
    quiet_mlflow_logs()
    return registry_model_name(None, "", uri)


def cmd_predict(args) -> int:
    model_name = args.model_name or only_registered_model(args.runs_dir)
    summary = run_prediction_local(args.data, args.out, runs_dir=args.runs_dir, model_name=model_name,
                                   version=args.version, alias=args.alias if not args.version else "",
                                   id_column=args.id_column, anomaly_severity=args.anomaly_severity,
                                   quiet=not args.verbose)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
