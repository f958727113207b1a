"""KFP wrappers called in-process (``python_func``) with real artifact objects under tmp_path:
what each writes to its output artifacts, metadata and metrics, and how it fails."""

from __future__ import annotations

import os

import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components._shared import io
from components._shared.errors import DataError, ServingStateError, ValidationError
from components._shared.params import with_defaults
from components.engineer.component import engineer_features
from components.ingest.component import ingest_data
from components.validate.component import champion_reference, drift_report, validate_data
from pipelines.data import generate_churn

MODEL = "test-model"


def _out(cls, root, name):
    return cls(uri=os.path.join(str(root), name))


def _ingest(root, data_uri, **kwargs):
    outs = {
        "train_data": _out(Dataset, root, "train_data"),
        "eval_data": _out(Dataset, root, "eval_data"),
        "test_data": _out(Dataset, root, "test_data"),
        "ingest_info": _out(Artifact, root, "ingest_info"),
    }
    metrics = _out(Metrics, root, "ingest_metrics")
    ingest_data.python_func(
        **with_defaults(
            ingest_data,
            data_uri=data_uri,
            label="churned",
            id_column="customer_id",
            metrics=metrics,
            **outs,
            **kwargs,
        )
    )
    return {**outs, "ingest_metrics": metrics}


def _reference(root, schema_uri="", mlflow_tracking_uri=""):
    ref = _out(Artifact, root, "reference")
    champion_reference.python_func(
        reference=ref, model_name=MODEL, mlflow_tracking_uri=mlflow_tracking_uri, schema_uri=schema_uri
    )
    return ref


def _validate(root, ing, schema_uri="", mlflow_tracking_uri="", **kwargs):
    ref = _reference(root, schema_uri, mlflow_tracking_uri)
    outs = {
        "schema": _out(Artifact, root, "schema"),
        "anomalies": _out(Artifact, root, "anomalies"),
        "report": _out(HTML, root, "report.html"),
    }
    metrics = _out(Metrics, root, "validate_metrics")
    validate_data.python_func(
        train_data=ing["train_data"],
        eval_data=ing["eval_data"],
        test_data=ing["test_data"],
        ingest_info=ing["ingest_info"],
        reference=ref,
        id_column="customer_id",
        metrics=metrics,
        **outs,
        **kwargs,
    )
    return {**outs, "validate_metrics": metrics, "reference": ref}


@pytest.fixture(scope="module")
def data_stage(tmp_path_factory):
    """ingest -> validate -> engineer through their wrappers, once for this module."""
    root = tmp_path_factory.mktemp("wrappers")
    src = root / "churn.csv"
    generate_churn(2000, seed=9).to_csv(src, index=False)
    ing = _ingest(root, str(src))
    val = _validate(root, ing)
    spec = _out(Artifact, root, "transform_spec")
    engineer_features.python_func(
        **with_defaults(
            engineer_features,
            train_data=ing["train_data"], schema=val["schema"], transform_spec=spec,
        )
    )
    return {"root": root, "src": str(src), **ing, **val, "transform_spec": spec}


# --------------------------------------------------------------------------- ingest_data


def test_ingest_data_writes_splits_info_and_metrics(data_stage):
    info = io.read_json(data_stage["ingest_info"].path)
    assert (
        info["label"] == "churned"
        and info["positive_label"] == "yes"
        and info["negative_label"] == "no"
    )
    assert info["source_uri"] == data_stage["src"]
    assert sum(info["rows"].values()) == 2000
    for split in ("train", "eval", "test"):
        art = data_stage[f"{split}_data"]
        df = io.read_parquet(art.path)
        assert len(df) == info["rows"][split] == art.metadata["rows"]
        assert art.metadata["content_hash"] == info["content_hash"]
        assert art.metadata["source_uri"] == data_stage["src"]
        assert data_stage["ingest_metrics"].metadata[f"{split}_rows"] == info["rows"][split]
    assert data_stage["ingest_info"].metadata == {
        "content_hash": info["content_hash"],
        "positive_label": "yes",
        "task": "binary",
        "id_column": "customer_id",
        "id_column_source": "given",
        "split": "by a hash of the given id column 'customer_id'",
        "split_rule": "sha256-id-v2:id=customer_id,eval=0.1,test=0.2",
        "warnings": [],
    }
    assert (info["id_column"], info["id_column_source"], info["warnings"]) == ("customer_id", "given", [])


def test_ingest_data_fails_with_one_sentence_on_bad_input(tmp_path):
    generate_churn(200, seed=1).drop(columns="churned").to_csv(
        tmp_path / "nolabel.csv", index=False
    )
    with pytest.raises(
        DataError, match=r"^the label column 'churned' is not in the data .*nolabel\.csv"
    ):
        _ingest(tmp_path, str(tmp_path / "nolabel.csv"))
    with pytest.raises(DataError, match=r"does not exist$"):
        _ingest(tmp_path, str(tmp_path / "missing.csv"))


def test_ingest_data_positive_label_parameter(tmp_path):
    generate_churn(300, seed=1).to_csv(tmp_path / "d.csv", index=False)
    outs = _ingest(tmp_path, str(tmp_path / "d.csv"), positive_label="no")
    assert io.read_json(outs["ingest_info"].path)["positive_label"] == "no"
    assert outs["ingest_info"].metadata["positive_label"] == "no"


# --------------------------------------------------------------------------- validate_data


def test_validate_data_writes_schema_anomalies_report_and_metrics(data_stage):
    schema = io.read_json(data_stage["schema"].path)
    assert schema["label"] == "churned"
    assert schema["positive_label"] == "yes" and schema["negative_label"] == "no"
    assert schema["columns"]["customer_id"]["role"] == "excluded"
    features = [c for c, e in schema["columns"].items() if e["role"] == "feature"]
    assert data_stage["schema"].metadata["features"] == len(features) == 11
    assert data_stage["schema"].metadata["reference"] == "none (no registry configured: schema inferred)"

    anomalies = io.read_json(data_stage["anomalies"].path)
    assert anomalies["status"] == "warnings"
    assert [a["kind"] for a in anomalies["anomalies"]] == ["excluded_column"]
    assert anomalies["reference_source"] == "none (no registry configured: schema inferred)"
    assert set(anomalies["features"]) == set(features)

    with open(data_stage["report"].path) as fh:
        page = fh.read()
    assert "<h1>Data validation: WARNINGS</h1>" in page
    metrics = data_stage["validate_metrics"].metadata
    assert (metrics["anomalies"], metrics["blocking_anomalies"]) == (1, 0)
    assert 0.0 <= metrics["drift_share_psi"] <= 1.0


def test_validate_data_blocks_on_corrupted_data_against_a_schema_file(data_stage, tmp_path):
    df = generate_churn(1000, seed=3).astype({"tenure_months": object})
    df.loc[df.index[::30], "tenure_months"] = "unknown"
    df.to_csv(tmp_path / "bad.csv", index=False)
    ing = _ingest(tmp_path, str(tmp_path / "bad.csv"))

    with pytest.raises(
        ValidationError,
        match=r"^validation found \d+ blocking anomal(y|ies): .*"
        r"column 'tenure_months' should be numeric but holds text "
        r"such as 'unknown'",
    ):
        _validate(tmp_path, ing, schema_uri=data_stage["schema"].path)
    # The evidence is written before the task fails, for the KFP UI.
    anomalies = io.read_json(str(tmp_path / "anomalies"))
    assert anomalies["status"] == "failed"
    assert anomalies["reference_source"] == (
        f"schema file {data_stage['schema'].path} (schema inferred; no registry configured)"
    )
    blocking = {
        (a["kind"], a["column"]) for a in anomalies["anomalies"] if a["severity"] == "blocking"
    }
    assert ("type_change", "tenure_months") in blocking
    assert os.path.exists(tmp_path / "report.html")


def test_champion_reference_without_registry_or_schema_says_so(data_stage):
    ref = data_stage["reference"]
    assert ref.metadata == {"source": "none (no registry configured: schema inferred)", "version": ""}
    assert sorted(os.listdir(ref.path)) == ["reference.json"]


def test_champion_reference_copies_a_schema_file_and_names_a_missing_one(data_stage, tmp_path):
    ref = _reference(tmp_path / "a", schema_uri=data_stage["schema"].path)
    assert io.read_json(os.path.join(ref.path, "user_schema.json")) == io.read_json(data_stage["schema"].path)
    assert not os.path.exists(os.path.join(ref.path, "schema.json"))  # no champion
    assert ref.metadata["source"].startswith(f"schema file {data_stage['schema'].path} (schema inferred")
    with pytest.raises(DataError, match=r"^the schema file .*nope\.json does not exist$"):
        _reference(tmp_path / "b", schema_uri=str(tmp_path / "nope.json"))


def test_validate_data_rejects_an_unknown_severity_override(data_stage, tmp_path):
    with pytest.raises(ValidationError, match=r"^invalid severity override 'nope': 'warning'"):
        _validate(tmp_path, data_stage, anomaly_severity='{"nope": "warning"}')


# --------------------------------------------------------------------------- drift_report


def test_drift_report_writes_html_json_and_metrics(data_stage, tmp_path):
    report, drift, metrics = (
        _out(HTML, tmp_path, "drift.html"),
        _out(Artifact, tmp_path, "drift"),
        _out(Metrics, tmp_path, "drift_metrics"),
    )
    drift_report.python_func(
        train_data=data_stage["train_data"],
        test_data=data_stage["test_data"],
        reference=data_stage["reference"],
        schema=data_stage["schema"],
        report=report,
        drift=drift,
        metrics=metrics,
        sample_rows=5000,
    )
    summary = io.read_json(drift.path)
    assert summary["reference_source"] == "none (no registry configured: schema inferred)"
    assert drift.metadata == {"reference": "this run's train split", "current": "this run's test split"}
    assert len(summary["features"]) == data_stage["schema"].metadata["features"]
    assert metrics.metadata["drift_share_evidently"] == summary["share"]
    assert metrics.metadata["drifted_features"] == sum(f["drifted"] for f in summary["features"].values())
    assert os.path.getsize(report.path) > 10_000


# --------------------------------------------------------------------------- engineer_features


def test_engineer_features_writes_the_transform_spec(data_stage):
    spec = io.read_json(data_stage["transform_spec"].path)
    assert spec["label"] == "churned"
    assert spec["positive_label"] == "yes" and spec["negative_label"] == "no"
    assert spec["train_rows"] == io.read_json(data_stage["ingest_info"].path)["rows"]["train"]
    assert data_stage["transform_spec"].metadata == {
        "numeric": len(spec["numeric"]),
        "categorical": len(spec["categorical"]),
    }
    assert {f["name"] for f in spec["categorical"]} == {
        "contract",
        "payment_method",
        "internet_service",
        "region",
    }


# --------------------------------------------------------------------------- the TF chain


@pytest.mark.slow
def test_train_evaluate_export_compare_deploy_chain(data_stage, tracking_uri, tmp_path):
    from components.compare.component import compare_models
    from components.deploy.component import deploy_model
    from components.evaluate.component import evaluate_model
    from components.export.component import export_model
    from components.train.component import train_model

    d = data_stage
    model = _out(Model, tmp_path, "model")
    train_metrics = _out(Metrics, tmp_path, "train_metrics")
    train_model.python_func(
        **with_defaults(
            train_model,
            train_data=d["train_data"],
            eval_data=d["eval_data"],
            transform_spec=d["transform_spec"],
            ingest_info=d["ingest_info"],
            model=model,
            metrics=train_metrics,
            model_name=MODEL,
            mlflow_tracking_uri=tracking_uri,
            epochs=2,
            batch_size=128,
            pipeline_run="run-1",
        )
    )
    assert {"model.keras", "transform_spec.json"} <= set(os.listdir(model.path))
    assert model.metadata["framework"] == "keras" and model.metadata["epochs_run"] == 2
    assert model.metadata["mlflow_run_id"]
    assert train_metrics.metadata["eval_auc"] > 0.6

    metrics = _out(Metrics, tmp_path, "eval_metrics")
    cm = _out(ClassificationMetrics, tmp_path, "classification_metrics")
    evaluation = _out(Artifact, tmp_path, "evaluation")
    report = _out(Markdown, tmp_path, "evaluation.md")
    evaluate_model.python_func(
        **with_defaults(
            evaluate_model,
            model=model,
            test_data=d["test_data"],
            eval_data=d["eval_data"],
            metrics=metrics,
            classification_metrics=cm,
            evaluation=evaluation,
            report=report,
        )
    )
    ev = io.read_json(evaluation.path)
    assert (
        metrics.metadata["auc"] == pytest.approx(ev["metrics"]["auc"])
        and ev["metrics"]["auc"] > 0.6
    )
    assert metrics.metadata["rows"] == io.read_json(d["ingest_info"].path)["rows"]["test"]
    assert [s["displayName"] for s in cm.metadata["confusionMatrix"]["annotationSpecs"]] == [
        "negative",
        "positive",
    ]
    assert (
        sum(sum(r["row"]) for r in cm.metadata["confusionMatrix"]["rows"])
        == metrics.metadata["rows"]
    )
    assert len(cm.metadata["confidenceMetrics"]) > 2
    with open(report.path) as fh:
        assert fh.read().startswith("# Model evaluation")

    saved_model = _out(Model, tmp_path, "saved_model")
    tflite = _out(Model, tmp_path, "tflite_model")
    export_metrics = _out(Metrics, tmp_path, "export_metrics")
    export_model.python_func(
        **with_defaults(
            export_model,
            model=model,
            test_data=d["test_data"],
            saved_model=saved_model,
            tflite_model=tflite,
            metrics=export_metrics,
            model_name=MODEL,
        )
    )
    assert os.path.exists(os.path.join(saved_model.path, "saved_model.pb"))
    assert os.path.exists(os.path.join(tflite.path, "model.tflite"))
    assert saved_model.metadata["signatures"] == "serving_default,predict_examples,classification"
    assert tflite.metadata["max_abs_diff"] == export_metrics.metadata["tflite_max_abs_diff"] <= 1e-3
    # One threshold: train recorded it with the model; evaluate reports at it, export serves it.
    recorded = io.read_json(os.path.join(model.path, "threshold.json"))["threshold"]
    assert export_metrics.metadata["threshold"] == ev["threshold"] == recorded
    from components._shared.warmup import verified_digest

    assert export_metrics.metadata["saved_model_digest"] == verified_digest(saved_model.path)
    assert export_metrics.metadata["warmup_requests"] == 3

    def compare(tag, serving_base_dir=""):
        decision = _out(Artifact, tmp_path, f"decision-{tag}")
        decision_report = _out(Markdown, tmp_path, f"decision-{tag}.md")
        promote = compare_models.python_func(
            **with_defaults(
                compare_models,
                model=model,
                test_data=d["test_data"],
                evaluation=evaluation,
                decision=decision,
                decision_report=decision_report,
                model_name=MODEL,
                mlflow_tracking_uri=tracking_uri,
                serving_base_dir=serving_base_dir,
                min_auc=0.55,
                max_ece=0.5,
                max_auc_gap=1.0,
                bootstrap_samples=50,
            )
        )
        return promote, decision, decision_report

    promote, decision, decision_report = compare("first")
    dec = io.read_json(decision.path)
    assert promote is True and dec["promote"] is True
    assert "no champion is registered: the absolute gates alone decide" in dec["reasons"]
    assert decision.metadata == {"promote": True, "champion_version": ""}
    with open(decision_report.path) as fh:
        assert fh.read().startswith("# Promotion decision: PROMOTE")

    serving = tmp_path / "serving"
    deployment = _out(Artifact, tmp_path, "deployment")
    card = _out(Markdown, tmp_path, "model_card.md")
    deploy_model.python_func(
        **with_defaults(
            deploy_model,
            saved_model=saved_model,
            model=model,
            train_data=d["train_data"],
            schema=d["schema"],
            evaluation=evaluation,
            decision=decision,
            ingest_info=d["ingest_info"],
            deployment=deployment,
            model_card=card,
            export_metrics=export_metrics,
            model_name=MODEL,
            mlflow_tracking_uri=tracking_uri,
            serving_base_dir=str(serving),
            pipeline_run="run-1",
        )
    )
    dep = io.read_json(deployment.path)
    assert (dep["version"], dep["alias"], dep["reused"]) == ("1", "champion", False)
    assert dep["serving_dir"] == str(serving / MODEL / "1")
    assert os.path.exists(serving / MODEL / "1" / "saved_model.pb") and os.path.exists(
        serving / "models.config"
    )
    assert deployment.metadata == {
        "version": "1",
        "alias": "champion",
        "serving_dir": dep["serving_dir"],
    }
    with open(card.path) as fh:
        text = fh.read()
    assert text.startswith(f"# Model card: {MODEL} version 1\n") and "| pipeline run | `run-1` |" in text
    assert f"| quantization | {export_metrics.metadata['tflite_quantization']} |" in text  # export's figures, wired
    assert "{'" not in text and "vnext" not in text

    # The same model against itself as champion: re-scored on the same rows, not better, kept.
    # Compare checked first that the served stable version is that champion and loads.
    promote, decision, _ = compare("second", serving_base_dir=str(serving))
    dec = io.read_json(decision.path)
    assert promote is False and dec["champion_version"] == "1"
    assert dec["comparison"]["auc_diff"] == 0.0
    assert any(r.startswith("does not beat the champion (version 1)") for r in dec["reasons"])
    assert not any("another rule" in r for r in dec["reasons"])  # trained on splits of the same rule
    from components._shared.champion import LINEAGE_SPLIT_RULE_TAG, find_champion

    champ = find_champion(tracking_uri, MODEL)  # the rule: train's lineage tag on the training run, deploy's version tag
    rule = "sha256-id-v2:id=customer_id,eval=0.1,test=0.2"
    assert champ.client.get_run(champ.ref.run_id).data.tags[LINEAGE_SPLIT_RULE_TAG] == rule
    assert champ.ref.tags["split_rule"] == rule

    # A corrupted served champion: compare decides nothing, one sentence says what is wrong.
    pb = serving / MODEL / "1" / "saved_model.pb"
    good = pb.read_bytes()
    pb.write_bytes(b"garbage")
    with pytest.raises(ServingStateError, match=r"the files served as version 1 of .* are not the SavedModel"):
        compare("corrupt", serving_base_dir=str(serving))
    pb.write_bytes(good)

    # validate_data now enforces the champion's schema and compares with its reference sample.
    val_dir = tmp_path / "validate-again"
    val_dir.mkdir()
    outs = _validate(val_dir, d, mlflow_tracking_uri=tracking_uri)
    assert io.read_json(outs["anomalies"].path)["reference_source"] == f"champion {MODEL} v1"
    assert outs["schema"].metadata["reference"] == f"champion {MODEL} v1"
