"""KFP wrappers of validate: the reference lookup, the validation itself, evidently's drift report."""

from typing import Dict, List, Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def champion_reference(
    reference: Output[Artifact],
    model_name: str,
    mlflow_tracking_uri: str = "",
    schema_uri: str = "",
    require_remote_registry: bool = False,
    serving_base_dir: str = "",
    serving_mounts: str = "",
    vertex_project: str = "",
):
    """Fetch what validation enforces: the champion's schema and reference sample, and a user schema file.

    Its own step, so validate never imports MLflow and, on a cluster, the registry lookup runs
    while ingest reads the data. With neither a schema file nor a champion the folder says so and
    validate infers the schema from this run's training split. In a compiled (cluster) pipeline it
    is also the first check of the wiring: it fails at once, with one sentence, when the registry or
    the serving base would not outlive the pod.

    Args:
        model_name: Registered model whose champion's schema and reference sample are enforced.
        mlflow_tracking_uri: MLflow tracking/registry URI; empty to skip the champion lookup (local runs only).
        schema_uri: A schema JSON (local path or gs://...; validate's schema artifact, possibly edited)
            enforced as well as the champion's, or alone before there is a champion.
        require_remote_registry: Set at compile time for cluster targets: fail unless the registry is a
            reachable server and the serving base outlives the pod.
        serving_base_dir: TF Serving model base the run would deploy to (checked, not written).
        serving_mounts: Set at compile time: comma-separated paths where volumes are mounted into deploy's pod.
        vertex_project: Google Cloud project for Vertex AI (a promotion then has somewhere to go).
    """
    import logging

    from components._shared.errors import attempt_marker, fail_fast
    from components.validate.component_io import fetch_reference

    logging.basicConfig(level=logging.INFO)
    with fail_fast(attempt_marker(reference.uri)):  # a retry repeats a wiring or schema error at once
        if require_remote_registry:
            from components._shared.wiring import check_cluster_wiring

            check_cluster_wiring(mlflow_tracking_uri, serving_base_dir, serving_mounts, vertex_project)
        info = fetch_reference(schema_uri, mlflow_tracking_uri, model_name, reference.path)
    reference.metadata.update({"source": info["source"], "version": info["version"] or ""})


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def validate_data(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    test_data: Input[Dataset],
    ingest_info: Input[Artifact],
    reference: Input[Artifact],
    schema: Output[Artifact],
    anomalies: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    id_column: str = "",
    exclude_columns: Optional[List[str]] = None,
    anomaly_severity: Optional[Dict[str, str]] = None,
    psi_drift_share: float = 0.5,
    max_missing_jump: float = 0.1,
):
    """Infer the schema, enforce the reference's (champion's or a given) schema, measure drift.

    Fails the task, listing each anomaly, when any blocking anomaly is found.

    Args:
        reference: Output of champion_reference: the schema to enforce and a reference sample, if any.
        id_column: Identifier column (excluded from features); ingest's choice (given or detected) takes precedence.
        exclude_columns: Columns that must not become features, e.g. ["notes"] (deprecated: "a,b").
        anomaly_severity: Severities overriding the defaults, e.g. {"unseen_categories": "blocking"}
            (deprecated: the same as a JSON string).
        psi_drift_share: Share of features drifted by PSI above which a drift anomaly is raised.
        max_missing_jump: Largest allowed rise of a column's missing-value rate over the schema's.
    """
    import logging

    from components._shared import io
    from components._shared.values import json_object, str_list
    from components.validate.component_io import read_reference
    from components.validate.core import raise_if_blocking, result_to_json, validate

    logging.basicConfig(level=logging.INFO)
    info = io.read_json(ingest_info.path)
    ref = read_reference(reference.path)
    # Paths, not frames: validate reads each split batch by batch, whatever its rows.
    others = {"eval": eval_data.path, "test": test_data.path}
    result = validate(
        train_data.path, others, info["label"], info["positive_label"],
        reference_schema=ref.schema, user_schema=ref.user_schema,
        # The column ingest split on (given or detected; none when id_column is "none") is the identifier.
        id_column=info["id_column"] if "id_column" in info else (id_column or None),
        id_detected=info.get("id_column_source") == "detected",
        exclude=str_list(exclude_columns, "exclude_columns"),
        severity=json_object(anomaly_severity, "anomaly_severity"),
        psi_drift_share=psi_drift_share, max_missing_jump=max_missing_jump,
        report_html=report.path, task=info.get("task"),
    )
    result.schema["negative_label"] = info.get("negative_label")
    io.write_json(result.schema, schema.path)
    summary = {**result_to_json(result), "reference_source": ref.source}
    io.write_json(summary, anomalies.path)
    schema.metadata.update({"features": len(summary["features"]), "reference": ref.source})
    metrics.log_metric("anomalies", len(result.anomalies))
    metrics.log_metric("blocking_anomalies", len(result.blocking))
    metrics.log_metric("drift_share_psi", result.drift["psi_drift"]["share"])
    raise_if_blocking(result)


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def drift_report(
    train_data: Input[Dataset],
    test_data: Input[Dataset],
    reference: Input[Artifact],
    schema: Input[Artifact],
    report: Output[HTML],
    drift: Output[Artifact],
    metrics: Output[Metrics],
    sample_rows: int = 20000,
    seed: int = 0,
):
    """evidently's data drift report: per-feature tests and drift share on a sample of each side.

    Report only (validate's PSI over every row gates the run), so a failure inside evidently is
    written into the report instead of failing the run. Compares the champion's reference sample
    with this run's train split, or on a first run this run's train split with its test split.

    Args:
        reference: Output of champion_reference (its reference sample, if any).
        schema: Output of validate_data (which columns are features).
        sample_rows: Rows sampled per side; evidently's cost grows with rows.
        seed: Seed of the samples.
    """
    import logging

    from components._shared import io
    from components.validate.component_io import read_reference
    from components.validate.evidently_drift import drift_report as run_report

    logging.basicConfig(level=logging.INFO)
    ref = read_reference(reference.path)
    summary = run_report(io.read_json(schema.path), train_data.path, test_data.path, ref.sample_path,
                         report.path, sample_rows=sample_rows, seed=seed)
    summary["reference_source"] = ref.source
    io.write_json(summary, drift.path)
    drift.metadata.update({"reference": summary["reference"], "current": summary["current"]})
    if "error" in summary:
        drift.metadata["error"] = summary["error"]
        return
    if summary.get("share") is not None:
        metrics.log_metric("drift_share_evidently", summary["share"])
    metrics.log_metric("drifted_features", sum(1 for f in summary["features"].values() if f["drifted"]))
