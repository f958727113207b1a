"""The monitoring pipeline: one monitor task, meant to be scheduled as a recurring run.

It compares the latest window of production data with the champion's training reference
and, when drift or AUC decay crosses the thresholds, starts the training pipeline (Kubeflow
or Vertex). Dedupe and cooldown state lives in the registered model's tags, so recurring runs
never start duplicate or back-to-back retraining runs.
"""

from typing import Optional

from kfp import dsl

from components._shared.launch.kfp import DEFAULT_EXPERIMENT
from components._shared.launch.package import TRAINING_PIPELINE
from components._shared.launch.vertex import DEFAULT_LOCATION
from components._shared.params import PARAMS
from components.monitor.component import monitor_data
from components.monitor.params import TABLE, args_doc
from components.monitor.policy import COOLDOWN_HOURS, Thresholds
from pipelines.training import CompileOptions

PIPELINE_NAME = "kfp-tf-gate-monitoring"
DESCRIPTION = "Compare recent data with the champion's training data; retrain on drift or decay."
# The parameters' meanings, from the monitoring parameter table (KFP copies them into the compiled YAML).
_DOC = f"""{DESCRIPTION}

Args:
{args_doc()}
"""
# Kubeflow: optional secret holding a KFP API token (multi-user clusters); never in the YAML itself.
KFP_TOKEN_SECRET = "kfp-api-token"


def build_monitoring_pipeline(opts: Optional[CompileOptions] = None):
    """Return the @dsl.pipeline function for these compile options."""
    opts = opts or CompileOptions()
    default = Thresholds()
    default_trigger = (
        "vertex" if opts.target == "vertex" else ("kfp" if opts.target == "kubeflow" else "none")
    )
    # Kubeflow runs the uploaded training pipeline by name; Vertex needs the template's URI.
    default_training = TRAINING_PIPELINE if opts.target != "vertex" else ""

    def monitoring_pipeline(
        current_uri: str,
        model_name: str = PARAMS.model_name,
        mlflow_tracking_uri: str = "",
        drift_share_threshold: float = default.drift_share,
        drift_share_critical: float = default.drift_share_critical,
        auc_decay_threshold: float = default.auc_decay,
        auc_decay_critical: float = default.auc_decay_critical,
        macro_auc_decay_threshold: float = default.macro_auc_decay,
        macro_auc_decay_critical: float = default.macro_auc_decay_critical,
        rmse_increase_threshold: float = default.rmse_increase,
        rmse_increase_critical: float = default.rmse_increase_critical,
        min_rows: int = default.min_rows,
        trigger: str = default_trigger,
        dry_run: bool = False,
        cooldown_hours: float = COOLDOWN_HOURS,
        train_data_uri: str = "",
        training_parameters: dict = dict(TABLE["training_parameters"].default),  # noqa: B006 (KFP reads defaults off the signature)
        training_pipeline: str = default_training,
        kfp_host: str = "",
        kfp_experiment: str = DEFAULT_EXPERIMENT,
        kfp_namespace: str = "",
        vertex_project: str = "",
        vertex_location: str = DEFAULT_LOCATION,
        vertex_pipeline_root: str = "",
        vertex_service_account: str = "",
    ):
        monitor_task = monitor_data(
            current_uri=current_uri,
            model_name=model_name,
            mlflow_tracking_uri=mlflow_tracking_uri,
            drift_share_threshold=drift_share_threshold,
            drift_share_critical=drift_share_critical,
            auc_decay_threshold=auc_decay_threshold,
            auc_decay_critical=auc_decay_critical,
            macro_auc_decay_threshold=macro_auc_decay_threshold,
            macro_auc_decay_critical=macro_auc_decay_critical,
            rmse_increase_threshold=rmse_increase_threshold,
            rmse_increase_critical=rmse_increase_critical,
            min_rows=min_rows,
            trigger=trigger,
            dry_run=dry_run,
            cooldown_hours=cooldown_hours,
            train_data_uri=train_data_uri,
            training_parameters=training_parameters,
            training_pipeline=training_pipeline,
            kfp_host=kfp_host,
            kfp_experiment=kfp_experiment,
            kfp_namespace=kfp_namespace,
            vertex_project=vertex_project,
            vertex_location=vertex_location,
            vertex_pipeline_root=vertex_pipeline_root,
            vertex_service_account=vertex_service_account,
        )
        # The window and the registry change between runs: never from cache. A retry is safe
        # because the trigger is deduplicated (run name / job id derived from the window).
        monitor_task.set_display_name("monitor").set_caching_options(False)
        if opts.target != "local":
            # The task fails fast on a deterministic error (errors.fail_fast): the backoffs are for an
            # unreachable KFP / Vertex API or a lost pod.
            monitor_task.set_retry(
                num_retries=2,
                backoff_duration="15s",
                backoff_factor=2.0,
                backoff_max_duration="60s",
            )
        if opts.target == "vertex" and opts.vertex_mlflow_secret:
            from components._shared.credentials import SECRET_ENV

            monitor_task.set_env_variable(SECRET_ENV, opts.vertex_mlflow_secret)  # the name, read in the task
        if opts.target == "kubeflow":
            from kfp import kubernetes

            if opts.mlflow_secret:
                kubernetes.use_secret_as_env(
                    monitor_task,
                    secret_name=opts.mlflow_secret,
                    secret_key_to_env={
                        "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                        "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
                    },
                    optional=True,
                )
            kubernetes.use_secret_as_env(
                monitor_task,
                secret_name=KFP_TOKEN_SECRET,
                secret_key_to_env={"token": "KF_PIPELINES_TOKEN"},
                optional=True,
            )

    monitoring_pipeline.__doc__ = _DOC
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(monitoring_pipeline)
