"""KFP wrapper of the monitor: drift / quality / decay of a window, and the retraining trigger."""

from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.deploy, install_kfp_package=False)
def monitor_data(
    current_uri: str,
    model_name: str,
    mlflow_tracking_uri: str,
    report: Output[HTML],
    drift_report: Output[HTML],
    summary: Output[Artifact],
    metrics: Output[Metrics],
    drift_share_threshold: float,
    drift_share_critical: float,
    auc_decay_threshold: float,
    auc_decay_critical: float,
    macro_auc_decay_threshold: float,
    macro_auc_decay_critical: float,
    rmse_increase_threshold: float,
    rmse_increase_critical: float,
    min_rows: int,
    cooldown_hours: float,
    training_pipeline: str,
    kfp_experiment: str,
    vertex_location: str,
    trigger: str = "none",
    dry_run: bool = False,
    train_data_uri: str = "",
    training_parameters: Optional[dict] = None,
    kfp_host: str = "",
    kfp_namespace: str = "",
    vertex_project: str = "",
    vertex_pipeline_root: str = "",
    vertex_service_account: str = "",
) -> str:
    """Compare a window of recent data with the champion's training data; start retraining when it matters.

    Dedupe and cooldown state is kept as a tag of the registered model, so every scheduled run
    of this component sees the previous ones. Returns the trigger status: none, skipped,
    not-configured, dry-run, started or exists.

    Args:
        current_uri: The window of recent data: CSV/Parquet file or folder, gs://..., or bq://project.dataset.table.
        model_name: Registered model whose champion is the reference (schema, training sample, model, training AUC).
        mlflow_tracking_uri: MLflow tracking/registry URI.
        drift_share_threshold: Share of drifted features from which the window counts as drifted (severity low).
        drift_share_critical: Share of drifted features that is severity medium on its own.
        auc_decay_threshold: Drop of the champion's AUC since training that counts as decay (severity medium); needs labels in the window.
        auc_decay_critical: Drop of AUC that is severity high.
        macro_auc_decay_threshold: Multiclass: drop of the one-vs-rest macro AUC since training that counts as decay (medium).
        macro_auc_decay_critical: Multiclass: drop of macro AUC that is severity high.
        rmse_increase_threshold: Regression: relative rise of RMSE over training (RMSE now / at training - 1) that counts as decay (medium).
        rmse_increase_critical: Regression: relative rise of RMSE that is severity high.
        min_rows: Fewest rows a window may have; smaller windows fail the task.
        trigger: Where a retraining run starts: none (report only), kfp (this cluster's Kubeflow Pipelines) or vertex.
        dry_run: Decide and report, but start nothing and change no state.
        cooldown_hours: No second run for the model within this time unless the severity rises.
        train_data_uri: Data the retraining run trains on; empty for the window itself (which then needs labels).
        training_parameters: Further training-pipeline parameters, e.g. {"epochs": 20, "hidden_units": [128, 64]}
            (deprecated: the same as a JSON string).
        training_pipeline: Compiled training pipeline: a gs:// or https:// URI of its YAML (Vertex: compiled/vertex/training.yaml) or, on Kubeflow, the name of the uploaded pipeline (python -m pipelines submit --target kfp uploads it).
        kfp_host: Kubeflow Pipelines API; empty for the in-cluster service.
        kfp_experiment: Kubeflow experiment of the retraining run.
        kfp_namespace: Kubeflow namespace (multi-user deployments).
        vertex_project: Google Cloud project of the Vertex retraining job.
        vertex_location: Vertex AI region.
        vertex_pipeline_root: gs:// root of the Vertex job's artifacts.
        vertex_service_account: Service account the Vertex job runs as.
    """
    import logging
    import os

    from components._shared.errors import attempt_marker, fail_fast
    from components._shared.launch.kfp import KfpSettings
    from components._shared.launch.package import parse_json_params
    from components._shared.launch.vertex import VertexSettings
    from components.monitor.core import Outputs, monitor, run_metadata, run_metrics
    from components.monitor.policy import Thresholds

    logging.basicConfig(level=logging.INFO)
    # A retry after a deterministic error (bad data, bad settings, refused credentials) fails at once;
    # after a transient one (the KFP or Vertex API unreachable) it runs again: the trigger is deduplicated.
    with fail_fast(attempt_marker(summary.uri)):
        result = monitor(
            current_uri,
            model_name,
            mlflow_tracking_uri,
            Outputs(
                summary_json=os.path.join(summary.path, "summary.json"),
                report_html=report.path,
                drift_html=drift_report.path,
                metrics_file=os.path.join(summary.path, "metrics.prom"),
            ),
            Thresholds(drift_share=drift_share_threshold, drift_share_critical=drift_share_critical,
                       auc_decay=auc_decay_threshold, auc_decay_critical=auc_decay_critical,
                       macro_auc_decay=macro_auc_decay_threshold, macro_auc_decay_critical=macro_auc_decay_critical,
                       rmse_increase=rmse_increase_threshold, rmse_increase_critical=rmse_increase_critical,
                       min_rows=min_rows),
            trigger=trigger,
            dry_run=dry_run,
            cooldown_hours=cooldown_hours,
            state="registry",  # every scheduled run of this component sees the previous ones
            train_data_uri=train_data_uri or None,
            user_params=parse_json_params(training_parameters),
            kfp=KfpSettings(host=kfp_host, experiment=kfp_experiment, namespace=kfp_namespace,
                            pipeline=training_pipeline),
            vertex=VertexSettings(project=vertex_project, location=vertex_location,
                                  template=training_pipeline, pipeline_root=vertex_pipeline_root,
                                  service_account=vertex_service_account),
        )  # fmt: skip
    for name, value in run_metrics(result).items():
        metrics.log_metric(name, value)
    summary.metadata.update(run_metadata(result))
    return result["trigger"]["status"]
