"""``python -m pipelines rollout``: traffic steps for a canary, checked on live metrics, with an
automatic rollback (see :mod:`components.rollout.run`). One line per traffic change and per check;
exit 0 when the canary became stable, 2 with one sentence when it was rolled back or a setting is bad.

    python -m pipelines rollout --model-name churn-model --prometheus-url http://prometheus:9090 \\
        --steps 10,50,100 --interval 300s
"""

from __future__ import annotations

import json
import os
import sys


def _threshold(text: str):
    """A threshold value: a number, or ``none`` to switch that check off."""
    if str(text).strip().lower() in ("none", "off", ""):
        return None
    return float(text)


def add_parser(sub) -> None:
    from components.rollout.core import Thresholds
    from components.rollout.prometheus import FLAVORS
    from components.rollout.targets import TARGETS

    d = Thresholds()
    p = sub.add_parser("rollout", help="move live traffic to the canary step by step, checked on Prometheus "
                                       "metrics; roll back automatically when a check fails")
    p.add_argument("--model-name", default=None,
                   help="registered model (default: the only model served from the serving base, else the only one "
                        "in the registry)")
    p.add_argument("--version", default="", help="the canary version (default for tfserving: the serving record's "
                                                 "canary; for vertex: the Vertex model version id)")
    p.add_argument("--steps", default="10,50,100", help="canary traffic percentages, ending at 100 (default: %(default)s)")
    p.add_argument("--interval", default="300s", help="wait after each traffic change before checking (default: %(default)s)")
    p.add_argument("--step-timeout", default="", help="a step that still holds (too little or no data) this long after "
                                                      "it began rolls back (default: 3 x interval)")
    p.add_argument("--window", default="", help="metrics each check reads, back from now (default: since the step began)")
    p.add_argument("--prometheus-url", default="", help="Prometheus server the checks query (http://host:9090)")
    p.add_argument("--metrics", default="tfserving", choices=[*FLAVORS, "vertex"],
                   help="metric names in Prometheus: TF Serving's or Knative's (KServe); or vertex: the endpoint's "
                        "own metrics in Cloud Monitoring (--target vertex, score checks none) (default: %(default)s)")
    p.add_argument("--canary-selector", default='role="canary"', help="PromQL label matchers of the canary's series")
    p.add_argument("--stable-selector", default='role="stable"', help="PromQL label matchers of the stable series")
    t = p.add_argument_group("checks (a number, or none to switch one off)")
    t.add_argument("--max-error-rate-increase", type=_threshold, default=d.max_error_rate_increase,
                   help="canary error rate minus stable's, 0.01 = one point (default: %(default)s)")
    t.add_argument("--max-p99-ratio", type=_threshold, default=d.max_p99_ratio,
                   help="canary p99 latency / stable p99 (default: %(default)s)")
    t.add_argument("--max-p99-increase", type=_threshold, default=d.max_p99_increase,
                   help="or canary p99 - stable p99 in seconds, whichever allows more (default: %(default)s)")
    t.add_argument("--max-score-psi", type=_threshold, default=d.max_score_psi,
                   help="PSI of the canary's score histogram against stable's (default: %(default)s)")
    t.add_argument("--max-score-ks", type=_threshold, default=d.max_score_ks,
                   help="KS distance of the two score histograms (default: %(default)s)")
    t.add_argument("--min-requests", type=int, default=d.min_requests,
                   help="requests each of canary and stable must serve in a step before it is judged (default: %(default)s)")
    g = p.add_argument_group("target")
    g.add_argument("--target", default="tfserving", choices=list(TARGETS), help="where traffic moves (default: %(default)s)")
    g.add_argument("--runs-dir", default="runs")
    g.add_argument("--mlflow-tracking-uri", default=None, metavar="URI",
                   help="MLflow registry (default: $MLFLOW_TRACKING_URI, else <runs-dir>/mlflow.db)")
    g.add_argument("--serving-base", default=None, help="TF Serving model base (default: <runs-dir>/serving)")
    g.add_argument("--kserve-namespace", default="", help="namespace of the InferenceService (--target kserve)")
    g.add_argument("--kserve-name", default="", help="InferenceService name (default: derived from the model name)")
    g.add_argument("--vertex-project", default="")
    g.add_argument("--vertex-location", default="us-central1")
    g.add_argument("--vertex-endpoint", default="", help="endpoint display name (--target vertex)")
    p.add_argument("--json", action="store_true", help="print the result as JSON after the step lines")
    p.set_defaults(func=cmd_rollout)


def cmd_rollout(args) -> int:
    import contextlib

    from components._shared.errors import RolloutError
    from components._shared.names import check_model_name
    from components._shared.registry import quiet_mlflow_logs, require_store
    from components.rollout.core import Thresholds
    from components.rollout.run import ROLLED_BACK, rollout
    from pipelines.local import default_tracking_uri, registry_model_name, runs_dir_lock

    serving = args.serving_base or os.path.join(os.path.abspath(args.runs_dir), "serving")
    uri = args.mlflow_tracking_uri or default_tracking_uri(args.runs_dir)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # promote replays warm-ups: TF's C++ noise is not ours
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # nor MLflow's bar (the model card)
    quiet_mlflow_logs()
    if args.target == "tfserving":
        require_store(uri)  # before MLflow opens it: it would create an empty store
        name = check_model_name(registry_model_name(args.model_name, serving, uri))
    else:
        name = check_model_name(args.model_name or "")
    # the MLflow version is tagged with the outcome: tfserving always; kserve when --version names it
    tracking = uri if args.target == "tfserving" or (args.target == "kserve" and args.version) else ""
    if tracking and args.target != "tfserving":
        require_store(uri)
    # each change of the serving record holds the runs dir's lock (not the minutes between steps)
    lock = (lambda: runs_dir_lock(args.runs_dir)) if os.path.isdir(args.runs_dir) else contextlib.nullcontext
    thresholds = Thresholds(args.max_error_rate_increase, args.max_p99_ratio, args.max_p99_increase,
                            args.max_score_psi, args.max_score_ks, args.min_requests)
    result = rollout(name, args.target, args.prometheus_url, args.steps, args.interval, args.step_timeout,
                     args.window, thresholds, args.metrics, args.canary_selector, args.stable_selector, args.version,
                     tracking, serving if args.target == "tfserving" else "", lock,
                     {"namespace": args.kserve_namespace, "name": args.kserve_name, "project": args.vertex_project,
                      "location": args.vertex_location, "endpoint_name": args.vertex_endpoint},
                     report=lambda line: print(line, flush=True))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    if result.status == ROLLED_BACK:
        raise RolloutError(result.reason)
    print(f"{name}: {result.reason}; serving {result.served}", file=sys.stderr)
    return 0
