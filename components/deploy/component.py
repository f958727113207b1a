"""KFP wrapper of deploy (runs only inside dsl.If(promote))."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

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
    serving_base_dir: str = "",
    require_approval: bool = False,
    pipeline_run: str = "",
    vertex_project: str = "",
    vertex_location: str = "us-central1",
    vertex_endpoint: str = "",
    canary_traffic_percent: int = 100,
):
    """Register the version in MLflow, push it to TF Serving, verify warm-up, move the champion alias.

    With a Vertex project set, also uploads the SavedModel to Vertex AI Model Registry (versions
    under one parent) and deploys it to the endpoint with the canary traffic share, before any
    alias moves (a Vertex failure promotes nothing). With require_approval, Vertex is skipped.

    Args:
        model_name: Registered model name (MLflow and TF Serving).
        mlflow_tracking_uri: MLflow tracking/registry URI.
        serving_base_dir: TF Serving model base path; the version goes to <base>/<model_name>/<version>/.
        require_approval: Make the version "candidate" instead of "champion" (promote later with `approve`).
        pipeline_run: Pipeline run id, recorded in the model card and tags.
        vertex_project: Google Cloud project for Vertex AI; empty to skip Vertex.
        vertex_location: Vertex AI region.
        vertex_endpoint: Vertex endpoint display name; empty to register without deploying.
        canary_traffic_percent: Share of endpoint traffic the new version receives (100 = full rollout).
    """
    from components.deploy.warmup import WarmupJob

    warmup = WarmupJob()  # first: TensorFlow's import overlaps with the MLflow work below

    try:
        import logging
        import os
        import tempfile

        from components._shared import io
        from components.deploy.core import deploy, fingerprint
        from components.deploy.core import model_card as make_card

        logging.basicConfig(level=logging.INFO)
        ev, dec, info = io.read_json(evaluation.path), io.read_json(decision.path), io.read_json(ingest_info.path)
        spec = io.read_json(os.path.join(model.path, "transform_spec.json"))
        lineage = {"pipeline_run": pipeline_run, "data_hash": info["content_hash"], "data_uri": info["source_uri"],
                   "saved_model_uri": saved_model.uri, "trainer_image": os.environ.get("KFP_TF_GATE_IMAGE", "local")}
        train_meta = {"features": [f["name"] for f in spec["numeric"] + spec["categorical"]],
                      "params": {k: v for k, v in model.metadata.items() if k != "mlflow_run_id"},
                      "device": model.metadata.get("device", "")}
        data_dir = tempfile.mkdtemp(prefix="data-")
        io.write_json(io.read_json(schema.path), os.path.join(data_dir, "schema.json"))
        # The reference sample validate and drift-report compare later runs with.
        io.write_parquet(io.sample_parquet(train_data.path, 20_000, seed=0), os.path.join(data_dir, "reference.parquet"))
        reports = tempfile.mkdtemp(prefix="reports-")
        io.write_json(ev, os.path.join(reports, "evaluation.json"))
        io.write_json(dec, os.path.join(reports, "decision.json"))
        io.write_json(info, os.path.join(reports, "ingest.json"))
        card_version = "next"
        card = make_card(model_name, card_version, ev, dec, info, train_meta, lineage)
        tags = {"pipeline_run": pipeline_run, "data_hash": info["content_hash"], "auc": f"{ev['metrics']['auc']:.4f}"}
        before_promote = None
        if vertex_project:
            from components.deploy.vertex import VertexTarget, upload_and_deploy

            def before_promote(version):
                # Vertex first: if it fails, the MLflow alias and TF Serving labels stay where they were.
                return {"vertex": upload_and_deploy(
                    VertexTarget(vertex_project, vertex_location, vertex_endpoint, canary_traffic_percent),
                    model_name, saved_model.uri, fingerprint(saved_model.path), card)}

        result = deploy(saved_model.path, model_name, mlflow_tracking_uri, serving_base_dir,
                        artifacts={"model": model.path, "saved_model": saved_model.path, "data": data_dir, "reports": reports},
                        card=card, tags=tags, require_approval=require_approval, before_promote=before_promote,
                        verify=warmup.verify, expected_champion=dec.get("champion_version") or "")
        out = result.to_dict()
        io.write_json(out, deployment.path)
        deployment.metadata.update({"version": result.version, "alias": result.alias, "serving_dir": result.serving_dir})
        with open(model_card.path, "w") as fh:
            fh.write(card.replace(f"v{card_version}", f"v{result.version}"))
    finally:
        warmup.cancel()  # a no-op once deploy has used it
