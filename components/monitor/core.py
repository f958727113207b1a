"""Monitor: compare a window of production data with the champion's training reference.

What it measures, over the champion's feature columns:

- **drift**: evidently's per-feature drift tests on a sample of each side and the share of
  drifted features; the population stability index of each feature over the whole window
  against the schema's bins, as a second, sampling-free opinion;
- **data quality**: the window checked against the champion's schema (missing-rate jumps,
  out-of-range values, unseen categories) plus evidently's dataset summary;
- **performance decay**, when the window carries the label: the champion's AUC on the
  window against its AUC at training time (``reports/evaluation.json`` of the version).

What it decides (:func:`assess`, :func:`decide`): a severity from configurable thresholds,
then whether to start a retraining run. Two guards keep reruns and noisy windows from
starting runs: a **dedupe key** derived from the window's content (the same data never
starts a second run) and a **cooldown** (no second run for the same model within N hours
unless the severity rises). Both live in a small state document (:class:`FileStateStore`,
or the registered model's tags with :class:`RegistryStateStore`), which is written only
after a run was started: a trigger that failed consumes neither.

Everything here is plain Python over DataFrames and paths; starting runs is the job of a
``launcher`` callable passed in (see ``pipelines/triggers.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import html
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from typing import Optional

from components._shared import io
from components._shared.errors import ConfigError, DataError, PipelineError, TriggerError

logger = logging.getLogger(__name__)

SEVERITIES = ("none", "low", "medium", "high")
STATE_VERSION = 1
STATE_TAG = "kfp_tf_gate.monitor_state"
FILE_STATE_KEEP = 200
REGISTRY_STATE_KEEP = 20  # registry tag values are short (a few thousand characters)
DRIFT_SAMPLE_ROWS = 20_000
METRIC_PREFIX = "kfp_tf_gate_monitor"


# --------------------------------------------------------------------------- thresholds


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a window counts as drifted or decayed, and how badly.

    Attributes:
        drift_share: Share of drifted features (0..1) from which the window is drifted (severity low).
        drift_share_critical: Share from which drift alone is severity medium.
        auc_decay: Drop of AUC below the AUC at training from which the model has decayed (medium).
        auc_decay_critical: Drop from which decay is severity high.
        min_rows: Fewest rows a window may have to be judged at all.
    """

    drift_share: float = 0.3
    drift_share_critical: float = 0.6
    auc_decay: float = 0.03
    auc_decay_critical: float = 0.08
    min_rows: int = 50

    def __post_init__(self):
        def bad(name, value, rule):
            raise ConfigError(f"the threshold {name} must be {rule}, got {value!r}")

        if not (isinstance(self.drift_share, (int, float)) and 0 < self.drift_share <= 1):
            bad("drift_share", self.drift_share, "in (0, 1]")
        if not (
            isinstance(self.drift_share_critical, (int, float))
            and self.drift_share <= self.drift_share_critical <= 1
        ):
            bad("drift_share_critical", self.drift_share_critical, f"in [{self.drift_share}, 1]")
        if not (isinstance(self.auc_decay, (int, float)) and 0 < self.auc_decay < 1):
            bad("auc_decay", self.auc_decay, "in (0, 1)")
        if not (
            isinstance(self.auc_decay_critical, (int, float))
            and self.auc_decay <= self.auc_decay_critical < 1
        ):
            bad("auc_decay_critical", self.auc_decay_critical, f"in [{self.auc_decay}, 1)")
        if not (isinstance(self.min_rows, int) and self.min_rows >= 1):
            bad("min_rows", self.min_rows, "a positive integer")


@dataclasses.dataclass
class Assessment:
    severity: str
    reasons: list

    @property
    def crossed(self) -> bool:
        return self.severity != "none"


def severity_level(severity: Optional[str]) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def assess(drift_share: Optional[float], auc_decay: Optional[float], t: Thresholds) -> Assessment:
    """Severity of a window: none < low (drift) < medium (critical drift, or decay) < high.

    High means the model measurably lost AUC beyond the critical threshold, or the data
    drifted *and* the model decayed: the data moved and it hurts.
    """
    level, reasons = 0, []
    drifted = drift_share is not None and drift_share >= t.drift_share
    decayed = auc_decay is not None and auc_decay >= t.auc_decay
    if drifted:
        critical = drift_share >= t.drift_share_critical
        level = 2 if critical else 1
        reasons.append(
            f"{drift_share:.0%} of features drifted (threshold {t.drift_share:.0%}"
            + (f", critical {t.drift_share_critical:.0%})" if critical else ")")
        )
    if decayed:
        critical = auc_decay >= t.auc_decay_critical
        level = max(level, 3 if critical else 2)
        reasons.append(
            f"AUC fell by {auc_decay:.4f} since training (threshold {t.auc_decay:.4f}"
            + (f", critical {t.auc_decay_critical:.4f})" if critical else ")")
        )
    if drifted and decayed:
        level = 3
    if not reasons:
        parts = [
            "drift share "
            + ("n/a" if drift_share is None else f"{drift_share:.0%}")
            + f" below {t.drift_share:.0%}"
        ]
        parts.append(
            "AUC decay not measured"
            if auc_decay is None
            else f"AUC decay {auc_decay:.4f} below {t.auc_decay:.4f}"
        )
        reasons.append("; ".join(parts))
    return Assessment(SEVERITIES[level], reasons)


# --------------------------------------------------------------------------- dedupe + cooldown


def window_hash(df) -> str:
    """Content hash of a window (same rows, same hash, whichever file or table it came from)."""
    from components.ingest.core import content_hash

    return content_hash(df)


def dedupe_key(model_name: str, content_hash: str) -> str:
    """The key under which a window may start at most one retraining run of a model."""
    return hashlib.sha256(f"{model_name}\0{content_hash}".encode()).hexdigest()[:24]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


def _parse_time(value: str) -> datetime.datetime:
    t = datetime.datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


@dataclasses.dataclass
class Decision:
    """Whether this window starts a run: ``trigger``, ``skip`` (dedupe/cooldown) or ``none``."""

    action: str
    severity: str
    reasons: list
    dedupe_key: str
    cooldown_until: Optional[str] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def decide(
    assessment: Assessment, state: dict, key: str, now: datetime.datetime, cooldown_hours: float
) -> Decision:
    """Apply dedupe and cooldown to an assessment, given the model's trigger history."""
    if cooldown_hours < 0:
        raise ConfigError(f"cooldown_hours must be >= 0, got {cooldown_hours}")
    reasons = list(assessment.reasons)
    if not assessment.crossed:
        return Decision("none", assessment.severity, reasons, key)
    for entry in state.get("triggers", []):
        if entry.get("dedupe_key") == key:
            reasons.append(
                f"this window already started run {entry.get('run_id')} ({entry.get('target')}, "
                f"{entry.get('at')}): not starting a duplicate"
            )
            return Decision("skip", assessment.severity, reasons, key)
    last = state.get("last_trigger")
    if last:
        until = _parse_time(last["at"]) + datetime.timedelta(hours=cooldown_hours)
        if now < until:
            if severity_level(assessment.severity) <= severity_level(last.get("severity")):
                reasons.append(
                    f"cooldown: run {last.get('run_id')} started at {last['at']} with severity "
                    f"{last.get('severity')}; no new run before {_iso(until)} unless the severity rises"
                )
                return Decision("skip", assessment.severity, reasons, key, _iso(until))
            reasons.append(
                f"severity rose from {last.get('severity')} to {assessment.severity} during the cooldown"
            )
    return Decision("trigger", assessment.severity, reasons, key)


def record_trigger(
    state: dict, decision: Decision, run: dict, now: datetime.datetime, keep: int = FILE_STATE_KEEP
) -> dict:
    """The state after a run was started (or found already started) for ``decision``."""
    entry = {
        "at": _iso(now),
        "severity": decision.severity,
        "dedupe_key": decision.dedupe_key,
        "run_id": run.get("run_id"),
        "run_name": run.get("run_name"),
        "target": run.get("target"),
    }
    triggers = [t for t in state.get("triggers", []) if t.get("dedupe_key") != decision.dedupe_key]
    triggers = (triggers + [entry])[-keep:]
    return {"version": STATE_VERSION, "last_trigger": entry, "triggers": triggers}


class FileStateStore:
    """Trigger history of each model in one JSON file, updated under an exclusive file lock."""

    keep = FILE_STATE_KEEP

    def __init__(self, path: str, model_name: str):
        self.path = os.path.abspath(path)
        self.model_name = model_name

    def describe(self) -> str:
        return f"file {self.path}"

    @contextlib.contextmanager
    def locked(self):
        """Hold the lock across load -> trigger -> save, so two monitors cannot both trigger."""
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _read_all(self) -> dict:
        if not os.path.exists(self.path):
            return {"version": STATE_VERSION, "models": {}}
        try:
            doc = io.read_json(self.path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"the monitor state file {self.path} is unreadable ({exc}); fix or remove it"
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
            raise ConfigError(f"the monitor state file {self.path} is not a monitor state document")
        return doc

    def load(self) -> dict:
        return dict(self._read_all()["models"].get(self.model_name) or {})

    def save(self, state: dict) -> None:
        doc = self._read_all()
        doc["models"][self.model_name] = state
        io.write_json(doc, self.path)


class RegistryStateStore:
    """Trigger history as a tag of the registered model (for monitors without a disk, in a cluster).

    There is no lock: two monitors racing on the same window can both trigger; the server-side
    check of the run name (Kubeflow) or job id (Vertex) still catches the second one.
    """

    keep = REGISTRY_STATE_KEEP

    def __init__(self, tracking_uri: str, model_name: str):
        self.tracking_uri = tracking_uri
        self.model_name = model_name

    def describe(self) -> str:
        return f"tag {STATE_TAG} of registered model {self.model_name}"

    @contextlib.contextmanager
    def locked(self):
        yield self

    def _client(self):
        from components._shared import registry

        return registry.configure(self.tracking_uri)

    def load(self) -> dict:
        from mlflow.exceptions import MlflowException

        try:
            model = self._client().get_registered_model(self.model_name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return {}
            # Reading no history would allow duplicate runs: fail instead.
            raise ConfigError(f"cannot read the monitor state of {self.model_name}: {exc}") from exc
        raw = (model.tags or {}).get(STATE_TAG)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            logger.warning("ignoring an unreadable %s tag on %s", STATE_TAG, self.model_name)
            return {}

    def save(self, state: dict) -> None:
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        self._client().set_registered_model_tag(self.model_name, STATE_TAG, text)


# --------------------------------------------------------------------------- reference (the champion)


@dataclasses.dataclass
class Reference:
    """What the window is compared with: a schema, a data sample, and (for decay) the model."""

    schema: dict
    data: object  # DataFrame
    source: str
    model_name: str
    version: Optional[str] = None
    auc_at_training: Optional[float] = None
    fetch_model: Optional[Callable[[str], str]] = dataclasses.field(default=None, repr=False)


def _sqlite_missing(tracking_uri: str) -> Optional[str]:
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri[len("sqlite:///") :]
        if path and path != ":memory:" and not os.path.exists(path):
            return path
    return None


def load_champion(tracking_uri: str, model_name: str):
    """(client, ModelRef) of the champion, or None; registry problems raise one sentence."""
    from components._shared import registry

    missing = _sqlite_missing(tracking_uri)
    if missing:
        return None
    try:
        client = registry.configure(tracking_uri)
        ref = registry.get_alias(client, model_name, registry.CHAMPION)
    except PipelineError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read the model registry at {tracking_uri}: {first}") from exc
    return (client, ref) if ref is not None else None


def resolve_reference(
    model_name: str,
    tracking_uri: str,
    workdir: str,
    reference_uri: Optional[str] = None,
    schema_uri: Optional[str] = None,
    label: Optional[str] = None,
) -> Reference:
    """The champion's schema and reference sample from the registry, or a given table.

    Args:
        reference_uri: A table to compare with instead of the champion's reference sample.
        schema_uri: A schema JSON to use instead of the champion's (or an inferred one).
        label: Label column when the schema has to be inferred from ``reference_uri``.

    Raises:
        DataError: No champion and no reference given, or the champion lacks its data artifacts.
    """
    from components._shared import registry
    from components.validate.core import infer_schema

    champ = load_champion(tracking_uri, model_name) if tracking_uri else None
    schema = None
    if schema_uri:
        try:
            schema = io.read_json(schema_uri)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the schema {schema_uri}: {exc}") from exc
    version = auc = fetch = None
    if champ is not None:
        client, ref = champ
        version = ref.version

        def fetch(dest: str, _client=client, _ref=ref) -> str:
            try:
                return registry.download(_client, _ref, dest, "model")
            except Exception as exc:
                raise DataError(
                    f"cannot download the model of {model_name} v{_ref.version}: {exc}"
                ) from exc

        try:
            reports = registry.download(client, ref, os.path.join(workdir, "reports"), "reports")
            auc = io.read_json(os.path.join(reports, "evaluation.json"))["metrics"]["auc"]
        except Exception as exc:  # an older version without reports: decay cannot be measured
            logger.warning("no training AUC for %s v%s: %s", model_name, ref.version, exc)
            auc = None
    if reference_uri:
        data = io.read_table(reference_uri)
        if len(data) == 0:
            raise DataError(f"the reference {reference_uri} has no rows")
        if schema is None and champ is not None:
            schema = _champion_data(champ, model_name, workdir)[0]
        if schema is None:
            schema = infer_schema(data, label or "", None)
        source = f"table {reference_uri}"
    else:
        if champ is None:
            raise DataError(
                f"model {model_name!r} has no champion in the registry at {tracking_uri or '(none)'}; "
                "train one first (python -m pipelines run) or pass --reference"
            )
        champ_schema, data = _champion_data(champ, model_name, workdir)
        schema = schema or champ_schema
        source = f"champion {model_name} v{version}"
    return Reference(
        schema=schema,
        data=data,
        source=source,
        model_name=model_name,
        version=version,
        auc_at_training=None if auc is None else float(auc),
        fetch_model=fetch,
    )


def _champion_data(champ, model_name: str, workdir: str):
    from components._shared import registry

    client, ref = champ
    try:
        local = registry.download(client, ref, os.path.join(workdir, "data"), "data")
    except Exception as exc:
        raise DataError(
            f"cannot download the data artifacts of {model_name} v{ref.version}: {exc}"
        ) from exc
    schema_path = os.path.join(local, "schema.json")
    sample_path = os.path.join(local, "reference.parquet")
    for path in (schema_path, sample_path):
        if not os.path.exists(path):
            raise DataError(
                f"{model_name} v{ref.version} has no data/{os.path.basename(path)} in the registry; "
                "pass --reference (and --schema) to compare with another table"
            )
    return io.read_json(schema_path), io.read_parquet(sample_path)


# --------------------------------------------------------------------------- window checks


def read_window(uri: str):
    """Read the window (CSV/Parquet/folder/gs:///bq://); an empty window is an error."""
    df = io.read_table(uri)
    if len(df) == 0:
        raise DataError(f"the window {uri} has no rows; there is nothing to compare")
    return df


def check_window(df, schema: dict, uri: str, min_rows: int) -> list:
    """Quality anomalies of the window; raises when it cannot be compared at all.

    Raises:
        DataError: Too few rows, a feature column of the schema missing, or a column whose
            type changed (text in a numeric column): the window has a different schema.
    """
    from components.validate.core import check_against_schema, feature_names

    features = feature_names(schema)
    missing = [f for f in features if f not in df.columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise DataError(
            f"the window {uri} does not match the champion's schema: it lacks the feature column"
            f"{'s' if len(missing) > 1 else ''} {shown} (it has {', '.join(map(str, list(df.columns)[:12]))})"
        )
    if len(df) < min_rows:
        raise DataError(
            f"the window {uri} has {len(df)} rows, fewer than the minimum {min_rows} to judge drift"
        )
    anomalies = check_against_schema(df, schema, "window", 1, 0.1, 0.01, 0.01)
    changed = [a for a in anomalies if a.kind == "type_change"]
    if changed:
        raise DataError(
            f"the window {uri} does not match the champion's schema: "
            + "; ".join(a.message.removeprefix("window: ") for a in changed)
        )
    label = schema.get("label")
    return [
        dataclasses.asdict(a)
        for a in anomalies
        if not (a.kind == "missing_column" and a.column == label)
    ]


def feature_view(df, schema: dict, features: list):
    """The features as the model sees them: floats (timestamps in days) and strings."""
    import numpy as np
    import pandas as pd

    from components.validate.core import NUMERIC_KINDS, column_values

    out = {}
    for name in features:
        kind = schema["columns"][name]["kind"]
        values = column_values(df[name], kind)
        if kind in NUMERIC_KINDS:
            out[name] = np.asarray(values, dtype=np.float64)
        else:
            out[name] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out, index=range(len(df)))


# --------------------------------------------------------------------------- drift + quality (evidently)


def _sample(df, rows: int, seed: int):
    return df.sample(rows, random_state=seed).reset_index(drop=True) if len(df) > rows else df


def evidently_report(
    reference, current, drift_share: float, html_path: Optional[str], seed: int = 0
) -> dict:
    """evidently drift tests (per feature, drift share) and data-quality counts, one HTML report.

    The quality part is the dataset-level metrics the monitor reports (rows, duplicated and
    empty rows, constant columns, missing values per column), not the whole
    ``DataSummaryPreset``: that one draws a distribution per column again, which the drift
    preset already shows, and doubles the run time.

    Args:
        reference: Reference features (see :func:`feature_view`).
        current: Window features, same columns.
        drift_share: The monitor's drift-share threshold, shown in evidently's report too.
    """
    import warnings

    from evidently import Report
    from evidently import metrics as m
    from evidently.presets import DataDriftPreset

    ref = _sample(reference, DRIFT_SAMPLE_ROWS, seed)
    cur = _sample(current, DRIFT_SAMPLE_ROWS, seed)
    quality = [
        m.RowCount(),
        m.DuplicatedRowCount(),
        m.EmptyRowsCount(),
        m.ConstantColumnsCount(),
        m.AlmostConstantColumnsCount(),
        m.EmptyColumnsCount(),
        m.DatasetMissingValueCount(),
    ]
    quality += [m.MissingValueCount(column=c) for c in current.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset(drift_share=drift_share), *quality]).run(
            current_data=cur, reference_data=ref
        )
    drift = parse_evidently(snapshot.dict())
    drift["sample_rows"] = [len(ref), len(cur)]
    if html_path:
        os.makedirs(os.path.dirname(os.path.abspath(html_path)), exist_ok=True)
        snapshot.save_html(html_path)
    return drift


def parse_evidently(snapshot: dict) -> dict:
    """Drift share, per-feature drift and summary counts from an evidently 0.7 snapshot dict."""
    features, missing, summary = {}, {}, {}
    share = None
    for m in snapshot.get("metrics", []):
        cfg = m.get("config", {})
        kind = cfg.get("type", "").rsplit(":", 1)[-1]
        value = m.get("value")
        if kind == "DriftedColumnsCount":
            share = float(value["share"])
        elif kind == "ValueDrift":
            method = cfg.get("method", "")
            score = float(value)
            threshold = float(cfg.get("threshold", 0.05))
            drifted = score < threshold if "p_value" in method else score >= threshold
            features[cfg["column"]] = {
                "method": method,
                "score": score,
                "threshold": threshold,
                "drifted": drifted,
            }
        elif kind == "MissingValueCount" and isinstance(value, dict):
            missing[cfg["column"]] = float(value["share"])
        elif kind in (
            "RowCount",
            "DuplicatedRowCount",
            "EmptyRowsCount",
            "ConstantColumnsCount",
            "AlmostConstantColumnsCount",
            "EmptyColumnsCount",
        ) and not isinstance(value, dict):
            summary[re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()] = float(value)
        elif kind == "DatasetMissingValueCount" and isinstance(value, dict):
            summary["missing_value_share"] = float(value["share"])
    if share is None and features:
        share = sum(f["drifted"] for f in features.values()) / len(features)
    return {"share": share, "features": features, "missing_share": missing, "summary": summary}


# --------------------------------------------------------------------------- performance decay


def decay_metrics(y, p, auc_at_training: Optional[float]) -> dict:
    """AUC of the champion on the window and its drop since training (positive = worse)."""
    import numpy as np

    from components._shared.metrics import fast_auc, finite_or_none

    y = np.asarray(y)
    auc = finite_or_none(fast_auc(y, p))
    decay = None if auc is None or auc_at_training is None else float(auc_at_training) - auc
    return {
        "status": "ok",
        "auc": auc,
        "auc_at_training": auc_at_training,
        "decay": decay,
        "rows": int(len(y)),
        "positive_rate": float(y.mean()) if len(y) else None,
    }


def labelled_rows(df, schema: dict):
    """(rows with a label, 0/1 labels) of the window, or (None, reason) when decay cannot be measured."""
    from components.ingest.core import encode_label

    label = schema.get("label")
    if not label or label not in df.columns:
        return None, f"the window has no label column {label!r}"
    rows = df[df[label].notna()]
    if len(rows) == 0:
        return None, f"every value of the label column {label!r} is missing"
    if rows[label].nunique() < 2:
        return None, f"the label column {label!r} holds a single class; AUC needs both"
    y, _, _ = encode_label(rows[label], label, schema.get("positive_label"))
    return rows.reset_index(drop=True), y


def performance(df, reference: Reference, workdir: str) -> dict:
    """The champion's AUC on the labelled rows of the window (loads the model: TensorFlow)."""
    rows, y = labelled_rows(df, reference.schema)
    if rows is None:
        return {"status": "skipped", "reason": y}
    if reference.fetch_model is None:
        return {"status": "skipped", "reason": "no champion model to score the window with"}
    if reference.auc_at_training is None:
        return {
            "status": "skipped",
            "reason": f"{reference.source} has no training AUC (reports/evaluation.json)",
        }
    try:
        model_dir = reference.fetch_model(os.path.join(workdir, "model"))
    except DataError as exc:  # drift is still worth reporting; the report says why decay is missing
        logger.warning("%s", exc)
        return {"status": "skipped", "reason": str(exc)}
    from components.evaluate.core import score

    p = score(model_dir, rows)
    return decay_metrics(y, p, reference.auc_at_training)


# --------------------------------------------------------------------------- prometheus


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(summary: dict) -> str:
    """Prometheus text exposition format (node-exporter textfile collector, Pushgateway)."""
    model = summary["model_name"]
    lines: list = []

    def gauge(name: str, help_text: str, samples: list) -> None:
        samples = [
            (labels, v) for labels, v in samples if v is not None and math.isfinite(float(v))
        ]
        if not samples:
            return
        lines.append(f"# HELP {METRIC_PREFIX}_{name} {help_text}")
        lines.append(f"# TYPE {METRIC_PREFIX}_{name} gauge")
        for labels, v in samples:
            text = ",".join(f'{k}="{_label(val)}"' for k, val in {"model": model, **labels}.items())
            lines.append(f"{METRIC_PREFIX}_{name}{{{text}}} {float(v):.10g}")

    drift = summary.get("drift") or {}
    perf = summary.get("performance") or {}
    trigger = summary.get("trigger") or {}
    gauge(
        "drift_share",
        "Share of features whose evidently drift test failed.",
        [({}, drift.get("share"))],
    )
    gauge(
        "drift_share_threshold",
        "Drift share from which the window counts as drifted.",
        [({}, (summary.get("thresholds") or {}).get("drift_share"))],
    )
    feats = sorted((drift.get("features") or {}).items())
    gauge(
        "feature_drift_score",
        "Per-feature drift score (method in the label: p-value or distance).",
        [({"feature": f, "method": v["method"]}, v["score"]) for f, v in feats],
    )
    gauge(
        "feature_drifted",
        "1 when the feature's drift test failed.",
        [({"feature": f}, int(v["drifted"])) for f, v in feats],
    )
    gauge(
        "feature_psi",
        "Population stability index of the feature over the whole window.",
        [({"feature": f}, v) for f, v in sorted((drift.get("psi") or {}).items())],
    )
    gauge(
        "auc",
        "AUC of the champion on the labelled window rows.",
        [
            ({"window": "current"}, perf.get("auc")),
            ({"window": "training"}, perf.get("auc_at_training")),
        ],
    )
    gauge("auc_decay", "AUC at training minus AUC on the window.", [({}, perf.get("decay"))])
    gauge("window_rows", "Rows in the window.", [({}, summary.get("rows"))])
    gauge(
        "severity",
        "0 none, 1 low (drift), 2 medium (critical drift or decay), 3 high.",
        [({}, severity_level(summary.get("severity")))],
    )
    gauge(
        "triggered",
        "1 when this check started a retraining run.",
        [({}, int(trigger.get("status") == "started"))],
    )
    gauge(
        "trigger_failed",
        "1 when starting the retraining run failed.",
        [({}, int(trigger.get("status") == "failed"))],
    )
    gauge(
        "last_check_timestamp_seconds",
        "When the check ran (Unix time).",
        [({}, _parse_time(summary["generated_at"]).timestamp())],
    )
    return "\n".join(lines) + "\n"


def write_text_atomic(text: str, path: str) -> None:
    """Write via a temporary file in the same folder: a collector never reads half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- report


def report_html(summary: dict, drift_report_name: Optional[str] = None) -> str:
    """A small self-contained page: decision, drift per feature, data quality, decay."""
    e = html.escape
    drift = summary.get("drift") or {}
    perf = summary.get("performance") or {}
    trigger = summary.get("trigger") or {}

    def num(v, fmt="{:.4f}"):
        return "n/a" if v is None else fmt.format(v)

    rows = []
    for name, f in sorted(
        (drift.get("features") or {}).items(), key=lambda kv: (not kv[1]["drifted"], kv[0])
    ):
        psi = (drift.get("psi") or {}).get(name)
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{e(str(x))}</td>"
                for x in (
                    name,
                    "drifted" if f["drifted"] else "ok",
                    f["method"],
                    f"{f['score']:.4g}",
                    f"{f['threshold']:.4g}",
                    num(psi, "{:.3f}"),
                    num((drift.get("missing_share") or {}).get(name), "{:.1%}"),
                )
            )
            + "</tr>"
        )
    quality = (
        "".join(
            f"<li class='{e(a['severity'])}'>{e(a['message'])}</li>"
            for a in (summary.get("quality") or {}).get("anomalies", [])
        )
        or "<li>none</li>"
    )
    reasons = "".join(
        f"<li>{e(r)}</li>" for r in (summary.get("decision") or {}).get("reasons", [])
    )
    link = (
        f"<p>Full evidently report: <a href='{e(drift_report_name)}'>{e(drift_report_name)}</a></p>"
        if drift_report_name
        else ""
    )
    perf_text = (
        f"AUC now {num(perf.get('auc'))} on {perf.get('rows')} labelled rows, at training "
        f"{num(perf.get('auc_at_training'))}, decay {num(perf.get('decay'))}"
        if perf.get("status") == "ok"
        else f"not measured: {perf.get('reason', 'n/a')}"
    )
    status = trigger.get("status", "none")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Monitor: {e(summary["model_name"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
.warning{{color:#a60}}.blocking{{color:#b00}}</style></head><body>
<h1>Monitor {e(summary["model_name"])}: severity {e(summary["severity"])}, {e(status)}</h1>
<p>Window {e(str(summary["current"]))} ({summary["rows"]} rows) against {e(summary["reference"])}.
Drift share {num(drift.get("share"), "{:.0%}")} (threshold {num((summary.get("thresholds") or {}).get("drift_share"), "{:.0%}")}).
Dedupe key {e(summary["dedupe_key"])}.</p>
<h2>Decision</h2><ul>{reasons}</ul>
<p>Trigger: {e(json.dumps(trigger, sort_keys=True, default=str))}</p>
<h2>Performance</h2><p>{e(perf_text)}</p>
<h2>Drift per feature</h2>{link}
<table><tr><th>feature</th><th>drift</th><th>method</th><th>score</th><th>threshold</th><th>PSI</th><th>missing</th></tr>
{"".join(rows)}</table>
<h2>Data quality</h2><ul>{quality}</ul>
</body></html>"""


# --------------------------------------------------------------------------- the whole check


@dataclasses.dataclass
class Outputs:
    """Where a check writes: the summary JSON, the HTML pages, optional Prometheus metrics."""

    summary_json: str
    report_html: str
    drift_html: str
    metrics_file: Optional[str] = None


def measure(
    current,
    current_uri: str,
    reference: Reference,
    thresholds: Thresholds,
    drift_html: Optional[str],
    workdir: str,
) -> dict:
    """Drift, quality and decay of a window (no decision yet)."""
    from components.validate.core import feature_names, population_stability

    quality = check_window(current, reference.schema, current_uri, thresholds.min_rows)
    features = feature_names(reference.schema)
    missing_ref = [f for f in features if f not in reference.data.columns]
    if missing_ref:
        raise DataError(
            f"the reference ({reference.source}) lacks the feature column(s) {missing_ref}"
        )
    drift = evidently_report(
        feature_view(reference.data, reference.schema, features),
        feature_view(current, reference.schema, features),
        thresholds.drift_share,
        drift_html,
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
    assessment = assess(
        measured["drift"]["share"], measured["performance"].get("decay"), thresholds
    )
    summary = {
        "model_name": reference.model_name,
        "champion_version": reference.version,
        "reference": reference.source,
        "current": current_uri,
        "dedupe_key": key,
        "thresholds": dataclasses.asdict(thresholds),
        "cooldown_hours": cooldown_hours,
        "severity": assessment.severity,
        "generated_at": _iso(now),
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
    with open(outputs.report_html, "w") as fh:
        drift_name = os.path.basename(outputs.drift_html) if outputs.drift_html else None
        same_dir = outputs.drift_html and os.path.dirname(
            os.path.abspath(outputs.drift_html)
        ) == os.path.dirname(os.path.abspath(outputs.report_html))
        fh.write(report_html(summary, drift_name if same_dir else None))
    if outputs.metrics_file:
        write_text_atomic(prometheus_text(summary), outputs.metrics_file)
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
