"""``python -m pipelines monitor``: compare recent data with the champion's, retrain when it matters.

Reads a window of production data (CSV/Parquet/folder/gs:///bq://), compares it with the
champion's training reference from the registry (or ``--reference``), writes an HTML report,
a JSON summary and optionally Prometheus metrics, and, when drift or AUC decay crosses the
thresholds, starts a retraining run (``--trigger local|kfp|vertex``) unless the same window
already started one (dedupe) or the model is in its cooldown. Exit status 0 whether or not a
run was started; 2 with one sentence on bad input, bad settings or a trigger that failed (the
cooldown is then not consumed).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile

DEFAULT_STATE = "monitor/state.json"


def _repo_default(relative: str) -> str:
    """``compiled/...`` from the working directory, else from the source checkout."""
    if os.path.exists(relative):
        return relative
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), relative)
    return here if os.path.exists(here) else relative


def add_trigger_flags(p, experiment: str = "") -> None:
    """Flags shared by ``monitor`` and ``submit``: where and how runs start."""
    from pipelines.triggers import DEFAULT_EXPERIMENT

    k = p.add_argument_group("Kubeflow Pipelines (--trigger/--target kfp)")
    k.add_argument(
        "--host",
        default="",
        help="KFP API endpoint (default: $KF_PIPELINES_ENDPOINT, else in-cluster)",
    )
    k.add_argument(
        "--token",
        default="",
        help="bearer token (default: $KF_PIPELINES_TOKEN; prefer the variable)",
    )
    k.add_argument(
        "--sa-token-path", default="", help="projected service-account token file (multi-user KFP)"
    )
    k.add_argument("--namespace", default="", help="KFP namespace (multi-user deployments)")
    k.add_argument(
        "--experiment", default=experiment or DEFAULT_EXPERIMENT, help="KFP experiment of the run"
    )
    v = p.add_argument_group("Vertex AI Pipelines (--trigger/--target vertex)")
    v.add_argument(
        "--project", default="", help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT)"
    )
    v.add_argument("--location", default="us-central1")
    v.add_argument("--network", default="", help="VPC network to peer the job with")
    c = p.add_argument_group("both")
    c.add_argument(
        "--pipeline",
        default=None,
        help="compiled training pipeline: path, gs:// or https:// URI, or (kfp) an uploaded pipeline's "
        "name (default: compiled/<kubeflow|vertex>/training.yaml)",
    )
    c.add_argument(
        "--pipeline-root", default="", help="root of the run's artifacts (gs://... on Vertex)"
    )
    c.add_argument("--service-account", default="", help="service account the run executes as")
    c.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a training-pipeline parameter (repeatable), e.g. --param epochs=20",
    )


def settings_from_args(args, target: str):
    """(KfpSettings, VertexSettings) from the shared flags."""
    from pipelines.triggers import KfpSettings, VertexSettings

    kfp = KfpSettings(
        host=args.host,
        token=args.token,
        sa_token_path=args.sa_token_path,
        namespace=args.namespace,
        experiment=args.experiment,
        pipeline=args.pipeline or _repo_default("compiled/kubeflow/training.yaml"),
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
    )
    vertex = VertexSettings(
        project=args.project,
        location=args.location,
        template=args.pipeline or _repo_default("compiled/vertex/training.yaml"),
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        network=args.network,
    )
    return kfp, vertex


def add_parser(sub) -> None:
    p = sub.add_parser(
        "monitor",
        help="compare recent data with the champion's; trigger retraining on drift/decay",
        description="Compare recent data with the champion's training data; retrain when it matters.",
    )
    p.add_argument(
        "--current",
        required=True,
        metavar="PATH_OR_URI",
        help="the window of recent data: CSV/Parquet file or folder, gs://..., bq://project.dataset.table",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="PATH_OR_URI",
        help="compare with this table instead of the champion's reference sample",
    )
    p.add_argument("--schema", default=None, help="schema JSON to use instead of the champion's")
    p.add_argument(
        "--label", default=None, help="label column when the schema is inferred from --reference"
    )
    p.add_argument(
        "--runs-dir", default="runs", help="runs dir: MLflow (SQLite) default, reports, state"
    )
    p.add_argument("--model-name", default="churn-model")
    p.add_argument(
        "--out", default=None, help="report folder (default: <runs-dir>/monitor/<model>-<time>)"
    )
    p.add_argument(
        "--metrics-file",
        default=None,
        help="write Prometheus text metrics here (node-exporter textfile collector / Pushgateway)",
    )
    t = p.add_argument_group("thresholds")
    t.add_argument(
        "--drift-threshold", type=float, default=0.3, help="drift share that counts as drift (low)"
    )
    t.add_argument(
        "--drift-critical", type=float, default=0.6, help="drift share that is severity medium"
    )
    t.add_argument(
        "--decay-threshold", type=float, default=0.03, help="AUC drop that counts as decay (medium)"
    )
    t.add_argument(
        "--decay-critical", type=float, default=0.08, help="AUC drop that is severity high"
    )
    t.add_argument("--min-rows", type=int, default=50, help="fewest rows a window may have")
    g = p.add_argument_group("trigger")
    g.add_argument(
        "--trigger",
        choices=("none", "local", "kfp", "vertex"),
        default="none",
        help="start a retraining run when thresholds are crossed (default: report only)",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="decide and report, start nothing, change no state"
    )
    g.add_argument(
        "--cooldown-hours",
        type=float,
        default=24.0,
        help="no second run for the model within this time unless the severity rises",
    )
    g.add_argument(
        "--state",
        default=None,
        help=f"dedupe/cooldown state: a JSON file (default <runs-dir>/{DEFAULT_STATE}) or 'registry' "
        "(a tag of the registered model)",
    )
    g.add_argument(
        "--train-data", default=None, help="data the retraining run trains on (default: --current)"
    )
    add_trigger_flags(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_monitor)


def _data_uri(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def cmd_monitor(args) -> int:
    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI; keep this command from leaking it.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        return _monitor(args)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _monitor(args) -> int:
    import logging

    from components._shared.errors import ConfigError
    from components.monitor.core import (
        FileStateStore,
        Outputs,
        RegistryStateStore,
        Thresholds,
        read_window,
        resolve_reference,
        run_monitor,
    )
    from pipelines.local import default_tracking_uri
    from pipelines.triggers import monitor_launcher, parse_params

    log = logging.getLogger("pipelines.monitor")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    thresholds = Thresholds(
        drift_share=args.drift_threshold,
        drift_share_critical=args.drift_critical,
        auc_decay=args.decay_threshold,
        auc_decay_critical=args.decay_critical,
        min_rows=args.min_rows,
    )
    if args.cooldown_hours < 0:
        raise ConfigError(f"--cooldown-hours must be >= 0, got {args.cooldown_hours}")
    user_params = parse_params(args.param)
    runs_dir = os.path.abspath(args.runs_dir)
    tracking_uri = default_tracking_uri(runs_dir)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(
        args.out or os.path.join(runs_dir, "monitor", f"{args.model_name}-{stamp}")
    )
    with tempfile.TemporaryDirectory(prefix="monitor-reference-") as workdir:
        reference = resolve_reference(
            args.model_name,
            tracking_uri,
            workdir,
            reference_uri=args.reference,
            schema_uri=args.schema,
            label=args.label,
        )
    train_data = _data_uri(args.train_data or args.current)
    kfp, vertex = settings_from_args(args, args.trigger)
    launcher = monitor_launcher(
        args.trigger,
        args.model_name,
        train_data,
        reference.schema,
        tracking_uri,
        user_params,
        kfp=kfp,
        vertex=vertex,
        runs_dir=runs_dir,
    )
    if (
        args.trigger in ("kfp", "vertex")
        and "://" not in train_data
        and "data_uri" not in user_params
    ):
        log.warning(
            "the retraining run will read the local path %s: the cluster must see it at that path "
            "(pass --train-data gs://... or bq://...)",
            train_data,
        )
    current = read_window(args.current)
    label = reference.schema.get("label")
    if (
        launcher is not None
        and args.train_data is None
        and "data_uri" not in user_params
        and label
        and label not in current.columns
    ):
        raise ConfigError(
            f"the window {args.current} has no label column {label!r}, so a retraining run cannot "
            "train on it: pass --train-data with labelled data"
        )
    if args.state == "registry":
        store = RegistryStateStore(tracking_uri, args.model_name)
    else:
        store = FileStateStore(args.state or os.path.join(runs_dir, DEFAULT_STATE), args.model_name)
    outputs = Outputs(
        summary_json=os.path.join(out, "summary.json"),
        report_html=os.path.join(out, "report.html"),
        drift_html=os.path.join(out, "evidently.html"),
        metrics_file=args.metrics_file,
    )
    summary = run_monitor(
        args.current,
        reference,
        outputs,
        thresholds,
        state_store=store,
        launcher=launcher,
        target=args.trigger,
        dry_run=args.dry_run,
        cooldown_hours=args.cooldown_hours,
        current=current,
    )
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    def f(v, fmt="{:.4f}"):
        return "n/a" if v is None else fmt.format(v)

    drift, perf, trig, dec = s["drift"], s["performance"], s["trigger"], s["decision"]
    drifted = [k for k, v in drift["features"].items() if v["drifted"]]
    lines = [
        f"monitor {s['model_name']}"
        + (f" v{s['champion_version']}" if s.get("champion_version") else "")
        + f": severity {s['severity']}, decision {dec['action']}, trigger {trig['status']}"
        + (
            f" ({trig['target']} run {trig.get('run_name')} {trig.get('run_id')})"
            if trig.get("run_id")
            else ""
        ),
        f"  window     {s['current']} ({s['rows']} rows) vs {s['reference']}",
        f"  drift      share {f(drift['share'], '{:.0%}')} (threshold {f(drift['threshold'], '{:.0%}')})"
        + (f": {', '.join(drifted[:8])}" if drifted else ""),
        "  AUC        "
        + (
            f"{f(perf['auc'])} now vs {f(perf['auc_at_training'])} at training (decay {f(perf['decay'])})"
            if perf.get("status") == "ok"
            else f"not measured: {perf.get('reason')}"
        ),
        f"  quality    {len(s['quality']['anomalies'])} finding(s)",
    ]
    lines += [f"  - {r}" for r in dec["reasons"]]
    lines.append(f"  report     {s['report_html']}")
    lines.append(f"  summary    {os.path.join(os.path.dirname(s['report_html']), 'summary.json')}")
    if s.get("metrics_file"):
        lines.append(f"  metrics    {s['metrics_file']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from pipelines.__main__ import main

    sys.exit(main(["monitor", *sys.argv[1:]]))
