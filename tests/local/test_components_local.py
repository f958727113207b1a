"""Every component except deploy run by kfp.local (SubprocessRunner, the current venv) inside
small test pipelines; deploy runs in the whole-pipeline test. A blocking validation anomaly
fails the run and nothing downstream of validate runs.

No ``from __future__ import annotations`` here: KFP reads the pipeline functions' annotations.
"""

import glob
import json
import os

import pytest
from kfp import dsl, local

from components._shared.params import with_defaults
from components.compare.component import compare_models
from components.engineer.component import engineer_features
from components.evaluate.component import evaluate_model
from components.export.component import export_model
from components.ingest.component import ingest_data
from components.train.component import train_model
from components.validate.component import champion_reference, drift_report, validate_data
from pipelines.data import generate_churn

MODEL = "test-model"

# The wrappers declare the project images; locally the same code runs in this venv.
pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")


@dsl.pipeline(name="data-stage-test")
def data_stage_pipeline(data_uri: str):
    ingest_task = ingest_data(
        **with_defaults(ingest_data, data_uri=data_uri, label="churned", id_column="customer_id")
    )
    reference_task = champion_reference(model_name=MODEL)
    validate_task = validate_data(
        train_data=ingest_task.outputs["train_data"],
        eval_data=ingest_task.outputs["eval_data"],
        test_data=ingest_task.outputs["test_data"],
        ingest_info=ingest_task.outputs["ingest_info"],
        reference=reference_task.outputs["reference"],
        id_column="customer_id",
    )
    drift_report(
        train_data=ingest_task.outputs["train_data"],
        test_data=ingest_task.outputs["test_data"],
        reference=reference_task.outputs["reference"],
        schema=validate_task.outputs["schema"],
    )
    engineer_features(
        **with_defaults(
            engineer_features,
            train_data=ingest_task.outputs["train_data"], schema=validate_task.outputs["schema"],
        )
    )


@dsl.pipeline(name="model-stage-test")
def model_stage_pipeline(data_uri: str) -> bool:
    ingest_task = ingest_data(
        **with_defaults(ingest_data, data_uri=data_uri, label="churned", id_column="customer_id")
    )
    validate_task = validate_data(
        train_data=ingest_task.outputs["train_data"],
        eval_data=ingest_task.outputs["eval_data"],
        test_data=ingest_task.outputs["test_data"],
        ingest_info=ingest_task.outputs["ingest_info"],
        reference=champion_reference(model_name=MODEL).outputs["reference"],
        id_column="customer_id",
    )
    engineer_task = engineer_features(
        **with_defaults(
            engineer_features,
            train_data=ingest_task.outputs["train_data"], schema=validate_task.outputs["schema"],
        )
    )
    train_task = train_model(
        **with_defaults(
            train_model,
            train_data=ingest_task.outputs["train_data"],
            eval_data=ingest_task.outputs["eval_data"],
            transform_spec=engineer_task.outputs["transform_spec"],
            ingest_info=ingest_task.outputs["ingest_info"],
            model_name=MODEL,
            epochs=2,
            batch_size=128,
        )
    )
    evaluate_task = evaluate_model(
        **with_defaults(
            evaluate_model,
            model=train_task.outputs["model"],
            test_data=ingest_task.outputs["test_data"],
            eval_data=ingest_task.outputs["eval_data"],
        )
    )
    export_model(
        **with_defaults(
            export_model,
            model=train_task.outputs["model"],
            test_data=ingest_task.outputs["test_data"],
            model_name=MODEL,
        )
    )
    compare_task = compare_models(
        **with_defaults(
            compare_models,
            model=train_task.outputs["model"],
            test_data=ingest_task.outputs["test_data"],
            evaluation=evaluate_task.outputs["evaluation"],
            model_name=MODEL,
            min_auc=0.55,
            max_ece=0.5,
            max_auc_gap=1.0,
            bootstrap_samples=50,
        )
    )
    return compare_task.outputs["Output"]


def _init(tmp_path):
    root = tmp_path / "root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    return root


def _output(root, task: str, name: str) -> str:
    [path] = glob.glob(os.path.join(str(root), "*", task, name))
    return path


def _executor_output(root, task: str) -> dict:
    with open(_output(root, task, "executor_output.json")) as fh:
        return json.load(fh)


def _metrics(root, task: str, output: str = "metrics") -> dict:
    art = _executor_output(root, task)["artifacts"][output]["artifacts"][0]
    return {k: v for k, v in art.get("metadata", {}).items() if k != "display_name"}


def _tasks_run(root) -> set:
    return {
        os.path.basename(os.path.dirname(p))
        for p in glob.glob(os.path.join(str(root), "*", "*", ""))
    }


def _csv(tmp_path, df) -> str:
    path = tmp_path / "churn.csv"
    df.to_csv(path, index=False)
    return str(path)


def test_data_stage_components_run_locally(tmp_path):
    from components._shared import io

    root = _init(tmp_path)
    data_stage_pipeline(data_uri=_csv(tmp_path, generate_churn(1500, seed=3)))

    assert {"ingest-data", "champion-reference", "validate-data", "drift-report", "engineer-features"} <= _tasks_run(root)
    rows = {
        s: len(io.read_parquet(_output(root, "ingest-data", f"{s}_data")))
        for s in ("train", "eval", "test")
    }
    assert sum(rows.values()) == 1500
    assert _metrics(root, "ingest-data") == {f"{s}_rows": float(n) for s, n in rows.items()}
    schema = io.read_json(_output(root, "validate-data", "schema"))
    assert (
        schema["negative_label"] == "no" and schema["columns"]["customer_id"]["role"] == "excluded"
    )
    assert io.read_json(_output(root, "validate-data", "anomalies"))["status"] == "warnings"
    with open(_output(root, "validate-data", "report")) as fh:
        assert "<h1>Data validation: WARNINGS</h1>" in fh.read()
    assert _metrics(root, "validate-data")["blocking_anomalies"] == 0
    assert 0.0 <= _metrics(root, "drift-report")["drift_share_evidently"] <= 1.0
    assert io.read_json(_output(root, "drift-report", "drift"))["current"] == "this run's test split"
    spec = io.read_json(_output(root, "engineer-features", "transform_spec"))
    assert spec["train_rows"] == rows["train"]
    assert len(spec["numeric"]) == 7 and len(spec["categorical"]) == 4


def test_blocking_anomaly_fails_the_pipeline_and_nothing_downstream_runs(tmp_path, capsys):
    root = _init(tmp_path)
    df = generate_churn(1000, seed=3).astype({"tenure_months": object})
    df.loc[df.index[::30], "tenure_months"] = "unknown"  # text in a numeric column

    with pytest.raises(
        RuntimeError, match=r"finished with status .*FAILURE.*Inner task failed: .*validate-data"
    ):
        data_stage_pipeline(data_uri=_csv(tmp_path, df))

    assert "engineer-features" not in _tasks_run(root)
    assert not glob.glob(os.path.join(str(root), "*", "engineer-features", "*"))
    out = capsys.readouterr().out
    assert (
        "ValidationError: validation found 1 blocking anomaly: train: column 'tenure_months' is numeric "
        "except for text values such as 'unknown'" in out
    )


@pytest.mark.slow
def test_model_stage_components_run_locally(tmp_path):
    from components._shared import io

    root = _init(tmp_path)
    task = model_stage_pipeline(data_uri=_csv(tmp_path, generate_churn(2000, seed=5)))

    assert task.output is True  # compare_models' promote, with gates a 2-epoch model passes
    assert {
        "ingest-data",
        "validate-data",
        "engineer-features",
        "train-model",
        "evaluate-model",
        "export-model",
        "compare-models",
    } <= _tasks_run(root)
    assert os.path.exists(os.path.join(_output(root, "train-model", "model"), "model.keras"))
    assert _metrics(root, "train-model")["epochs_run"] == 2
    evaluation = io.read_json(_output(root, "evaluate-model", "evaluation"))
    assert evaluation["metrics"]["auc"] > 0.6
    cm = _metrics(root, "evaluate-model", "classification_metrics")
    assert "confusionMatrix" in cm and "confidenceMetrics" in cm
    assert os.path.exists(
        os.path.join(_output(root, "export-model", "saved_model"), "saved_model.pb")
    )
    assert os.path.exists(
        os.path.join(_output(root, "export-model", "tflite_model"), "model.tflite")
    )
    assert _metrics(root, "export-model")["tflite_max_abs_diff"] <= 1e-3
    decision = io.read_json(_output(root, "compare-models", "decision"))
    assert decision["promote"] is True
    assert "no champion is registered: the absolute gates alone decide" in decision["reasons"]
