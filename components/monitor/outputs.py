"""What a check leaves behind besides its JSON summary: Prometheus metrics and an HTML page.

- :func:`write_metrics` writes the summary as Prometheus gauges in the text exposition format
  (``prometheus_client``; atomically, for a node-exporter textfile collector, or to push to a
  Pushgateway with ``curl --data-binary @file``);
- :func:`report_html` renders ``templates/report.html.j2`` (jinja2, autoescaped): the decision,
  the trigger, drift per feature, data quality and decay of the task's metric, for a person.
"""

from __future__ import annotations

import math
import os
from typing import Optional

from components._shared.text import plain
from components.monitor.policy import parse_time, severity_level

METRIC_PREFIX = "kfp_tf_gate_monitor"
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


# --------------------------------------------------------------------------- prometheus


def _gauges(summary: dict) -> list:
    """(name, help, [(labels, value), ...]) of every gauge, before leaving out missing values."""
    drift = summary.get("drift") or {}
    perf = summary.get("performance") or {}
    trigger = summary.get("trigger") or {}
    feats = sorted((drift.get("features") or {}).items())
    return [
        ("drift_share", "Share of features whose evidently drift test failed.",
         [({}, drift.get("share"))]),
        ("drift_share_threshold", "Drift share from which the window counts as drifted.",
         [({}, (summary.get("thresholds") or {}).get("drift_share"))]),
        ("feature_drift_score", "Per-feature drift score (method in the label: p-value or distance).",
         [({"feature": f, "method": v["method"]}, v["score"]) for f, v in feats]),
        ("feature_drifted", "1 when the feature's drift test failed.",
         [({"feature": f}, int(v["drifted"])) for f, v in feats]),
        ("feature_psi", "Population stability index of the feature over the whole window.",
         [({"feature": f}, v) for f, v in sorted((drift.get("psi") or {}).items())]),
        ("auc", "AUC of the champion on the labelled window rows.",
         [({"window": "current"}, perf.get("auc")),
          ({"window": "training"}, perf.get("auc_at_training"))]),
        ("auc_decay", "AUC at training minus AUC on the window.", [({}, perf.get("decay") if _is(perf, "auc") else None)]),
        ("macro_auc", "Multiclass: one-vs-rest macro AUC of the champion on the labelled window rows.",
         [({"window": "current"}, perf.get("macro_auc")),
          ({"window": "training"}, perf.get("macro_auc_at_training"))]),
        ("macro_auc_decay", "Multiclass: macro AUC at training minus macro AUC on the window.",
         [({}, perf.get("decay") if _is(perf, "macro_auc") else None)]),
        ("accuracy", "Multiclass: accuracy of the champion on the labelled window rows.",
         [({"window": "current"}, perf.get("accuracy")),
          ({"window": "training"}, perf.get("accuracy_at_training"))]),
        ("rmse", "Regression: RMSE of the champion on the labelled window rows (label units).",
         [({"window": "current"}, perf.get("rmse")),
          ({"window": "training"}, perf.get("rmse_at_training"))]),
        ("rmse_ratio", "Regression: RMSE on the window divided by RMSE at training.",
         [({}, perf.get("rmse_ratio"))]),
        ("rmse_increase", "Regression: RMSE on the window / RMSE at training - 1 (relative rise).",
         [({}, perf.get("decay") if _is(perf, "rmse") else None)]),
        ("window_rows", "Rows in the window.", [({}, summary.get("rows"))]),
        ("severity", "0 none, 1 low (drift), 2 medium (critical drift or decay), 3 high.",
         [({}, severity_level(summary.get("severity")))]),
        ("triggered", "1 when this check started a retraining run.",
         [({}, int(trigger.get("status") == "started"))]),
        ("trigger_failed", "1 when starting the retraining run failed.",
         [({}, int(trigger.get("status") == "failed"))]),
        ("last_check_timestamp_seconds", "When the check ran (Unix time).",
         [({}, parse_time(summary["generated_at"]).timestamp())]),
    ]  # fmt: skip


def _is(perf: dict, metric: str) -> bool:
    """Whether the decay was measured on ``metric`` (summaries without one are binary: AUC)."""
    return (perf.get("metric") or "auc") == metric


def metrics_registry(summary: dict):
    """A ``CollectorRegistry`` with the summary's gauges, each labelled with the model.

    A gauge whose values are all missing or not finite (no labels, no decay measured) is left
    out, as is each missing sample.
    """
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry(auto_describe=True)
    for name, help_text, samples in _gauges(summary):
        samples = [(lb, v) for lb, v in samples if v is not None and math.isfinite(float(v))]
        if not samples:
            continue
        labelnames = ["model", *samples[0][0]]
        gauge = Gauge(f"{METRIC_PREFIX}_{name}", help_text, labelnames, registry=registry)
        for labels, value in samples:
            gauge.labels(model=summary["model_name"], **labels).set(float(value))
    return registry


def prometheus_text(summary: dict) -> str:
    """The summary in the Prometheus text exposition format."""
    from prometheus_client import generate_latest

    return generate_latest(metrics_registry(summary)).decode()


def write_metrics(summary: dict, path: str) -> None:
    """Write the metrics file atomically: a collector never reads half a file."""
    from prometheus_client import write_to_textfile

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_to_textfile(path, metrics_registry(summary))


# --------------------------------------------------------------------------- HTML report


def _num(v, fmt: str = "{:.4f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _performance_line(perf: dict) -> str:
    """One sentence of the decay of the task's metric (binary: AUC, as before)."""
    rows = f"on {perf.get('rows')} labelled rows"
    if _is(perf, "macro_auc"):
        return (
            f"Macro AUC now {_num(perf.get('macro_auc'))} {rows}, at training "
            f"{_num(perf.get('macro_auc_at_training'))}, decay {_num(perf.get('decay'))}; accuracy now "
            f"{_num(perf.get('accuracy'))}, at training {_num(perf.get('accuracy_at_training'))}"
        )
    if _is(perf, "rmse"):
        return (
            f"RMSE now {_num(perf.get('rmse'), '{:.4g}')} {rows}, at training "
            f"{_num(perf.get('rmse_at_training'), '{:.4g}')}, ratio {_num(perf.get('rmse_ratio'), '{:.3f}')} "
            f"(rise {_num(perf.get('decay'), '{:+.1%}')}); MAE now {_num(perf.get('mae'), '{:.4g}')}, "
            f"at training {_num(perf.get('mae_at_training'), '{:.4g}')}"
        )
    return (
        f"AUC now {_num(perf.get('auc'))} {rows}, at training "
        f"{_num(perf.get('auc_at_training'))}, decay {_num(perf.get('decay'))}"
    )


_ACTIONS = {  # trigger status -> what happened, for a person
    "none": "no retraining needed",
    "skipped": "retraining skipped (this window already started a run, or the cooldown holds)",
    "dry-run": "dry run: a retraining run would start",
    "not-configured": "retraining needed, but no trigger is configured",
    "started": "retraining run started",
    "exists": "a retraining run for this window already exists",
    "failed": "starting the retraining run failed",
}


def headline(summary: dict) -> str:
    """The page's title line: what the check found and what it did, in words ("no drift or
    decay; no retraining needed"), never a bare "severity none, none"."""
    severity = summary.get("severity") or "none"
    measured = (summary.get("performance") or {}).get("status") == "ok"
    if severity == "none":
        found = "no drift or decay" if measured else "no drift (performance not measured: no labels)"
    else:
        found = f"{severity} severity"
    status = (summary.get("trigger") or {}).get("status", "none")
    return f"{found}; {_ACTIONS.get(status, status)}"


def _value(v) -> str:
    """A trigger value as text: yes/no, n/a, numbers, lists joined (never JSON)."""
    return plain(dict(sorted(v.items())) if isinstance(v, dict) else v)


def _rows(d: dict) -> list:
    """(name, text, nested rows) per key: a dict value becomes a nested table."""
    return [(k, "", _rows(v)) if isinstance(v, dict) else (k, _value(v), []) for k, v in sorted(d.items())]


def report_context(summary: dict, drift_report_name: Optional[str] = None) -> dict:
    """The template's values, formatted (the template only lays them out)."""
    drift = summary.get("drift") or {}
    perf = summary.get("performance") or {}
    trigger = summary.get("trigger") or {}
    psi, missing = drift.get("psi") or {}, drift.get("missing_share") or {}
    features = []
    for name, f in sorted(
        (drift.get("features") or {}).items(), key=lambda kv: (not kv[1]["drifted"], kv[0])
    ):
        cells = [
            name,
            "drifted" if f["drifted"] else "ok",
            f["method"],
            f"{f['score']:.4g}",
            f"{f['threshold']:.4g}",
            _num(psi.get(name), "{:.3f}"),
            _num(missing.get(name), "{:.1%}"),
        ]
        features.append({"drifted": f["drifted"], "cells": cells})
    performance = (
        _performance_line(perf)
        if perf.get("status") == "ok"
        else f"not measured: {perf.get('reason', 'n/a')}"
    )
    performance = " ".join([performance, *(f"Warning: {w}" for w in perf.get("warnings") or [])])
    return {
        "model": summary["model_name"],
        "severity": summary["severity"],
        "status": trigger.get("status", "none"),
        "current": str(summary["current"]),
        "rows": summary["rows"],
        "reference": summary["reference"],
        "drift_share": _num(drift.get("share"), "{:.0%}"),
        "drift_threshold": _num((summary.get("thresholds") or {}).get("drift_share"), "{:.0%}"),
        "dedupe_key": summary["dedupe_key"],
        "reasons": (summary.get("decision") or {}).get("reasons", []),
        "headline": headline(summary),
        "trigger": _rows(trigger),
        "performance": performance,
        "drift_report": drift_report_name,
        "features": features,
        "anomalies": (summary.get("quality") or {}).get("anomalies", []),
    }


def report_html(summary: dict, drift_report_name: Optional[str] = None) -> str:
    """A small self-contained page: decision, trigger, drift per feature, data quality, decay."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2").render(report_context(summary, drift_report_name))
