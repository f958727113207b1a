"""The rollout step of the training pipeline (``compile --rollout``): ``rollout_model`` after deploy,
only when deploy left the new version as a canary.

The step runs inside deploy's ``dsl.If(promote)`` and, nested in it, when the run asks for a canary
(``require_approval`` false: an approved-later candidate is never put into service by deploy, and
``canary_traffic_percent`` below 100: at 100 the version already takes all traffic), and on Vertex when
the run names the project and endpoint deploy deploys to. Its version is read from deploy's record.

Where traffic moves and where metrics come from is fixed at compile time: on Kubeflow the KServe
InferenceService (``--deploy-target kserve``) checked on Prometheus (``--rollout-prometheus-url``,
Knative's metrics by default), on Vertex the endpoint checked on its own Cloud Monitoring metrics
(``--rollout-metrics vertex``). The steps, waits and thresholds are run parameters ``rollout_<name>``,
with the names, types, defaults and descriptions of ``rollout_model``'s own parameters.
"""

import contextlib
import inspect

from kfp import dsl

from components.rollout.component import rollout_model

PREFIX = "rollout_"
# rollout_model's per-run settings that become training pipeline parameters (PREFIX + name).
RUN_SETTINGS = ("steps", "interval", "step_timeout", "window", "canary_selector", "stable_selector",
                "max_error_rate_increase", "max_p99_ratio", "max_p99_increase", "max_score_psi", "max_score_ks",
                "min_requests")
PROMETHEUS_FLAVORS = ("kserve", "tfserving")
NO_SOURCE = ("--rollout needs a metrics source for its checks: --rollout-prometheus-url URL (Kubeflow, KServe) "
             "or --rollout-metrics vertex (Vertex, the endpoint's Cloud Monitoring metrics)")


def has_source(target: str, prometheus_url: str, metrics: str) -> bool:
    """Whether ``target`` has the metrics source its rollout reads."""
    return bool(prometheus_url) if target == "kubeflow" else metrics == "vertex"


def options_for(target: str, options: dict) -> dict:
    """One target's share of the compile options of a compile that writes both: the rollout step goes into
    the targets whose metrics source is given (with none given, CompileOptions refuses)."""
    url, metrics = options.get("rollout_prometheus_url", ""), options.get("rollout_metrics", "")
    if not options.get("rollout") or not any(has_source(t, url, metrics) for t in ("kubeflow", "vertex")):
        return options
    if not has_source(target, url, metrics):
        return {k: v for k, v in options.items() if not k.startswith("rollout")}
    return {k: v for k, v in options.items() if not (k == "rollout_metrics" and v == "vertex" and target != "vertex")}


def check(opts) -> None:
    """Refuse rollout options that cannot make a rollout step (ValueError, one sentence)."""
    if not opts.rollout:
        if opts.rollout_prometheus_url or opts.rollout_metrics:
            raise ValueError("--rollout-prometheus-url and --rollout-metrics configure --rollout")
        return
    if opts.target not in ("kubeflow", "vertex"):
        raise ValueError("--rollout is compiled for kubeflow (KServe) or vertex (the endpoint): a local run has no "
                         "live traffic")
    if opts.rollout_metrics not in ("", "vertex", *PROMETHEUS_FLAVORS):
        raise ValueError(f"--rollout-metrics is kserve or tfserving (Prometheus) or vertex (Cloud Monitoring), "
                         f"got {opts.rollout_metrics!r}")
    if not has_source(opts.target, opts.rollout_prometheus_url, opts.rollout_metrics):
        raise ValueError(NO_SOURCE)
    if (opts.rollout_metrics == "vertex") != (opts.target == "vertex"):
        raise ValueError("--rollout-metrics vertex (the endpoint's Cloud Monitoring metrics) is the Vertex target's "
                         "source, and the only one")
    if opts.target == "kubeflow" and opts.deploy_target != "kserve":
        raise ValueError("--rollout on Kubeflow moves the traffic of the KServe InferenceService deploy patches: "
                         "compile with --deploy-target kserve")


def flavor(opts) -> str:
    """rollout_model's ``metrics_flavor`` for these options."""
    return "vertex" if opts.target == "vertex" else (opts.rollout_metrics or "kserve")


def parameters(opts) -> list:
    """The run parameters the step adds to the training pipeline (``inspect.Parameter``), from rollout_model's
    signature; with the endpoint's metrics the score checks default to off (Vertex has no score metric)."""
    if not opts.rollout:
        return []
    own = inspect.signature(rollout_model.python_func).parameters
    off = ("max_score_psi", "max_score_ks") if flavor(opts) == "vertex" else ()
    return [inspect.Parameter(PREFIX + name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=own[name].annotation,
                              default=None if name in off else own[name].default) for name in RUN_SETTINGS]


def args_doc(opts) -> str:
    """The ``Args:`` lines of the step's run parameters (rollout_model's own descriptions)."""
    import docstring_parser

    described = {p.arg_name: " ".join(p.description.split())
                 for p in docstring_parser.parse(rollout_model.python_func.__doc__).params}
    return "".join(f"    {PREFIX}{name}: Rollout step: {described[name]}\n" for name in RUN_SETTINGS) if opts.rollout else ""


def add_rollout_task(opts, deploy_task, run: dict, settings: dict, retry: dict):
    """The rollout_model task after ``deploy_task``, under the canary conditions (call inside dsl.If(promote)).

    Args:
        run: The training pipeline's parameters the step reads (model_name, mlflow_tracking_uri,
            require_approval, canary_traffic_percent, vertex_project, vertex_location, vertex_endpoint).
        settings: The step's run parameters by rollout_model's names (see :func:`parameters`).
    """
    vertex = opts.target == "vertex"
    with contextlib.ExitStack() as conditions:
        conditions.enter_context(dsl.If(run["require_approval"] == False, name="no-approval"))  # noqa: E712
        conditions.enter_context(dsl.If(run["canary_traffic_percent"] < 100, name="canary"))
        if vertex:  # deploy deploys to an endpoint only when the run names one
            conditions.enter_context(dsl.If(run["vertex_project"] != "", name="vertex-project"))
            conditions.enter_context(dsl.If(run["vertex_endpoint"] != "", name="vertex-endpoint"))
        where = ({"vertex_project": run["vertex_project"], "vertex_location": run["vertex_location"],
                  "vertex_endpoint": run["vertex_endpoint"]} if vertex else
                 {"kserve_namespace": opts.kserve_namespace, "kserve_name": opts.kserve_name})
        task = rollout_model(
            deployment=deploy_task.outputs["deployment"], model_name=run["model_name"],
            prometheus_url=opts.rollout_prometheus_url, mlflow_tracking_uri=run["mlflow_tracking_uri"],
            target="vertex" if vertex else "kserve", metrics_flavor=flavor(opts), **where, **settings)
        # A rollback is final (the task fails with its sentence at once); a lost pod retries the walk.
        task.set_display_name("rollout").set_caching_options(False).set_retry(**retry)
    return task
