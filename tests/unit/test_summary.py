"""summary.json from the pipeline's declared outputs (no task-name globbing)."""

from __future__ import annotations

import json

from pipelines.local import build_summary, summary_from_outputs

DECISION = {"promote": False, "challenger": {"auc": 0.8}, "champion": None, "champion_version": None,
            "comparison": None, "reasons": ["keep the current model: the challenger does not pass the gates"]}


def test_summary_keys_and_values_without_a_deploy(tmp_path):
    decision = tmp_path / "decision"
    decision.write_text(json.dumps(DECISION))
    s = summary_from_outputs(
        "run-1", str(tmp_path), decision_path=str(decision), saved_model_dir=str(tmp_path / "sm"),
        tflite_dir=str(tmp_path / "tfl"), export_metrics={"tflite_max_abs_diff": 1e-4, "display_name": "metrics"},
        tracking_uri="", serving_base=str(tmp_path / "serving"), model_name="m")
    assert list(s) == ["run_id", "task", "promoted", "challenger", "champion", "champion_version", "comparison",
                       "model_version", "alias", "saved_model_dir", "tflite_path", "tflite_max_abs_diff", "export",
                       "serving_dir", "reasons", "run_dir", "split", "warnings"]
    assert s["split"] is None and s["warnings"] == []  # no ingest record given
    assert s["promoted"] is False and s["model_version"] is None and s["serving_dir"] is None
    assert s["tflite_path"] == str(tmp_path / "tfl" / "model.tflite") and s["export"] == {"tflite_max_abs_diff": 1e-4}
    assert s["reasons"] == DECISION["reasons"]


def test_a_deploy_result_given_by_the_caller_is_used():
    s = build_summary("r", "/runs/r", {**DECISION, "promote": True}, {"version": "3", "alias": "champion",
                      "serving_dir": "/s/m/3"}, "/sm", None, {}, "/s/m/2")
    assert (s["promoted"], s["model_version"], s["alias"], s["serving_dir"]) == (True, "3", "champion", "/s/m/3")
    assert s["tflite_path"] is None


def test_ingest_split_and_warnings_reach_the_summary(tmp_path):
    from pipelines.local import format_summary

    decision, ingest = tmp_path / "decision", tmp_path / "ingest_info"
    decision.write_text(json.dumps(DECISION))
    warning = "no id column: rows are split by position, so the champion comparison may include rows it trained on"
    ingest.write_text(json.dumps({"split": "by row position (seed 42)", "warnings": [warning]}))
    s = summary_from_outputs(
        "run-1", str(tmp_path), decision_path=str(decision), saved_model_dir=None, tflite_dir=None, export_metrics={},
        tracking_uri="", serving_base=str(tmp_path / "serving"), model_name="m", ingest_info_path=str(ingest))
    assert s["split"] == "by row position (seed 42)" and s["warnings"] == [warning]
    assert f"  warning: {warning}" in format_summary({**s, "model_name": "m"}).splitlines()


def test_the_printed_summary_shows_the_task_metrics():
    from pipelines.local import format_summary

    s = build_summary("r", "/runs/r", {"promote": False, "challenger": {"task": "regression", "rmse": 55.8, "mae": 44.1,
                                                                        "r2": 0.5},
                                       "champion": {"task": "regression", "rmse": 60.0}, "champion_version": "1",
                                       "reasons": []}, None, None, None, {}, None)
    text = format_summary({**s, "model_name": "m"})
    assert s["task"] == "regression"
    assert "  challenger RMSE 55.8000  MAE 44.1000  R2 0.5000" in text
    assert "  champion   RMSE 60.0000 (v1, re-scored on this test split)" in text
    assert "[regression]" in text.splitlines()[0]
