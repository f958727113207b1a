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
from typing import Optional

from components._shared.params import PARAMS

DEFAULT_STATE = "monitor/state.json"


def _repo_default(relative: str) -> str:
    """``compiled/...`` from the working directory, else from the source checkout."""
    if os.path.exists(relative):
        return relative
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), relative)
    return here if os.path.exists(here) else relative


def add_trigger_flags(p, experiment: str = "") -> None:
    """Flags shared by ``monitor`` and ``submit``: where and how runs start."""
    from components._shared.launch.kfp import DEFAULT_EXPERIMENT

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
    v.add_argument("--location", default=PARAMS.vertex_location)
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
        help="a training-pipeline parameter (repeatable), read as the pipeline declares it, e.g. --param "
        "epochs=20, --param hidden_units=128,64 (a list: comma-separated or JSON)",
    )


def settings_from_args(args, target: str):
    """(KfpSettings, VertexSettings) from the shared flags."""
    from components._shared.launch.kfp import KfpSettings
    from components._shared.launch.vertex import VertexSettings

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
    from components.monitor.params import TABLE as M
    from components.monitor.policy import COOLDOWN_HOURS, Thresholds

    default = Thresholds()
    p = sub.add_parser(
        "monitor",
        help="compare recent data with the champion's; trigger retraining on drift/decay",
        description="Compare recent data with the champion's training data; retrain when it matters.",
    )
    p.add_argument(
        "--current",
        required=True,
        metavar="PATH_OR_URI",
        help=M["current_uri"].help,
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
    p.add_argument("--model-name", default=PARAMS.model_name)
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
        "--drift-threshold",
        type=float,
        default=default.drift_share,
        help=M["drift_share_threshold"].help,
    )
    t.add_argument(
        "--drift-critical",
        type=float,
        default=default.drift_share_critical,
        help=M["drift_share_critical"].help,
    )
    t.add_argument(
        "--decay-threshold",
        type=float,
        default=default.auc_decay,
        help=M["auc_decay_threshold"].help,
    )
    t.add_argument(
        "--decay-critical",
        type=float,
        default=default.auc_decay_critical,
        help=M["auc_decay_critical"].help,
    )
    t.add_argument("--macro-auc-decay", type=float, default=default.macro_auc_decay,
                   help=M["macro_auc_decay_threshold"].help)
    t.add_argument("--macro-auc-decay-critical", type=float, default=default.macro_auc_decay_critical,
                   help=M["macro_auc_decay_critical"].help)
    t.add_argument("--rmse-increase", type=float, default=default.rmse_increase,
                   help=M["rmse_increase_threshold"].help)
    t.add_argument("--rmse-increase-critical", type=float, default=default.rmse_increase_critical,
                   help=M["rmse_increase_critical"].help)
    t.add_argument(
        "--min-rows", type=int, default=default.min_rows, help=M["min_rows"].help
    )
    g = p.add_argument_group("trigger")
    g.add_argument(
        "--trigger",
        choices=("none", "local", "kfp", "vertex"),
        default="none",
        help="start a retraining run when thresholds are crossed (default: report only)",
    )
    g.add_argument(
        "--dry-run", action="store_true", help=M["dry_run"].help
    )
    g.add_argument(
        "--cooldown-hours",
        type=float,
        default=COOLDOWN_HOURS,
        help=M["cooldown_hours"].help,
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
    from components._shared.errors import ConfigError
    from components._shared.launch.package import parse_params
    from components._shared.names import check_model_name, path_under
    from components.monitor.core import Outputs, monitor
    from components.monitor.policy import Thresholds
    from components.monitor.state import REGISTRY
    from pipelines.local import default_tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    thresholds = Thresholds(
        drift_share=args.drift_threshold,
        drift_share_critical=args.drift_critical,
        auc_decay=args.decay_threshold,
        auc_decay_critical=args.decay_critical,
        macro_auc_decay=args.macro_auc_decay,
        macro_auc_decay_critical=args.macro_auc_decay_critical,
        rmse_increase=args.rmse_increase,
        rmse_increase_critical=args.rmse_increase_critical,
        min_rows=args.min_rows,
    )
    if args.cooldown_hours < 0:
        raise ConfigError(f"--cooldown-hours must be >= 0, got {args.cooldown_hours}")
    user_params = parse_params(args.param)
    runs_dir = os.path.abspath(args.runs_dir)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    check_model_name(args.model_name)
    # --out is the user's choice; the default, built from the name, stays under the runs dir.
    out = os.path.abspath(args.out or path_under(runs_dir, "monitor", f"{args.model_name}-{stamp}"))
    kfp, vertex = settings_from_args(args, args.trigger)
    summary = monitor(
        args.current,
        args.model_name,
        default_tracking_uri(runs_dir),
        Outputs(
            summary_json=os.path.join(out, "summary.json"),
            report_html=os.path.join(out, "report.html"),
            drift_html=os.path.join(out, "evidently.html"),
            metrics_file=args.metrics_file,
        ),
        thresholds,
        reference_uri=args.reference,
        schema_uri=args.schema,
        label=args.label,
        trigger=args.trigger,
        dry_run=args.dry_run,
        cooldown_hours=args.cooldown_hours,
        state=REGISTRY
        if args.state == REGISTRY
        else (args.state or os.path.join(runs_dir, DEFAULT_STATE)),
        train_data_uri=args.train_data,
        user_params=user_params,
        kfp=kfp,
        vertex=vertex,
        local=local_launcher(runs_dir),
    )
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


# Run-level settings of a local run are arguments of run_local, not pipeline parameters.
_LOCAL_FIXED = (
    "data_uri",
    "label",
    "model_name",
    "mlflow_tracking_uri",
    "serving_base_dir",
    "checkpoint_root",
)


def _typed(name: str, value):
    """A --param value as the training pipeline declares ``name`` (a list stays or becomes a list)."""
    from components._shared.errors import ConfigError
    from components._shared.launch.package import coerce
    from components._shared.params import pipeline_value

    try:
        return pipeline_value(name, value)
    except KeyError:  # not a pipeline parameter (data_uri, label, ...): as it spells
        return coerce(value)
    except ValueError as exc:
        raise ConfigError(f"the training-pipeline parameter {name!r} expects {exc}, got {value!r}") from None


def local_launcher(runs_dir: str):
    """The monitor's ``local`` trigger: (derived arguments, --param values) -> launcher that runs
    the training pipeline here (kfp.local) under ``runs_dir``."""

    def factory(auto: dict, user_params: dict):
        from components._shared.launch.package import run_name

        merged = {**auto, **{k: _typed(k, v) for k, v in user_params.items()}}
        params = {k: v for k, v in merged.items() if k not in _LOCAL_FIXED}
        label = user_params.get("label", auto["label"])
        data = user_params.get("data_uri", auto["data_uri"])
        model_name = auto["model_name"]

        def launch_local(decision) -> dict:
            return local_start_run(
                runs_dir, run_name(model_name, decision.dedupe_key), data, label, model_name, params
            )

        return launch_local

    return factory


def local_start_run(
    runs_dir: str,
    run_id: str,
    data_uri: str,
    label: str,
    model_name: str,
    params: Optional[dict] = None,
) -> dict:
    """Run the training pipeline here; a finished run of that id already there counts as started."""
    from components._shared.errors import PipelineError, TriggerError
    from components._shared.names import path_under
    from pipelines.local import run_local

    summary_path = path_under(runs_dir, run_id, "summary.json")  # the run id holds the model name
    info = {"target": "local", "run_id": run_id, "run_name": run_id, "summary": summary_path}
    if os.path.exists(summary_path):
        return {**info, "status": "exists"}
    try:
        summary = run_local(
            data_uri,
            label,
            runs_dir=runs_dir,
            model_name=model_name,
            quiet=True,
            params=params or {},
            run_id=run_id,
        )
    except PipelineError as exc:
        raise TriggerError(f"the local retraining run {run_id} failed: {exc}") from exc
    return {
        **info,
        "status": "started",
        "promoted": summary.get("promoted"),
        "model_version": summary.get("model_version"),
    }


def format_summary(s: dict) -> str:
    from components.monitor.outputs import headline

    def f(v, fmt="{:.4f}"):
        return "n/a" if v is None else fmt.format(v)

    drift, perf, trig, dec = s["drift"], s["performance"], s["trigger"], s["decision"]
    drifted = [k for k, v in drift["features"].items() if v["drifted"]]
    lines = [
        f"monitor {s['model_name']}"
        + (f" v{s['champion_version']}" if s.get("champion_version") else "")
        + f": {headline(s)}"
        + (
            f" ({trig['target']} run {trig.get('run_name')} {trig.get('run_id')})"
            if trig.get("run_id")
            else ""
        ),
        f"  decision   {dec['action']} (severity {s['severity']}, trigger {trig['status']})",
        f"  window     {s['current']} ({s['rows']} rows) vs {s['reference']}",
        f"  drift      share {f(drift['share'], '{:.0%}')} (threshold {f(drift['threshold'], '{:.0%}')})"
        + (f": {', '.join(drifted[:8])}" if drifted else ""),
        f"  {PERF_LABEL.get(perf.get('metric') or 'auc', 'AUC'):<10} "
        + (
            f"{f(perf.get(metric := perf.get('metric') or 'auc'))} now vs {f(perf.get(f'{metric}_at_training'))} at "
            f"training ({'relative rise' if metric == 'rmse' else 'decay'} {f(perf['decay'])})"
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


# The printed name of the decay metric (summary "performance"."metric") per task.
PERF_LABEL = {"auc": "AUC", "macro_auc": "macro AUC", "rmse": "RMSE"}


if __name__ == "__main__":  # pragma: no cover
    from pipelines.__main__ import main

    sys.exit(main(["monitor", *sys.argv[1:]]))
