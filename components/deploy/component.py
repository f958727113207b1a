"""KFP wrapper of deploy (runs only inside dsl.If(promote))."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.deploy, install_kfp_package=False)
def deploy_model(
    saved_model: Input[Model],
    model: Input[Model],
    train_data: Input[Dataset],
    schema: Input[Artifact],
    evaluation: Input[Artifact],
    decision: Input[Artifact],
    ingest_info: Input[Artifact],
    deployment: Output[Artifact],
    model_card: Output[Markdown],
    model_name: str,
    mlflow_tracking_uri: str,
    serving_base_dir: str,
    require_approval: bool,
    vertex_project: str,
    vertex_location: str,
    vertex_endpoint: str,
    canary_traffic_percent: int,
    pipeline_run: str = "",
    export_metrics: Input[Metrics] = None,
    model_card_file: str = "",
):
    """Register the version in MLflow, push it to TF Serving, verify warm-up, move the champion alias.

    With a Vertex project set, also uploads the SavedModel to Vertex AI Model Registry (versions
    under one parent) and deploys it to the endpoint with the canary traffic share, before any
    alias moves (a Vertex failure promotes nothing). With require_approval, Vertex is skipped.
    Compiled with --deploy-target kserve, likewise creates or patches the KServe InferenceService
    (settings in the task's KFP_TF_GATE_KSERVE) and waits for it to be Ready.

    Args:
        model_name: Registered model name (MLflow and TF Serving).
        mlflow_tracking_uri: MLflow tracking/registry URI.
        serving_base_dir: TF Serving model base path; the version goes to <base>/<model_name>/<version>/.
        require_approval: Make the version "candidate" instead of "champion" (promote later with `approve`).
        pipeline_run: Pipeline run id, recorded in the model card and tags.
        vertex_project: Google Cloud project for Vertex AI; empty to skip Vertex.
        vertex_location: Vertex AI region.
        vertex_endpoint: Vertex endpoint display name; empty to register without deploying.
        canary_traffic_percent: Share of endpoint (or InferenceService) traffic the new version receives
            (100 = full rollout).
        export_metrics: Export's metrics (TFLite quantization, size, difference to the SavedModel), for the
            model card; optional.
        model_card_file: YAML or JSON file (local path or gs://...) with the model card's intended_use,
            limitations, ethical_considerations and owners; empty: the card says they are not filled in.
    """
    from components.deploy.warmup import start_warmup

    # First: TensorFlow's import (when export did not already verify these bytes) overlaps with the MLflow work below.
    warmup = start_warmup(saved_model.path, dict(export_metrics.metadata) if export_metrics is not None else None)

    try:
        import logging
        import os

        from components._shared import io
        from components._shared.errors import attempt_marker, fail_fast
        from components.deploy.card import load_fields
        from components.deploy.core import deploy_run
        from components.deploy.kserve import config_from_env
        from components.deploy.vertex import VertexTarget

        logging.basicConfig(level=logging.INFO)
        # A retry after a lost pod deploys (deploy is safe to repeat); after a deterministic error
        # ("champion changed", "refusing to overwrite", a failed warm-up) it fails at once, same sentence.
        with fail_fast(attempt_marker(deployment.uri)):
            vertex = (VertexTarget(vertex_project, vertex_location, vertex_endpoint, canary_traffic_percent)
                      if vertex_project else None)
            result, card = deploy_run(
                saved_model.path, model.path, train_data.path, io.read_json(schema.path),
                io.read_json(evaluation.path), io.read_json(decision.path), io.read_json(ingest_info.path),
                model_name, mlflow_tracking_uri, serving_base_dir, model_metadata=dict(model.metadata),
                saved_model_uri=saved_model.uri, pipeline_run=pipeline_run,
                image=os.environ.get("KFP_TF_GATE_IMAGE", "local"), require_approval=require_approval,
                vertex=vertex, verify=warmup.verify, kserve=config_from_env(os.environ, canary_traffic_percent),
                export_metrics=dict(export_metrics.metadata) if export_metrics is not None else None,
                card_fields=load_fields(model_card_file))
        io.write_json(result.to_dict(), deployment.path)
        deployment.metadata.update({"version": result.version, "alias": result.alias, "serving_dir": result.serving_dir})
        with open(model_card.path, "w") as fh:
            fh.write(card)
    finally:
        warmup.cancel()  # a no-op once deploy has used it
