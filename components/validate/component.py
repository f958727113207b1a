"""KFP wrapper of validate."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def validate_data(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    test_data: Input[Dataset],
    ingest_info: Input[Artifact],
    schema: Output[Artifact],
    anomalies: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    model_name: str,
    mlflow_tracking_uri: str = "",
    schema_uri: str = "",
    id_column: str = "",
    exclude_columns: str = "",
    anomaly_severity: str = "{}",
    drift_share_threshold: float = 0.5,
    max_missing_jump: float = 0.1,
):
    """Infer the schema, enforce the champion's (or a given) schema, measure drift.

    Fails the task, listing each anomaly, when any blocking anomaly is found.

    Args:
        model_name: Registered model whose champion's schema and reference sample are enforced.
        mlflow_tracking_uri: MLflow tracking/registry URI; empty to skip the champion lookup.
        schema_uri: A user-supplied schema JSON to enforce instead of the champion's.
        id_column: Identifier column (excluded from features).
        exclude_columns: Comma-separated columns that must not become features.
        anomaly_severity: JSON object overriding severities, e.g. {"unseen_categories": "blocking"}.
        drift_share_threshold: Share of drifted features above which a drift anomaly is raised.
        max_missing_jump: Largest allowed rise of a column's missing-value rate over the schema's.
    """
    import json
    import logging

    from components._shared import io
    from components.validate.component_io import load_reference
    from components.validate.core import raise_if_blocking, result_to_json, validate

    logging.basicConfig(level=logging.INFO)
    info = io.read_json(ingest_info.path)
    reference_schema, reference_data, source = load_reference(schema_uri, mlflow_tracking_uri, model_name)
    train = io.read_parquet(train_data.path)
    others = {"eval": io.read_parquet(eval_data.path), "test": io.read_parquet(test_data.path)}
    result = validate(
        train, others, info["label"], info["positive_label"],
        reference_schema=reference_schema, reference_data=reference_data,
        id_column=id_column or None,
        exclude=[c.strip() for c in exclude_columns.split(",") if c.strip()],
        severity=json.loads(anomaly_severity or "{}"),
        drift_share_threshold=drift_share_threshold, max_missing_jump=max_missing_jump,
        report_html=report.path,
    )
    result.schema["negative_label"] = info.get("negative_label")
    io.write_json(result.schema, schema.path)
    io.write_json({**result_to_json(result), "reference_source": source}, anomalies.path)
    schema.metadata.update({"features": len([c for c in result.schema["columns"].values() if c.get("role") == "feature"]),
                            "reference": source})
    metrics.log_metric("anomalies", len(result.anomalies))
    metrics.log_metric("blocking_anomalies", len(result.blocking))
    metrics.log_metric("drift_share_psi", result.drift["psi_drift"]["share"])
    share = (result.drift.get("evidently") or {}).get("share")
    if share is not None:
        metrics.log_metric("drift_share_evidently", share)
    raise_if_blocking(result)
