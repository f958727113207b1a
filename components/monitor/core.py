"""Monitor: compare a window of production data with the champion's training reference.

What it measures, over the champion's feature columns:

- **drift**: evidently's per-feature drift tests on a sample of each side and the share of
  drifted features; the population stability index of each feature over the whole window
  against the schema's bins, as a second, sampling-free opinion;
- **data quality**: the window checked against the champion's schema (missing-rate jumps,
  out-of-range values, unseen categories) plus evidently's dataset summary;
- **performance decay**, when the window carries the label: the champion's primary metric on
  the window against its value at training time (``reports/evaluation.json`` of the version):
  AUC (binary), macro AUC (multiclass), RMSE relative to training (regression); see
  :mod:`.performance`.

:func:`monitor` is the one entry: ``python -m pipelines monitor`` and the ``monitor_data``
component both call it. It resolves the reference, builds the launcher, reads the window and
hands them to :func:`run_monitor`, which measures, decides (:mod:`.policy`), starts a run when
warranted and writes the summary, the report and the metrics (:mod:`.outputs`). The other
modules each hold one part: :mod:`.reference`, :mod:`.window`, :mod:`.performance`, :mod:`.state`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Optional

from components._shared import io
from components._shared.errors import ConfigError, DataError, TriggerError
from components._shared.task import task_of
from components.monitor.outputs import report_html, write_metrics
from components.monitor.performance import performance
from components.monitor.policy import (
    COOLDOWN_HOURS,
    Decision,
    Thresholds,
    assess,
    decide,
    dedupe_key,
    iso,
    record_trigger,
    severity_level,
    utcnow,
    window_hash,
)
from components.monitor.reference import Reference, resolve_reference
from components.monitor.state import state_store
from components.monitor.window import check_window, feature_view, read_window

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Outputs:
    """Where a check writes: the summary JSON, the HTML pages, optional Prometheus metrics."""

    summary_json: str
    report_html: str
    drift_html: str
    metrics_file: Optional[str] = None


def _data_uri(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def monitor(
    current_uri: str,
    model_name: str,
    tracking_uri: str,
    outputs: Outputs,
    thresholds: Optional[Thresholds] = None,
    *,
    reference_uri: Optional[str] = None,
    schema_uri: Optional[str] = None,
    label: Optional[str] = None,
    trigger: str = "none",
    dry_run: bool = False,
    cooldown_hours: float = COOLDOWN_HOURS,
    state: Optional[str] = None,
    train_data_uri: Optional[str] = None,
    user_params: Optional[dict] = None,
    kfp=None,
    vertex=None,
    local: Optional[Callable] = None,
) -> dict:
    """Check a window against the champion; start a retraining run when it matters.

    Settings are checked before any data is read; the reference is resolved before the window
    is read, so a missing champion fails first.

    Args:
        current_uri: The window: CSV/Parquet file or folder, gs://..., bq://project.dataset.table.
        model_name: Registered model whose champion is the reference.
        tracking_uri: MLflow tracking/registry URI ("" for none: then ``reference_uri`` is needed).
        outputs: Where the summary, the reports and the metrics go.
        reference_uri, schema_uri, label: See :func:`.reference.resolve_reference`.
        trigger: none, local, kfp or vertex (see :mod:`components._shared.launch.launcher`).
        dry_run: Decide and report, but start nothing and change no state.
        cooldown_hours: No second run for the model within this time unless the severity rises.
        state: Dedupe/cooldown state: "registry" (a tag of the registered model), a JSON file
            path, or None (no state: then nothing can be triggered).
        train_data_uri: Data the retraining run trains on; None for the window itself (which
            then needs labels).
        user_params: Further training-pipeline parameters.
        kfp, vertex: ``KfpSettings`` / ``VertexSettings`` of the kfp and vertex triggers.
        local: Builds the launcher of ``trigger="local"`` (the CLI passes one; a component cannot).

    Returns:
        The summary (also written to ``outputs.summary_json``); see :func:`run_monitor`.
    """
    from components._shared.launch.launcher import check_target, monitor_launcher
    from components._shared.names import check_model_name

    check_model_name(model_name)  # first: it names the report, the state entry and any run started
    thresholds = thresholds or Thresholds()
    user_params = dict(user_params or {})
    check_target(trigger, local)
    if cooldown_hours < 0:
        raise ConfigError(f"cooldown_hours must be >= 0, got {cooldown_hours}")
    with tempfile.TemporaryDirectory(prefix="monitor-reference-") as workdir:
        reference = resolve_reference(
            model_name, tracking_uri, workdir, reference_uri, schema_uri, label
        )
    data_uri = _data_uri(train_data_uri or current_uri)
    launcher = monitor_launcher(
        trigger, model_name, data_uri, reference.schema, tracking_uri, user_params,
        kfp=kfp, vertex=vertex, local=local,
    )  # fmt: skip
    if trigger in ("kfp", "vertex") and "://" not in data_uri and "data_uri" not in user_params:
        logger.warning(
            "the retraining run will read the local path %s: the cluster must see it at that path "
            "(train on gs://... or bq://... data)",
            data_uri,
        )
    current = read_window(current_uri)
    label_column = reference.schema.get("label")
    if (
        launcher is not None
        and not train_data_uri
        and "data_uri" not in user_params
        and label_column
        and label_column not in current.columns
    ):
        raise ConfigError(
            f"the window {current_uri} has no label column {label_column!r}, so a retraining run "
            "cannot train on it: pass labelled training data (--train-data, or train_data_uri)"
        )
    return run_monitor(
        current_uri,
        reference,
        outputs,
        thresholds,
        state_store=state_store(state, tracking_uri, model_name),
        launcher=launcher,
        target=trigger,
        dry_run=dry_run,
        cooldown_hours=cooldown_hours,
        current=current,
    )


def measure(
    current,
    current_uri: str,
    reference: Reference,
    thresholds: Thresholds,
    drift_html: Optional[str],
    workdir: str,
) -> dict:
    """Drift, quality and decay of a window (no decision yet)."""
    from components._shared.drift import population_stability, run_evidently
    from components._shared.schema import feature_names

    quality = check_window(current, reference.schema, current_uri, thresholds.min_rows)
    features = feature_names(reference.schema)
    missing_ref = [f for f in features if f not in reference.data.columns]
    if missing_ref:
        raise DataError(
            f"the reference ({reference.source}) lacks the feature column(s) {missing_ref}"
        )
    drift = run_evidently(
        feature_view(reference.data, reference.schema, features),
        feature_view(current, reference.schema, features),
        html_path=drift_html,
        drift_share=thresholds.drift_share,
        quality=True,
    )
    drift["psi"] = population_stability(current, reference.schema)
    drift["threshold"] = thresholds.drift_share
    evidently_summary = drift.pop("summary", {})
    return {
        "rows": int(len(current)),
        "drift": drift,
        "quality": {"anomalies": quality, "evidently": evidently_summary},
        "performance": performance(current, reference, workdir),
    }


def run_monitor(
    current_uri: str,
    reference: Reference,
    outputs: Outputs,
    thresholds: Thresholds,
    state_store=None,
    launcher: Optional[Callable[[Decision], dict]] = None,
    target: str = "none",
    dry_run: bool = False,
    cooldown_hours: float = 24.0,
    now: Optional[datetime.datetime] = None,
    current=None,
) -> dict:
    """Measure a window, decide, start a run when warranted, write the report, JSON and metrics.

    Args:
        reference: From :func:`resolve_reference`.
        state_store: Where dedupe/cooldown history lives (needed when ``launcher`` is given).
        launcher: ``launcher(decision) -> run info dict`` starts the retraining run and raises
            ``TriggerError`` when it cannot; ``run["status"] == "exists"`` means the target
            already had this run (the state then records it without a new run).
        target: Name of the launcher's target, for the report ("kfp", "vertex", "local", "none").
        dry_run: Decide and report, but start nothing and change no state.
        current: The window as a DataFrame, when the caller has read it already.

    Returns:
        The summary (also written to ``outputs.summary_json``).

    Raises:
        DataError: The window or reference cannot be compared (nothing is written).
        TriggerError: Starting the run failed; the report, JSON and metrics record the
            failure, the state does not change (the cooldown is not consumed).
    """
    now = now or utcnow()
    if launcher is not None and state_store is None:
        raise ConfigError("a trigger needs a state store for dedupe and cooldown")
    current = read_window(current_uri) if current is None else current
    with tempfile.TemporaryDirectory(
        prefix="monitor-"
    ) as workdir:  # the champion's model, if scored
        measured = measure(current, current_uri, reference, thresholds, outputs.drift_html, workdir)
    key = dedupe_key(reference.model_name, window_hash(current))
    task = measured["performance"].get("task") or task_of(reference.schema).name
    assessment = assess(
        measured["drift"]["share"], measured["performance"].get("decay"), thresholds, task
    )
    summary = {
        "model_name": reference.model_name,
        "task": task,
        "champion_version": reference.version,
        "reference": reference.source,
        "current": current_uri,
        "dedupe_key": key,
        "thresholds": dataclasses.asdict(thresholds),
        "cooldown_hours": cooldown_hours,
        "severity": assessment.severity,
        "generated_at": iso(now),
        "dry_run": bool(dry_run),
        "report_html": outputs.report_html,
        "drift_html": outputs.drift_html,
        "metrics_file": outputs.metrics_file,
        **measured,
    }
    failure: Optional[TriggerError] = None
    store_ctx = state_store.locked() if state_store is not None else contextlib.nullcontext()
    with store_ctx:
        state = state_store.load() if state_store is not None else {}
        decision = decide(assessment, state, key, now, cooldown_hours)
        trigger: dict = {"target": target, "status": "none"}
        if decision.action == "trigger":
            if dry_run:
                trigger["status"] = "dry-run"
                decision.reasons.append(f"dry run: would start a retraining run on {target}")
            elif launcher is None:
                trigger["status"] = "not-configured"
                decision.reasons.append("no trigger configured (--trigger): reporting only")
            else:
                try:
                    run = launcher(decision)
                except TriggerError as exc:
                    failure = exc
                    trigger.update(status="failed", error=str(exc))
                else:
                    existed = run.get("status") == "exists"
                    trigger.update(run, status="exists" if existed else "started")
                    if existed:
                        decision.action = "skip"
                        decision.reasons.append(
                            f"{target} already has run {run.get('run_id')} for this window: "
                            "not starting a duplicate"
                        )
                    state_store.save(
                        record_trigger(state, decision, run, now, keep=state_store.keep)
                    )
        elif decision.action == "skip":
            trigger["status"] = "skipped"
        if state_store is not None:
            summary["state"] = state_store.describe()
    summary["decision"] = decision.to_dict()
    summary["trigger"] = trigger
    io.write_json(summary, outputs.summary_json)
    drift_name = os.path.basename(outputs.drift_html) if outputs.drift_html else None
    same_dir = outputs.drift_html and os.path.dirname(
        os.path.abspath(outputs.drift_html)
    ) == os.path.dirname(os.path.abspath(outputs.report_html))
    io.write_text_atomic(
        report_html(summary, drift_name if same_dir else None), outputs.report_html
    )
    if outputs.metrics_file:
        write_metrics(summary, outputs.metrics_file)
    logger.info(
        "monitor %s: severity %s, decision %s, trigger %s",
        reference.model_name,
        assessment.severity,
        decision.action,
        trigger["status"],
    )
    if failure is not None:
        raise failure
    return summary


def run_metrics(summary: dict) -> dict:
    """The numbers a KFP ``Metrics`` output shows of a check (missing ones left out)."""
    drift, perf = summary["drift"], summary["performance"]
    out = {}
    if drift.get("share") is not None:
        out["drift_share"] = drift["share"]
    metric = perf.get("metric") or "auc"
    decay_name = {"auc": "auc_decay", "macro_auc": "macro_auc_decay", "rmse": "rmse_increase"}[
        metric
    ]
    extra = {"macro_auc": ("accuracy", "accuracy_at_training"), "rmse": ("rmse_ratio", "mae")}.get(
        metric, ()
    )
    for key in (metric, f"{metric}_at_training", "decay", *extra):
        if perf.get(key) is not None:
            out[decay_name if key == "decay" else key] = perf[key]
    out["rows"] = summary["rows"]
    out["severity"] = severity_level(summary["severity"])
    out["triggered"] = int(summary["trigger"]["status"] == "started")
    return out


def run_metadata(summary: dict) -> dict:
    """The metadata of a check's summary artifact: severity, dedupe key, trigger, run, champion."""
    return {
        "severity": summary["severity"],
        "dedupe_key": summary["dedupe_key"],
        "trigger": summary["trigger"]["status"],
        "run_id": summary["trigger"].get("run_id") or "",
        "champion_version": summary["champion_version"] or "",
    }
