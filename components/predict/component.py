"""KFP wrappers of predict: the version lookup, the scoring itself, evidently's drift report."""

from typing import Dict

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def resolve_model(
    model: Output[Model],
    model_name: str,
    model_version: str,
    model_alias: str,
    mlflow_tracking_uri: str,
    require_remote_registry: bool,
):
    """Fetch the registered version to score with: its model, schema, reference sample and threshold.

    Fails with one sentence when the model, version or alias does not exist. In a compiled (cluster)
    pipeline it first checks that the registry is a server the pod can reach.

    Args:
        model_name: Registered model to score with.
        model_version: Version number; empty to use model_alias.
        model_alias: Registry alias to score with when no version is given (champion by default).
        mlflow_tracking_uri: MLflow tracking/registry URI.
        require_remote_registry: Set at compile time for cluster targets: fail unless the registry is a
            reachable server.
    """
    import logging

    from components._shared.errors import ConfigError
    from components.predict.resolve import resolve

    logging.basicConfig(level=logging.INFO)
    if require_remote_registry:
        from components._shared.credentials import load_mlflow_credentials
        from components._shared.wiring import registry_problem

        load_mlflow_credentials()
        problem = registry_problem(mlflow_tracking_uri)
        if problem:
            raise ConfigError(problem)
    found = resolve(mlflow_tracking_uri, model_name, model_version, model_alias, model.path)
    model.metadata.update({"name": found.name, "version": found.version, "requested": found.requested})


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def predict_table(
    model: Input[Model],
    predictions: Output[Dataset],
    sample: Output[Dataset],
    summary: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    data_uri: str,
    output_uri: str,
    id_column: str,
    anomaly_severity: Dict[str, str],
    shard_rows: int,
    require_durable_output: bool,
):
    """Check a table against the version's training schema, score it in batches, write Parquet predictions.

    Blocking anomalies (a missing feature, a type change, ...) fail the task with one sentence naming the
    columns, before anything is written; the output appears only once every row is scored.

    Args:
        data_uri: Table to score: CSV or Parquet file, folder of shards, gs://..., or bq://project.dataset.table.
        output_uri: Where the predictions go: <path>.parquet for one file, a folder or gs://... prefix for
            Parquet shards, or bq://project.dataset.table; empty to write them into this task's predictions artifact.
        id_column: Column copied to every prediction row; empty for the model's id column (or row numbers).
        anomaly_severity: Severities overriding the defaults, e.g. {"unseen_categories": "blocking"}
            (deprecated: the same as a JSON string).
        shard_rows: Largest Parquet shard of a folder output.
        require_durable_output: Set at compile time for cluster targets: refuse an output path inside the pod.
    """
    import logging

    from components._shared import io
    from components._shared.metrics import loggable
    from components._shared.values import json_object
    from components.predict.core import PredictConfig, predict
    from components.predict.report import summary_html
    from components.predict.resolve import load

    logging.basicConfig(level=logging.INFO)
    result = predict(data_uri, load(model.path), output_uri or predictions.path, id_column=id_column,
                     severity=json_object(anomaly_severity, "anomaly_severity"), config=PredictConfig(shard_rows=shard_rows),
                     require_durable_output=require_durable_output)
    s = result.summary
    io.write_json(s, summary.path)
    io.write_parquet(result.sample, sample.path)
    io.write_text_atomic(summary_html(s), report.path)
    predictions.metadata.update({"uri": s["output"], "rows": s["rows"], "model": f"{s['model_name']} v{s['model_version']}"})
    flat = {"rows": s["rows"], "rows_per_second": s["rows_per_second"], "mean_score": s["scores"]["mean"],
            "score_psi": s["scores"].get("psi"), "drift_share_psi": s["drift"]["share"], "warnings": len(s["warnings"])}
    flat.update({f"live_{k}": v for k, v in (s["live_metrics"] or {}).items()})
    for k, v in loggable(flat).items():
        metrics.log_metric(k, v)


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def prediction_drift_report(
    model: Input[Model],
    sample: Input[Dataset],
    report: Output[HTML],
    drift: Output[Artifact],
    metrics: Output[Metrics],
    sample_rows: int,
    seed: int,
):
    """evidently's drift report: the scored table's sample against the version's training reference sample.

    Report only: a failure inside evidently is written into the report instead of failing the run.

    Args:
        sample_rows: Rows sampled per side; evidently's cost grows with rows.
        seed: Seed of the samples.
    """
    import logging

    from components._shared import io
    from components.predict.report import drift_report
    from components.predict.resolve import load

    logging.basicConfig(level=logging.INFO)
    found = load(model.path)
    summary = drift_report(found.schema, found.reference_path, sample.path, report.path, sample_rows, seed)
    io.write_json(summary, drift.path)
    if summary.get("share") is not None:
        metrics.log_metric("drift_share_evidently", summary["share"])
        metrics.log_metric("drifted_features", sum(1 for f in summary["features"].values() if f["drifted"]))
