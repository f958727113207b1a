"""Every parameter of the monitoring pipeline, once: its name, type, default and meaning.

The monitoring pipeline (``pipelines/monitoring.py``) takes its parameters' descriptions (copied by
KFP into the compiled YAML) and defaults from here, and ``python -m pipelines monitor`` the help of
the flags that mean the same. Defaults that depend on the compile target (``trigger``,
``training_pipeline``) are set by the pipeline; their rows say so and hold None.
Standard library only, like :mod:`components._shared.params`, whose ``Param`` rows this reuses.
"""

from __future__ import annotations

from components._shared.params import PARAMS, Param
from components._shared.params import TABLE as TRAINING
from components.monitor.policy import COOLDOWN_HOURS, Thresholds

_T = Thresholds()

_ROWS = (
    Param("current_uri", str, None, "The window of recent data: a CSV or Parquet file or folder, gs://..., or "
          "bq://project.dataset.table."),
    Param("model_name", str, PARAMS.model_name, "Registered model whose champion is the reference (schema, "
          "training sample, model, training AUC)."),
    Param("mlflow_tracking_uri", str, "", TRAINING["mlflow_tracking_uri"].help),
    # --- thresholds
    Param("drift_share_threshold", float, _T.drift_share, "Share of drifted features from which the window "
          "counts as drifted (severity low)."),
    Param("drift_share_critical", float, _T.drift_share_critical, "Share of drifted features that is severity "
          "medium on its own."),
    Param("auc_decay_threshold", float, _T.auc_decay, "Drop of the champion's AUC since training that counts as "
          "decay (severity medium); needs labels in the window."),
    Param("auc_decay_critical", float, _T.auc_decay_critical, "Drop of AUC that is severity high."),
    Param("macro_auc_decay_threshold", float, _T.macro_auc_decay, "Multiclass: drop of the one-vs-rest macro AUC "
          "since training that counts as decay (severity medium)."),
    Param("macro_auc_decay_critical", float, _T.macro_auc_decay_critical, "Multiclass: drop of macro AUC that is "
          "severity high."),
    Param("rmse_increase_threshold", float, _T.rmse_increase, "Regression: relative rise of RMSE over training "
          "(RMSE now / at training - 1) that counts as decay (severity medium)."),
    Param("rmse_increase_critical", float, _T.rmse_increase_critical, "Regression: relative rise of RMSE that is "
          "severity high."),
    Param("min_rows", int, _T.min_rows, "Fewest rows a window may have; a smaller window fails the run."),
    # --- trigger
    Param("trigger", str, None, "Where a retraining run starts: none (report only), kfp (this cluster's Kubeflow "
          "Pipelines) or vertex; the default is the compile target's."),
    Param("dry_run", bool, False, "Decide and report, but start nothing and change no state."),
    Param("cooldown_hours", float, COOLDOWN_HOURS, "No second retraining run for the model within this many hours "
          "unless the severity rises."),
    Param("train_data_uri", str, "", "Data the retraining run trains on; empty for the window itself (which then "
          "needs labels)."),
    Param("training_parameters", dict, {}, 'Further parameters of the retraining run, typed as the '
          'training pipeline declares them, e.g. {"epochs": 20, "hidden_units": [128, 64]}.'),
    Param("training_pipeline", str, None, "Compiled training pipeline: on Kubeflow the name of the uploaded "
          "pipeline (python -m pipelines submit --target kfp uploads it) or a gs:// / https:// URI of its YAML; "
          "on Vertex the URI of compiled/vertex/training.yaml."),
    # --- Kubeflow
    Param("kfp_host", str, "", "Kubeflow Pipelines API; empty for the in-cluster service."),
    Param("kfp_experiment", str, None, "Kubeflow experiment of the retraining run."),
    Param("kfp_namespace", str, "", "Kubeflow namespace (multi-user deployments)."),
    # --- Vertex
    Param("vertex_project", str, "", "Google Cloud project of the Vertex retraining job."),
    Param("vertex_location", str, PARAMS.vertex_location, TRAINING["vertex_location"].help),
    Param("vertex_pipeline_root", str, "", "gs:// root of the Vertex retraining job's artifacts."),
    Param("vertex_service_account", str, "", "Service account the Vertex retraining job runs as."),
)

TABLE: dict[str, Param] = {p.name: p for p in _ROWS}
assert len(TABLE) == len(_ROWS), "a parameter is listed twice"


def args_doc() -> str:
    """Google-style ``Args:`` lines of the monitoring pipeline's parameters."""
    return "\n".join(f"    {p.name}: {p.help}" for p in _ROWS)
