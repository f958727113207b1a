"""The monitor's decisions: severity, dedupe, cooldown, state, window checks, Prometheus text."""

from __future__ import annotations

import datetime
import json
import os
import re

import pytest

from components._shared.drift import parse_evidently
from components._shared.errors import ConfigError, DataError, TriggerError
from components._shared.io import write_text_atomic
from components.monitor.core import Outputs, run_monitor
from components.monitor.outputs import prometheus_text
from components.monitor.performance import decay_metrics, labelled_rows
from components.monitor.policy import (
    Assessment,
    Decision,
    Thresholds,
    assess,
    decide,
    dedupe_key,
    record_trigger,
    window_hash,
)
from components.monitor.reference import Reference
from components.monitor.state import (
    REGISTRY_STATE_KEEP,
    STATE_TAG,
    FileStateStore,
    RegistryStateStore,
)
from components.monitor.window import check_window, feature_view, read_window

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
T = Thresholds()


def hours(h: float) -> datetime.datetime:
    return NOW + datetime.timedelta(hours=h)


# --------------------------------------------------------------------------- thresholds + severity


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"drift_share": 0}, "drift_share"),
        ({"drift_share": 1.5}, "drift_share"),
        ({"drift_share": 0.5, "drift_share_critical": 0.4}, "drift_share_critical"),
        ({"auc_decay": -0.1}, "auc_decay"),
        ({"auc_decay": 0.05, "auc_decay_critical": 0.01}, "auc_decay_critical"),
        ({"min_rows": 0}, "min_rows"),
    ],
)
def test_bad_thresholds_name_the_threshold(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        Thresholds(**kwargs)


@pytest.mark.parametrize(
    "share,decay,severity",
    [
        (0.1, None, "none"),
        (0.1, 0.01, "none"),
        (0.3, None, "low"),
        (0.45, 0.0, "low"),
        (0.6, None, "medium"),
        (0.1, 0.03, "medium"),
        (0.1, 0.05, "medium"),
        (0.1, 0.08, "high"),
        (0.35, 0.04, "high"),  # drifted and decayed: the move hurts
        (None, None, "none"),
    ],
)
def test_severity_from_thresholds(share, decay, severity):
    a = assess(share, decay, T)
    assert a.severity == severity
    assert a.crossed == (severity != "none")
    assert a.reasons


def test_reasons_name_values_and_thresholds():
    a = assess(0.64, 0.05, T)
    text = " ".join(a.reasons)
    assert "64% of features drifted" in text and "critical 60%" in text
    assert "AUC fell by 0.0500" in text and "threshold 0.0300" in text


# --------------------------------------------------------------------------- dedupe + cooldown


def test_dedupe_key_is_deterministic_per_model_and_content():
    from pipelines.data import generate_churn

    a, b = generate_churn(300, seed=1), generate_churn(300, seed=2)
    ha = window_hash(a)
    assert ha == window_hash(a.copy())
    assert ha != window_hash(b)
    assert ha != window_hash(a.iloc[:-1])
    assert dedupe_key("m", ha) == dedupe_key("m", ha)
    assert dedupe_key("m", ha) != dedupe_key("other", ha)
    assert re.fullmatch(r"[0-9a-f]{24}", dedupe_key("m", ha))


def _state_after(severity: str, key: str = "k1", at: datetime.datetime = NOW) -> dict:
    decision = Decision("trigger", severity, [], key)
    return record_trigger(
        {}, decision, {"run_id": "r1", "run_name": "retrain-m-k1", "target": "kfp"}, at
    )


def test_nothing_crossed_means_no_trigger():
    d = decide(Assessment("none", ["fine"]), _state_after("high"), "k2", hours(1), 24)
    assert d.action == "none"


def test_first_crossing_triggers():
    d = decide(assess(0.5, None, T), {}, "k1", NOW, 24)
    assert (d.action, d.severity, d.dedupe_key) == ("trigger", "low", "k1")


def test_same_window_never_triggers_twice_even_after_the_cooldown():
    state = _state_after("low", key="k1")
    for when in (hours(1), hours(24 * 30)):
        d = decide(assess(0.9, 0.2, T), state, "k1", when, 24)
        assert d.action == "skip"
        assert "already started run r1" in d.reasons[-1]


def test_cooldown_skips_same_or_lower_severity():
    state = _state_after("medium")
    for share in (0.7, 0.4):  # medium, low
        d = decide(assess(share, None, T), state, "k2", hours(5), 24)
        assert d.action == "skip"
        assert d.cooldown_until == hours(24).isoformat(timespec="seconds")
        assert "cooldown" in d.reasons[-1] and "unless the severity rises" in d.reasons[-1]


def test_rising_severity_breaks_the_cooldown():
    d = decide(assess(0.7, 0.1, T), _state_after("low"), "k2", hours(1), 24)
    assert d.action == "trigger" and d.severity == "high"
    assert "rose from low to high" in d.reasons[-1]


def test_cooldown_expires():
    state = _state_after("high")
    assert decide(assess(0.4, None, T), state, "k2", hours(23.9), 24).action == "skip"
    assert decide(assess(0.4, None, T), state, "k2", hours(24), 24).action == "trigger"
    assert decide(assess(0.4, None, T), state, "k2", hours(0.1), 0).action == "trigger"
    with pytest.raises(ConfigError, match="cooldown_hours"):
        decide(assess(0.4, None, T), state, "k2", NOW, -1)


def test_record_trigger_keeps_recent_keys_and_replaces_a_key():
    state = {}
    for i in range(5):
        state = record_trigger(
            state,
            Decision("trigger", "low", [], f"k{i}"),
            {"run_id": f"r{i}", "target": "kfp"},
            hours(i),
            keep=3,
        )
    assert [t["dedupe_key"] for t in state["triggers"]] == ["k2", "k3", "k4"]
    assert state["last_trigger"]["run_id"] == "r4"
    state = record_trigger(
        state, Decision("trigger", "high", [], "k3"), {"run_id": "again"}, hours(9), keep=3
    )
    assert [t["dedupe_key"] for t in state["triggers"]] == ["k2", "k4", "k3"]


# --------------------------------------------------------------------------- state stores


def test_file_state_round_trip_per_model(tmp_path):
    path = str(tmp_path / "state" / "monitor.json")
    a, b = FileStateStore(path, "a"), FileStateStore(path, "b")
    assert a.load() == {}
    with a.locked():
        a.save(_state_after("low", key="ka"))
    with b.locked():
        b.save(_state_after("high", key="kb"))
    assert a.load()["last_trigger"]["dedupe_key"] == "ka"
    assert b.load()["last_trigger"]["severity"] == "high"
    assert set(json.load(open(path))["models"]) == {"a", "b"}


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        FileStateStore(str(path), "m").load()


def test_registry_state_lives_in_a_model_tag(tmp_path, monkeypatch):
    from components._shared import registry
    from tests.fakes import champion_runs_dir

    tracking_uri = f"sqlite:///{champion_runs_dir(tmp_path / 'runs')}/mlflow.db"
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", tracking_uri
    )  # restored afterwards (MLflow exports it)
    client = registry.configure(tracking_uri)
    store = RegistryStateStore(tracking_uri, "churn-model")
    assert store.load() == {}
    state = _state_after("medium", key="abc")
    for i in range(30):  # more history than a tag should hold
        state = record_trigger(
            state,
            Decision("trigger", "low", [], f"k{i:02d}"),
            {"run_id": f"r{i}"},
            hours(i),
            keep=store.keep,
        )
    store.save(state)
    loaded = RegistryStateStore(tracking_uri, "churn-model").load()
    assert loaded == state and len(loaded["triggers"]) == REGISTRY_STATE_KEEP
    assert STATE_TAG in client.get_registered_model("churn-model").tags
    assert RegistryStateStore(tracking_uri, "no-such-model").load() == {}


# --------------------------------------------------------------------------- the window


@pytest.fixture(scope="module")
def champion():
    from tests.fakes import champion_frame

    raw, train, schema = champion_frame(1500, seed=11)
    return raw, train, schema


def test_window_without_rows_is_an_error(tmp_path, champion):
    raw = champion[0]
    path = tmp_path / "empty.csv"
    raw.iloc[:0].to_csv(path, index=False)
    with pytest.raises(DataError, match="has no rows"):
        read_window(str(path))


def test_window_with_a_different_schema_names_the_columns(champion):
    raw, _, schema = champion
    with pytest.raises(DataError, match=r"lacks the feature columns 'contract', 'region'"):
        check_window(raw.drop(columns=["contract", "region"]), schema, "w.csv", 50)
    bad = raw.copy()
    bad["monthly_charges"] = bad["monthly_charges"].astype(str).where(bad.index % 7 != 0, "n/a")
    with pytest.raises(DataError, match="'monthly_charges' should be numeric but holds text"):
        check_window(bad, schema, "w.csv", 50)
    with pytest.raises(DataError, match="fewer than the minimum 50"):
        check_window(raw.iloc[:10], schema, "w.csv", 50)


def test_window_quality_findings_ignore_a_missing_label(champion):
    raw, _, schema = champion
    window = raw.drop(columns=["churned"]).copy()
    window.loc[: len(window) // 2, "tenure_months"] = None
    findings = check_window(window, schema, "w.csv", 50)
    kinds = {(f["kind"], f["column"]) for f in findings}
    assert ("missing_rate_jump", "tenure_months") in kinds
    assert not any(f["column"] == "churned" for f in findings)


def test_feature_view_matches_the_model_view(champion):
    raw, _, schema = champion
    view = feature_view(raw, schema, ["signup_date", "contract", "senior_citizen"])
    assert view["signup_date"].dtype == "float64" and view["senior_citizen"].dtype == "float64"
    assert view["contract"].dtype == object


def test_labelled_rows(champion):
    raw, _, schema = champion
    rows, reason = labelled_rows(raw.drop(columns=["churned"]), schema)
    assert rows is None and "no label column 'churned'" in reason
    rows, reason = labelled_rows(raw.assign(churned="no"), schema)
    assert rows is None and "single class" in reason
    rows, y = labelled_rows(raw, schema)
    assert len(rows) == len(raw) and set(y) == {0, 1}
    assert y.mean() == pytest.approx((raw["churned"] == "yes").mean())


def test_decay_metrics():
    import numpy as np

    y = np.array([0, 0, 1, 1, 0, 1])
    m = decay_metrics(y, np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]), 0.85)
    assert m["auc"] == 1.0 and m["decay"] == pytest.approx(-0.15)
    m = decay_metrics(y, np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.3]), 0.85)
    assert m["auc"] == 0.0 and m["decay"] == pytest.approx(0.85)
    assert decay_metrics(y, y, None)["decay"] is None


def test_parse_evidently_snapshot():
    snap = {
        "metrics": [
            {
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 1.0, "share": 0.5},
            },
            {
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "a",
                    "method": "K-S p_value",
                    "threshold": 0.05,
                },
                "value": 0.01,
            },
            {
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "b",
                    "method": "Wasserstein distance (normed)",
                    "threshold": 0.1,
                },
                "value": 0.02,
            },
            {
                "config": {"type": "evidently:metric_v2:MissingValueCount", "column": "a"},
                "value": {"count": 3, "share": 0.03},
            },
            {"config": {"type": "evidently:metric_v2:RowCount"}, "value": 100.0},
        ]
    }
    out = parse_evidently(snap)
    assert out["share"] == 0.5
    assert out["features"]["a"]["drifted"] and not out["features"]["b"]["drifted"]
    assert out["missing_share"] == {"a": 0.03} and out["summary"] == {"row_count": 100.0}


# --------------------------------------------------------------------------- prometheus


SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? -?[0-9.e+-]+$'
)


def test_prometheus_text_format():
    summary = {
        "model_name": 'churn "model"\\x',
        "generated_at": NOW.isoformat(),
        "rows": 1000,
        "severity": "medium",
        "thresholds": {"drift_share": 0.3},
        "drift": {
            "share": 0.64,
            "features": {
                "a": {"method": "K-S p_value", "score": 0.01, "threshold": 0.05, "drifted": True}
            },
            "psi": {"a": 0.4, "b": float("nan")},
        },
        "performance": {"auc": 0.7, "auc_at_training": 0.8, "decay": 0.1},
        "trigger": {"status": "failed"},
    }
    text = prometheus_text(summary)
    assert text.endswith("\n")
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            assert line.endswith(" gauge")
            names.add(line.split()[2])
        elif not line.startswith("# HELP"):
            assert SAMPLE.match(line), line
    assert 'model="churn \\"model\\"\\\\x"' in text
    assert "kfp_tf_gate_monitor_drift_share{" in text and "} 0.64" in text
    assert 'kfp_tf_gate_monitor_auc{model="churn \\"model\\"\\\\x",window="training"} 0.8' in text
    assert (
        "kfp_tf_gate_monitor_trigger_failed{" in text and 'feature="b"' not in text
    )  # NaN is left out
    assert {
        "kfp_tf_gate_monitor_feature_drift_score",
        "kfp_tf_gate_monitor_severity",
        "kfp_tf_gate_monitor_triggered",
        "kfp_tf_gate_monitor_auc_decay",
    } <= names


def test_metrics_file_is_replaced_atomically(tmp_path):
    path = tmp_path / "textfile" / "monitor.prom"
    write_text_atomic("a 1\n", str(path))
    write_text_atomic("a 2\n", str(path))
    assert path.read_text() == "a 2\n"
    assert os.listdir(path.parent) == ["monitor.prom"]


# --------------------------------------------------------------------------- the whole check with a launcher


@pytest.fixture(scope="module")
def reference(champion):
    _, train, schema = champion
    return Reference(
        schema=schema,
        data=train,
        source="test champion",
        model_name="m",
        version="3",
        auc_at_training=0.8,
    )


def _outputs(tmp_path, name="out"):
    d = tmp_path / name
    d.mkdir()
    return Outputs(
        str(d / "summary.json"), str(d / "report.html"), str(d / "drift.html"), str(d / "m.prom")
    )


def test_run_monitor_records_only_a_started_run(tmp_path, reference):
    from tests.fakes import drifted_window

    window = drifted_window(400, seed=5).drop(columns=["churned"])
    path = tmp_path / "window.parquet"
    window.to_parquet(path)
    store = FileStateStore(str(tmp_path / "state.json"), "m")

    def failing(decision):
        raise TriggerError("cannot reach the pipelines API")

    with pytest.raises(TriggerError):
        run_monitor(
            str(path), reference, _outputs(tmp_path, "a"), T, store, failing, "kfp", now=NOW
        )
    assert store.load() == {}, "a failed trigger must not consume the cooldown"
    failed = json.load(open(tmp_path / "a" / "summary.json"))
    assert failed["trigger"]["status"] == "failed" and "cannot reach" in failed["trigger"]["error"]
    assert "kfp_tf_gate_monitor_trigger_failed{" in (tmp_path / "a" / "m.prom").read_text()

    # The same window once more: it was never started, so it starts now (no dedupe, no cooldown).
    current = read_window(str(path))
    s = run_monitor(
        str(path), reference, _outputs(tmp_path, "b"), T, store,
        lambda d: {"target": "kfp", "run_id": "run-1", "run_name": f"retrain-m-{d.dedupe_key[:12]}"},
        "kfp", now=hours(1), current=current,
    )  # fmt: skip
    assert s["severity"] == "medium" and s["trigger"]["status"] == "started"
    assert s["dedupe_key"] == failed["dedupe_key"]
    state = store.load()
    assert (
        state["last_trigger"]["run_id"] == "run-1" and state["last_trigger"]["severity"] == "medium"
    )
    assert s["champion_version"] == "3" and s["performance"]["status"] == "skipped"
    assert os.path.getsize(tmp_path / "b" / "drift.html") > 10_000  # evidently's report
    assert "drift.html" in (tmp_path / "b" / "report.html").read_text()
