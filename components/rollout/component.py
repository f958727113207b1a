"""KFP wrapper of the rollout (a step of its own: it waits minutes on live traffic)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.deploy, install_kfp_package=False)
def rollout_model(
    report: Output[Artifact],
    metrics: Output[Metrics],
    model_name: str,
    prometheus_url: str,
    mlflow_tracking_uri: str,
    serving_base_dir: str = "",
    version: str = "",
    target: str = "tfserving",
    steps: str = "10,50,100",
    interval: str = "300s",
    step_timeout: str = "",
    window: str = "",
    metrics_flavor: str = "tfserving",
    canary_selector: str = 'role="canary"',
    stable_selector: str = 'role="stable"',
    max_error_rate_increase: Optional[float] = 0.01,
    max_p99_ratio: Optional[float] = 1.5,
    max_p99_increase: Optional[float] = None,
    max_score_psi: Optional[float] = 0.2,
    max_score_ks: Optional[float] = None,
    min_requests: int = 100,
    kserve_namespace: str = "",
    kserve_name: str = "",
    vertex_project: str = "",
    vertex_location: str = "us-central1",
    vertex_endpoint: str = "",
    deployment: Input[Artifact] = None,
) -> str:
    """Move live traffic to the canary step by step, checking canary vs stable on Prometheus metrics
    before each next step; a failed check rolls traffic back to stable, tags the registry version
    (rollout_status=rolled_back, rollout_reason) and fails the task with one sentence. Returns
    "promoted" when the canary became stable (and champion).

    Args:
        model_name: Registered model name.
        prometheus_url: Prometheus server the checks query (http://prometheus:9090); empty with
            metrics_flavor vertex.
        mlflow_tracking_uri: MLflow registry the version's rollout status is tagged in.
        serving_base_dir: TF Serving model base (target tfserving: the serving record's canary is
            rolled out; promote = approve).
        version: The canary version; empty for tfserving: the serving record's canary. For vertex:
            the Vertex model version id.
        target: Where traffic moves: tfserving (labels; clients choose), kserve (the
            InferenceService's canaryTrafficPercent) or vertex (the endpoint's traffic split).
        steps: Canary traffic percentages, increasing, ending at 100.
        interval: Wait after each traffic change before the first check (300s, 5m).
        step_timeout: A step that still holds (too little data) this long after it began rolls back;
            empty: 3 x interval.
        window: How far back each check reads metrics; empty: since the step began.
        metrics_flavor: Metric names in Prometheus: tfserving (TF Serving's) or kserve (Knative's
            revision_*); or vertex: the endpoint's own metrics in Cloud Monitoring (target vertex; set
            the score thresholds to None).
        canary_selector: PromQL label matchers of the canary's series.
        stable_selector: PromQL label matchers of the stable version's series.
        max_error_rate_increase: Canary error rate minus stable's (0.01 = one point); None: no check.
        max_p99_ratio: Canary p99 latency over stable's; None: no ratio check.
        max_p99_increase: Or canary p99 minus stable's in seconds, whichever allows more.
        max_score_psi: PSI of the canary's score histogram (prediction_score) against stable's; None: no check.
        max_score_ks: KS distance of the two score histograms; None: no check.
        min_requests: Requests each of canary and stable must serve in a step before it is judged.
        kserve_namespace: Namespace of the InferenceService (target kserve).
        kserve_name: InferenceService name; empty: derived from the model name.
        vertex_project: Google Cloud project (target vertex).
        vertex_location: Vertex AI region.
        vertex_endpoint: Endpoint display name (target vertex).
        deployment: Deploy's record (the training pipeline's step, `compile --rollout`): the version
            rolled out when ``version`` is empty (target vertex: the Vertex model version id it uploaded).
    """
    import logging

    from components._shared import io
    from components._shared.errors import RolloutError, attempt_marker, fail_fast
    from components.rollout.core import Thresholds
    from components.rollout.run import ROLLED_BACK, rollout

    logging.basicConfig(level=logging.INFO)
    if deployment is not None and not version:  # after deploy in the training pipeline: the version it deployed
        record = io.read_json(deployment.path)
        version = str((record.get("extra", {}).get("vertex") or {}).get("version", "") if target == "vertex"
                      else record.get("version", ""))
    with fail_fast(attempt_marker(report.uri)):  # a bad setting repeats at once; a rollback is final
        result = rollout(
            model_name, target, prometheus_url, steps, interval, step_timeout, window,
            Thresholds(max_error_rate_increase, max_p99_ratio, max_p99_increase, max_score_psi, max_score_ks,
                       min_requests),
            metrics_flavor, canary_selector, stable_selector, version,
            mlflow_tracking_uri if target != "vertex" else "", serving_base_dir if target == "tfserving" else "",
            target_options={"namespace": kserve_namespace, "name": kserve_name, "project": vertex_project,
                            "location": vertex_location, "endpoint_name": vertex_endpoint},
            report=logging.getLogger("rollout").info,
        )
        io.write_json(result.to_dict(), report.path)
        report.metadata.update({"status": result.status, "reason": result.reason, "served": result.served})
        metrics.log_metric("checks", len(result.checks))
        metrics.log_metric("promoted", 1.0 if result.status != ROLLED_BACK else 0.0)
        if result.status == ROLLED_BACK:
            raise RolloutError(result.reason)
    return result.status
