"""Per-step progress of a local run: thread-safe recording, the printed lines, key figures."""

from __future__ import annotations

import io
import threading

from kfp import dsl

from pipelines.progress import FAILED, OK, SKIPPED, StepRecorder, key_figure, package_versions


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _artifact(cls, **metadata):
    art = cls(uri="/tmp/x")
    art.metadata.update(metadata)
    return art


def test_two_tasks_finishing_out_of_order_from_two_threads():
    clock, out = _Clock(), io.StringIO()
    rec = StepRecorder(console_fd=1, clock=clock).attach(out)
    rec.started("ingest-data", "ingest")
    clock.now += 1.0
    rec.started("champion-reference", "champion-reference")
    clock.now += 4.0
    # the second one started ends first; both end from their own threads, as under pipelines/local_dag.py
    gate = threading.Barrier(2)

    def finish(task, status, outputs):
        gate.wait()
        rec.finished(task, status, outputs)

    threads = [threading.Thread(target=finish, args=("champion-reference", OK,
                                                     {"reference": _artifact(dsl.Artifact, version="3")})),
               threading.Thread(target=finish, args=("ingest-data", FAILED, {}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.as_list() == [{"name": "ingest", "status": FAILED, "seconds": 5.0, "start": 0.0},
                             {"name": "champion-reference", "status": OK, "seconds": 4.0, "start": 1.0}]
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted([
        "  champion-reference ok         4.0 s  champion v3",
        "  ingest             FAILED     5.0 s"])
    assert "\x1b[" not in out.getvalue()  # not a terminal: plain text


def test_a_planned_step_that_never_ran_is_skipped_with_its_condition():
    out = io.StringIO()
    rec = StepRecorder(console_fd=1, clock=_Clock()).attach(out)
    rec.started("compare-models", "compare")
    rec.finished("compare-models", OK, {"Output": False, "decision": _artifact(dsl.Artifact, promote=False)})
    rec.close([("compare-models", "compare", None), ("deploy-model", "deploy", "promote")])
    assert rec.as_list()[-1] == {"name": "deploy", "status": SKIPPED, "seconds": None, "start": 0.0}
    assert out.getvalue().splitlines() == [
        "  compare            ok         0.0 s  keep the champion (not promoted)",
        "  deploy             skipped        -  condition 'promote' was false"]


def test_key_figures_from_the_outputs_components_write():
    # The metadata each component's wrapper writes (components/*/component.py), as kfp.local returns it.
    ingest = {"metrics": _artifact(dsl.Metrics, train_rows=14021.0, eval_rows=1993.0, test_rows=3986.0),
              "ingest_info": _artifact(dsl.Artifact, task="binary")}
    assert key_figure("ingest", ingest) == "rows train 14,021 / eval 1,993 / test 3,986"
    assert key_figure("validate", {"metrics": _artifact(dsl.Metrics, anomalies=1.0, blocking_anomalies=0.0,
                                                        drift_share_psi=0.0)}) == "1 anomaly (0 blocking)"
    train = {"model": _artifact(dsl.Model, epochs_run=8.0),
             "metrics": _artifact(dsl.Metrics, eval_auc=0.81366, train_auc=0.8153, epochs_run=8.0, eval_loss=0.47)}
    assert key_figure("train", train) == "8 epochs, eval auc 0.8137"
    regression = {"metrics": _artifact(dsl.Metrics, epochs_run=3.0, eval_rmse=12.5, eval_mae=9.0, eval_loss=1.0)}
    assert key_figure("train", regression) == "3 epochs, eval rmse 12.5000"
    # binary metrics hold a log loss too: the figure is the task's primary metric
    assert key_figure("evaluate", {"metrics": _artifact(dsl.Metrics, auc=0.7957, log_loss=0.48, rows=3986.0)}) \
        == "test auc 0.7957"
    assert key_figure("evaluate", {"metrics": _artifact(dsl.Metrics, log_loss=0.9, accuracy=0.6, classes=3.0)}) \
        == "test log_loss 0.9000"
    assert key_figure("compare", {"Output": True, "decision": _artifact(dsl.Artifact, promote=True)}) == "promote"
    assert key_figure("export", {"metrics": _artifact(dsl.Metrics, tflite_max_abs_diff=0.000222)}) \
        == "TFLite max |diff| 0.00022"
    deployed = {"deployment": _artifact(dsl.Artifact, version="3", alias="candidate", serving_dir="/s/m/3")}
    assert key_figure("deploy", deployed) == "registered v3 as candidate"
    assert key_figure("deploy", {"deployment": _artifact(dsl.Artifact, version="2", alias="champion")}) \
        == "v2 is champion"
    assert key_figure("train", {"metrics": "not an artifact"}) == "? epochs"  # odd outputs: no crash
    assert key_figure("unknown-step", ingest) == ""


def test_versions_are_read_without_importing_tensorflow():
    import sys

    had_tf = "tensorflow" in sys.modules
    versions = package_versions()
    assert set(versions) == {"kfp-tf-gate", "kfp", "tensorflow", "mlflow", "python"}
    assert versions["kfp"] == "2.17.0" and versions["python"].count(".") == 2
    assert ("tensorflow" in sys.modules) == had_tf


def test_the_summary_says_candidate_not_promoted_and_names_the_slowest_steps():
    from pipelines.local import build_summary, format_summary

    decision = {"promote": True, "challenger": {"auc": 0.81}, "champion": {"auc": 0.79}, "champion_version": "2",
                "reasons": []}
    s = build_summary("r", "/runs/r", decision, {"version": "3", "alias": "candidate", "serving_dir": "/s/m/3"},
                      None, None, {}, None)
    steps = [{"name": "ingest", "status": OK, "seconds": 2.3, "start": 0.0},
             {"name": "train", "status": OK, "seconds": 68.2, "start": 5.8},
             {"name": "evaluate", "status": OK, "seconds": 2.0, "start": 74.0},
             {"name": "export", "status": OK, "seconds": 30.5, "start": 76.0},
             {"name": "compare", "status": OK, "seconds": 11.5, "start": 76.1},
             {"name": "deploy", "status": SKIPPED, "seconds": None, "start": 90.0}]
    lines = format_summary({**s, "model_name": "m", "steps": steps, "wall_seconds": 95.1}).splitlines()
    assert lines[0] == "run r: registered m v3 as candidate (awaiting `approve`)"
    assert "PROMOTED" not in "\n".join(lines)
    assert "  slowest    train 68.2 s, export 30.5 s, compare 11.5 s, ingest 2.3 s  (5 steps ran); skipped: deploy" \
        in lines
    champion = build_summary("r", "/runs/r", decision, {"version": "3", "alias": "champion", "serving_dir": "/s"},
                             None, None, {}, None)
    assert format_summary({**champion, "model_name": "m"}).splitlines()[0] == "run r: PROMOTED -> m v3 (champion)"
    kept = build_summary("r", "/runs/r", {**decision, "promote": False}, None, None, None, {}, None)
    assert format_summary({**kept, "model_name": "m"}).splitlines()[0] == "run r: not promoted (v2 stays champion)"
