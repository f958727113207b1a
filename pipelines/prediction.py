"""The prediction pipeline: resolve-model -> predict (check, score in batches, write Parquet) -> drift-report.

A registered version (the champion by default, or a version number / another alias) scores a table
after the table is checked against what that version was trained on. Compiled beside the training
pipeline to ``compiled/<target>/prediction.yaml``; ``python -m pipelines predict`` runs it locally.
"""

from typing import Dict, NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset

from components._shared.params import PARAMS, TABLE
from components._shared.registry import CHAMPION
from components.predict.component import predict_table, prediction_drift_report, resolve_model
from components.predict.core import PredictConfig
from pipelines.training import CompileOptions, _secrets

PIPELINE_NAME = "kfp-tf-gate-prediction"
DESCRIPTION = "Score a table with a registered model version, after checking it against the version's training data."
_DOC = f"""{DESCRIPTION}

Args:
    data_uri: Table to score: a CSV or Parquet file, a folder of shards, gs://..., or bq://project.dataset.table.
    output_uri: Where the predictions go: <path>.parquet for one file, a folder or gs://... prefix for Parquet
        shards (written to a temporary sibling and moved into place when complete), or bq://project.dataset.table
        (loaded into a staging table, then copied over the table); empty to keep them in the predict task's
        predictions artifact (the pipeline root).
    model_name: {TABLE["model_name"].help}
    model_version: Registered version number to score with; empty to use model_alias.
    model_alias: Registry alias to score with when model_version is empty.
    id_column: Column copied to every prediction row (to join predictions back); empty for the model's id
        column when the table has it, else row numbers.
    mlflow_tracking_uri: {TABLE["mlflow_tracking_uri"].help}
    anomaly_severity: {TABLE["anomaly_severity"].help}
    shard_rows: Largest Parquet shard of a folder output.
"""


class PredictionOutputs(NamedTuple):
    summary: Artifact
    predictions: Dataset


def build_prediction_pipeline(opts: Optional[CompileOptions] = None):
    """Return the @dsl.pipeline function for these compile options."""
    opts = opts or CompileOptions()
    retry = dict(num_retries=3, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")

    def prediction_pipeline(
        data_uri: str,
        output_uri: str = "",
        model_name: str = PARAMS.model_name,
        model_version: str = "",
        model_alias: str = CHAMPION,
        id_column: str = PARAMS.id_column,
        mlflow_tracking_uri: str = PARAMS.mlflow_tracking_uri,
        anomaly_severity: Dict[str, str] = PARAMS.anomaly_severity,
        shard_rows: int = PredictConfig.shard_rows,
    ) -> PredictionOutputs:
        # The registry (an alias moves) and the table (same URI, new rows) change between runs: no task
        # is cached.
        resolve_task = resolve_model(model_name=model_name, model_version=model_version, model_alias=model_alias,
                                     mlflow_tracking_uri=mlflow_tracking_uri, require_remote_registry=opts.cluster)
        resolve_task.set_display_name("resolve-model").set_caching_options(False)
        if opts.target != "local":  # a registry that does not answer may answer later; locally it is a file
            resolve_task.set_retry(**retry)
        _secrets(resolve_task, opts)

        predict_task = predict_table(model=resolve_task.outputs["model"], data_uri=data_uri, output_uri=output_uri,
                                     id_column=id_column, anomaly_severity=anomaly_severity, shard_rows=shard_rows,
                                     require_durable_output=opts.cluster)
        predict_task.set_display_name("predict").set_caching_options(False)
        if opts.target != "local":
            predict_task.set_cpu_limit("2").set_memory_limit("4G")

        # Report only (evidently's import alone takes ~3.5 s): after predict, whose sample it reads.
        drift_task = prediction_drift_report(model=resolve_task.outputs["model"], sample=predict_task.outputs["sample"],
                                             sample_rows=PredictConfig.sample_rows, seed=PARAMS.seed)
        drift_task.set_display_name("drift-report").set_caching_options(False)
        return PredictionOutputs(summary=predict_task.outputs["summary"],
                                 predictions=predict_task.outputs["predictions"])

    prediction_pipeline.__doc__ = _DOC
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(prediction_pipeline)
