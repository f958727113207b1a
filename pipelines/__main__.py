"""Command line: ``python -m pipelines {run,compile,rollback,approve,predict,monitor,submit,rollout}``.

Exit status: 0 on success (whether or not a model was promoted), 2 on bad input or a
failed step, with one sentence on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional

EXIT_ERROR = 2


def _add_run(sub) -> None:
    from components._shared.params import TABLE

    def helps(name: str) -> str:
        return f"{TABLE[name].help} (default: {TABLE[name].default!r})"

    p = sub.add_parser("run", help="run the training pipeline locally (kfp.local)")
    p.add_argument("--data", help="CSV/Parquet file or folder (default: the embedded churn dataset)")
    p.add_argument("--label", help="label column (default: churned for the embedded dataset)")
    p.add_argument("--task", default=None, choices=["auto", "binary", "multiclass", "regression"],
                   help=helps("task"))
    p.add_argument("--runs-dir", default="runs", help="where runs, MLflow (SQLite) and the serving base live")
    p.add_argument("--model-name", default=None,
                   help=TABLE["model_name"].help + " (default: <data file, folder or table name>-model, e.g. "
                        "churn-model for the embedded dataset)")
    p.add_argument("--id-column", default=None, help=TABLE["id_column"].help)
    p.add_argument("--exclude", default="", help=TABLE["exclude_columns"].help)
    p.add_argument("--positive-label", default="", help=TABLE["positive_label"].help)
    p.add_argument("--bucketize", default="", metavar="COLS", help=TABLE["bucketize_columns"].help)
    # None: the pipeline's default (the parameter table's), so only what the user sets is passed.
    p.add_argument("--num-buckets", type=int, default=None, help=helps("num_buckets"))
    p.add_argument("--crosses", default="", metavar="A*B,...", help=TABLE["crosses"].help)
    p.add_argument("--epochs", type=int, default=None, help=helps("epochs"))
    p.add_argument("--batch-size", type=int, default=None, help=helps("batch_size"))
    p.add_argument("--min-auc", type=float, default=None, help=helps("min_auc"))
    p.add_argument("--min-improvement", type=float, default=None, help=helps("min_improvement"))
    p.add_argument("--require-approval", action="store_true", help=TABLE["require_approval"].help)
    p.add_argument("--model-card", default=None, metavar="FILE", help=TABLE["model_card"].help)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other pipeline parameter (repeatable), read as its declared type: a list "
                        "comma-separated or as JSON (--param hidden_units=128,64 or '[128, 64]'), a dict as "
                        "JSON (--param 'anomaly_severity={\"unseen_categories\": \"blocking\"}'), none (or "
                        "empty) to disable a gate (--param min_auc=none); one of: "
                        + ", ".join(x.name for x in TABLE.values() if x.pipeline))
    p.add_argument("--verbose", action="store_true", help="stream task logs to the console")
    p.add_argument("--quiet", action="store_true",
                   help="no line per step while the run runs: only the final summary (and errors)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON (step lines then go to stderr, so stdout is the JSON alone)")


def _coerce(name: str, value: str):
    """A --param value as the training pipeline declares ``name`` (the parameter table's type, which a unit
    test holds equal to the pipeline's): KFP refuses an int for a str or float input and a str for a list."""
    from components._shared.errors import ConfigError
    from components._shared.params import pipeline_value

    try:
        return pipeline_value(name, value)
    except KeyError:
        raise ConfigError(f"--param {name!r} is not a parameter of the training pipeline "
                          "(`run --help` lists them)") from None
    except ValueError as exc:
        raise ConfigError(f"--param {name} expects {exc}, got {value!r}") from None


def _model_card_file(path: str) -> str:
    """``--model-card FILE`` checked (readable, known keys) and made absolute for the tasks."""
    from components._shared.errors import PipelineError
    from components.deploy.card import load_fields

    uri = path if "://" in path else os.path.abspath(path)
    try:
        load_fields(uri)
    except PipelineError as exc:
        raise SystemExit(f"error: {exc}") from None
    return uri


def run_arguments(args) -> tuple:
    """(data, label, pipeline parameters) from the data options `run` and `rehearse` share."""
    from pipelines.data import ID_COLUMN, LABEL, write_default_dataset

    data, label = args.data, args.label
    params: dict = {}
    if data is None:
        data = write_default_dataset(os.path.join(os.path.abspath(args.runs_dir), "data", "churn.csv"))
        label = label or LABEL
        params["id_column"] = args.id_column or ID_COLUMN
    if not label:
        raise SystemExit("error: --label is required with --data")
    if args.id_column:
        params["id_column"] = args.id_column
    for key, val in (("task", getattr(args, "task", None)),
                     ("exclude_columns", args.exclude), ("positive_label", args.positive_label),
                     ("bucketize_columns", args.bucketize), ("num_buckets", args.num_buckets),
                     ("crosses", args.crosses),
                     ("epochs", args.epochs), ("batch_size", args.batch_size), ("min_auc", args.min_auc),
                     ("min_improvement", args.min_improvement)):
        if val not in (None, ""):
            params[key] = _coerce(key, val)  # --exclude a,b -> ["a", "b"] (the pipeline declares a list)
    if args.require_approval:
        params["require_approval"] = True
    if getattr(args, "model_card", None):  # read now: a typo fails in a second, not after training
        params["model_card"] = _model_card_file(args.model_card)
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --param expects NAME=VALUE, got {item!r}")
        params[name.strip()] = _coerce(name.strip(), value.strip())
    return data, label, params


def model_name_of_run(args, data: str, params: dict) -> str:
    """--model-name (or --param model_name), else the name derived from the data, said on the console."""
    from components._shared.names import model_name_from_data

    given = params.get("model_name") or args.model_name
    if given:
        return given
    name, source = model_name_from_data(data)
    if not getattr(args, "quiet", False):
        print(f"model name: {name} (from the data {source}; --model-name sets it)",
              file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)
    return name


def cmd_run(args) -> int:
    from pipelines.local import format_summary, run_local

    data, label, params = run_arguments(args)
    # Step lines on the console the summary goes to; with --json, stdout is the JSON alone.
    progress_fd = None if args.quiet else 2 if args.json else 1
    summary = run_local(data, label, runs_dir=args.runs_dir, model_name=model_name_of_run(args, data, params),
                        quiet=not args.verbose, params=params, progress_fd=progress_fd)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _add_compile(sub) -> None:
    p = sub.add_parser("compile", help="write compiled/<target>/*.yaml (or verify with --check)")
    p.add_argument("--out", default="compiled")
    p.add_argument("--check", action="store_true", help="exit 1 when compiled/ differs from a fresh compile")
    p.add_argument("--image-registry", default=None, help="registry of the component images")
    p.add_argument("--image-tag", default=None, help="tag of the component images (default: package version)")
    p.add_argument("--gpu-type", default="", help="Kubeflow resource name or Vertex accelerator type")
    p.add_argument("--gpu-count", type=int, default=1)
    p.add_argument("--gpu-node-selector", default=None, help="Kubeflow node label key=value of GPU nodes")
    p.add_argument("--serving-pvc", default="", metavar="CLAIM[:/PATH]",
                   help="Kubeflow: mount this PersistentVolumeClaim into deploy's pod at PATH (default /models) "
                        "and make PATH the default serving_base_dir; without it the serving base must be gs://...")
    p.add_argument("--mlflow-secret", default=None, metavar="NAME",
                   help="Kubeflow: secret whose MLFLOW_TRACKING_USERNAME/PASSWORD keys reach the MLflow tasks "
                        "(default: mlflow-credentials; empty for none)")
    p.add_argument("--vertex-mlflow-secret", default="", metavar="projects/P/secrets/NAME[/versions/V]",
                   help="Vertex: Secret Manager secret with JSON {\"username\", \"password\"}; its name (never "
                        "its value) is set as KFP_TF_GATE_MLFLOW_SECRET on the MLflow tasks, which read it with "
                        "the run's service account (needs roles/secretmanager.secretAccessor); default: none")
    p.add_argument("--train-workers", type=int, default=1, metavar="N",
                   help="replicas of multi-worker training (default 1: the train task's own pod); N > 1: the "
                        "train task runs a Vertex AI CustomJob / Kubeflow TFJob of N replicas and waits for it")
    p.add_argument("--train-machine-type", default="", metavar="TYPE",
                   help="Vertex, --train-workers > 1: machine type of each replica (default n1-standard-8)")
    p.add_argument("--train-accelerator", default="", metavar="TYPE:COUNT",
                   help="Vertex, --train-workers > 1: accelerators of each replica, e.g. NVIDIA_TESLA_T4:1 "
                        "(default: --gpu-type/--gpu-count); on Kubeflow each replica gets the train pod's GPUs")

    p.add_argument("--deploy-target", default="", choices=("", "kserve"),
                   help="kserve (Kubeflow): deploy also creates or patches a KServe InferenceService serving the "
                        "version (canary share: the run's canary_traffic_percent) and waits for it to be Ready")
    p.add_argument("--kserve-namespace", default="", help="namespace of the InferenceService (with --deploy-target kserve)")
    p.add_argument("--kserve-service-account", default="", help="service account of the predictor (storage credentials)")
    p.add_argument("--kserve-runtime-version", default="", help="TF Serving image tag of the predictor (default: KServe's)")
    p.add_argument("--kserve-storage-base", default="", metavar="URI",
                   help="the serving base as KServe reads it (gs://, s3://, pvc://CLAIM/path; default: the serving "
                        "base, or pvc://CLAIM with --serving-pvc)")
    p.add_argument("--kserve-name", default="", help="InferenceService name (default: from the model name)")
    p.add_argument("--kserve-cpu", default="1", help="CPU request and limit of the predictor")
    p.add_argument("--kserve-memory", default="2Gi", help="memory request and limit of the predictor")
    p.add_argument("--kserve-gpu-count", type=int, default=0, help="GPUs of the predictor (nvidia.com/gpu)")
    p.add_argument("--kserve-timeout", type=float, default=600.0, help="seconds deploy waits for Ready")
    p.add_argument("--rollout", action="store_true",
                   help="add the rollout step after deploy (KServe on Kubeflow, the endpoint on Vertex), run when "
                        "deploy leaves a canary; steps and thresholds are the run's rollout_* parameters")
    p.add_argument("--rollout-prometheus-url", default="", metavar="URL",
                   help="Kubeflow, --rollout: Prometheus the rollout checks read (http://prometheus:9090)")
    p.add_argument("--rollout-metrics", default="", choices=("", "kserve", "tfserving", "vertex"),
                   help="--rollout: Prometheus metric names (kserve: Knative's, the default; tfserving), or vertex: "
                        "the Vertex endpoint's Cloud Monitoring metrics")


def cmd_compile(args) -> int:
    from components._shared.images import DEFAULT_REGISTRY, VERSION, Images
    from pipelines.compile import compile_all

    images = Images(args.image_registry or DEFAULT_REGISTRY, args.image_tag or VERSION)
    options = {"gpu_type": args.gpu_type, "gpu_count": args.gpu_count}
    if args.gpu_node_selector is not None:
        options["gpu_node_selector"] = args.gpu_node_selector
    if args.serving_pvc:
        options["serving_pvc"] = args.serving_pvc
    if args.mlflow_secret is not None:
        options["mlflow_secret"] = args.mlflow_secret
    if args.vertex_mlflow_secret:
        options["vertex_mlflow_secret"] = args.vertex_mlflow_secret
    if args.train_workers != 1 or args.train_machine_type or args.train_accelerator:  # multi-worker training
        options.update(train_workers=args.train_workers, train_machine_type=args.train_machine_type,
                       train_accelerator=args.train_accelerator)
    if args.deploy_target:  # KServe deploy (Kubeflow): every --kserve-* setting
        options.update({k: getattr(args, k) for k in vars(args) if k == "deploy_target" or k.startswith("kserve_")})
    if args.rollout or args.rollout_prometheus_url or args.rollout_metrics:  # the rollout step (CompileOptions checks)
        options.update(rollout=args.rollout, rollout_prometheus_url=args.rollout_prometheus_url,
                       rollout_metrics=args.rollout_metrics)
    try:
        changed = compile_all(args.out, images, check=args.check, options=options)
    except ValueError as exc:  # a bad compile option (CompileOptions says which)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.check:
        if changed:
            print(f"stale: {', '.join(changed)} (run `python -m pipelines compile`)", file=sys.stderr)
            return 1
        print("compiled/ is up to date")
        return 0
    print("\n".join(f"wrote {p}" for p in changed) or "compiled/ already up to date")
    return 0


def _add_registry_cmds(sub) -> None:
    for name, text in (("rollback", "make the previous version champion again"),
                       ("approve", "promote the candidate version (deploys run with --require-approval)"),
                       ("status", "print the serving record, registry aliases and models.config, and whether they agree")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--runs-dir", default="runs")
        p.add_argument("--model-name", default=None,
                       help="registered model (default: the only model served from the serving base, else the "
                            "only one in the registry)")
        p.add_argument("--mlflow-tracking-uri", default=None, metavar="URI",
                       help="MLflow tracking/registry URI, as the run's mlflow_tracking_uri (default: "
                            "$MLFLOW_TRACKING_URI, else the SQLite store <runs-dir>/mlflow.db); never created here")
        p.add_argument("--serving-base", default=None, help="TF Serving model base (default: <runs-dir>/serving)")
        if name == "rollback":
            p.add_argument("--to", type=int, default=None, metavar="N",
                           help="move stable to version N (on the serving path, checked like any rollback) "
                                "instead of the recorded previous version")
        if name == "status":
            p.add_argument("--repair", action="store_true",
                           help="run deploy's start-up check first (finish or undo a half-done change, remove "
                                "leftovers, tag orphan versions, re-derive models.config and the aliases)")


def cmd_registry(args) -> int:
    import contextlib

    from components._shared.names import check_model_name
    from components._shared.registry import quiet_mlflow_logs, require_store
    from components.deploy.core import approve, rollback, status
    from pipelines.local import default_tracking_uri, registry_model_name, runs_dir_lock

    serving = args.serving_base or os.path.join(os.path.abspath(args.runs_dir), "serving")
    uri = args.mlflow_tracking_uri or default_tracking_uri(args.runs_dir)
    # A change waits for a run (or another rollback) of this runs dir first: a first run may be creating the
    # store. Plain status reads only. A runs dir that does not exist (a registry on a server, a serving base
    # elsewhere) has no run to wait for, and is not created.
    changes = args.command != "status" or args.repair
    lock = runs_dir_lock(args.runs_dir) if changes and os.path.isdir(args.runs_dir) else contextlib.nullcontext()
    with lock:
        require_store(uri)  # before MLflow opens it: it would create an empty store (and the runs dir)
        quiet_mlflow_logs()
        name = check_model_name(registry_model_name(args.model_name, serving, uri))
        if args.command == "rollback":
            result = rollback(name, uri, serving, to=args.to)
        elif args.command == "approve":
            result = approve(name, uri, serving)
        else:
            result = status(name, uri, serving, fix=args.repair)
    print(json.dumps(result, indent=2))
    return 0 if result.get("agree", True) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_compile(sub)
    _add_registry_cmds(sub)
    for module in ("pipelines.predict", "pipelines.monitor", "pipelines.submit", "pipelines.rehearsal.cli",
                   "pipelines.rollout"):
        try:
            mod = __import__(module, fromlist=["add_parser"])
        except ImportError:
            continue
        mod.add_parser(sub)
    return parser


def main(argv: Optional[list] = None) -> int:
    from components._shared.errors import PipelineError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "model_name", None) is not None:  # before anything runs or is written
            from components._shared.names import check_model_name

            check_model_name(args.model_name)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compile":
            return cmd_compile(args)
        if args.command in ("rollback", "approve", "status"):
            # These only load SavedModels to replay warm-ups: a failure is a Python error with one sentence,
            # so TensorFlow's C++ errors about absent CUDA drivers are noise here.
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            return cmd_registry(args)
        return args.func(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
