"""Rehearsal of compiled/<target>/prediction.yaml against a training rehearsal's registry and bucket."""

import io

import pandas as pd
import pytest

from components._shared.errors import PipelineError
from pipelines.rehearsal.prediction import compiled_prediction_file, rehearse_prediction


def check_prediction_rehearsal(tmp_path, runs: str, model_name: str, champion_version, small_csv, services) -> None:
    """After training rehearsals on ``runs``: the prediction rehearsal of the compiled Kubeflow file scores
    every row with the champion, and a table missing a feature fails with one sentence, writing nothing.

    Called by ``test_rehearse.test_kubeflow_rehearsal_twice_on_one_runs_dir`` (it pays for the training
    rehearsals once).
    """
    summary = rehearse_prediction("kubeflow", small_csv, runs_dir=runs, model_name=model_name,
                                  params={"id_column": "customer_id"}, services=services,
                                  pipeline_file=compiled_prediction_file("kubeflow"), backoff_scale=0.0)
    rows = len(pd.read_csv(small_csv))
    bucket = services.bucket
    assert summary["rows"] == rows and str(summary["model_version"]) == str(champion_version)
    assert summary["output"] == f"gs://{bucket}/predictions/{summary['run_id']}"
    assert all(t["status"] == "SUCCESS" for t in summary["rehearsal"]["tasks"])
    client = services.store.client()
    blobs = {b.name: b for b in client.list_blobs(bucket, prefix=f"predictions/{summary['run_id']}/")}
    assert f"predictions/{summary['run_id']}/_SUCCESS" in blobs
    scored = pd.concat(pd.read_parquet(io.BytesIO(b.download_as_bytes()))
                       for name, b in blobs.items() if name.endswith(".parquet"))
    assert len(scored) == rows and scored["customer_id"].nunique() == rows
    assert set(scored["model_version"].astype(str)) == {str(champion_version)}

    missing = tmp_path / "no_tenure.csv"
    pd.read_csv(small_csv).drop(columns=["tenure_months"]).to_csv(missing, index=False)
    out = f"gs://{bucket}/predictions/missing-feature"
    with pytest.raises(PipelineError) as err:
        rehearse_prediction("kubeflow", str(missing), runs_dir=runs, model_name=model_name, output_uri=out,
                            services=services, pipeline_file=compiled_prediction_file("kubeflow"),
                            backoff_scale=0.0)
    sentence = str(err.value).split(" (rehearsal ")[0]
    assert "tenure_months" in sentence and "\n" not in sentence and "Traceback" not in sentence
    assert [b.name for b in client.list_blobs(bucket, prefix="predictions/missing-feature")] == []
