"""The monitor's policy: how bad a window is (severity), and whether it may start a run.

:func:`assess` turns drift share and AUC decay into a severity from configurable
:class:`Thresholds`; :func:`decide` applies the two guards that keep reruns and noisy windows
from starting runs: a **dedupe key** derived from the window's content (the same data never
starts a second run) and a **cooldown** (no second run for the same model within N hours unless
the severity rises). The history both read is a small state document (see
:mod:`components.monitor.state`), updated by :func:`record_trigger` only after a run was
started: a trigger that failed consumes neither.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from typing import Optional

from components._shared.errors import ConfigError

SEVERITIES = ("none", "low", "medium", "high")
STATE_VERSION = 1
FILE_STATE_KEEP = 200
COOLDOWN_HOURS = 24.0
MAX_RMSE_INCREASE = (
    10.0  # an RMSE 11 times its training value is no longer a threshold worth setting
)


# --------------------------------------------------------------------------- thresholds + severity


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a window counts as drifted or decayed, and how badly.

    Attributes:
        drift_share: Share of drifted features (0..1) from which the window is drifted (severity low).
        drift_share_critical: Share from which drift alone is severity medium.
        auc_decay: Drop of AUC below the AUC at training from which the model has decayed (medium).
        auc_decay_critical: Drop from which decay is severity high.
        min_rows: Fewest rows a window may have to be judged at all.
        macro_auc_decay: Multiclass: drop of the one-vs-rest macro AUC below its value at training
            from which the model has decayed (medium). Macro AUC, not accuracy or log loss: it
            ranks, so a shift of the class mix alone does not move it, and each class counts.
        macro_auc_decay_critical: Multiclass: drop from which decay is severity high.
        rmse_increase: Regression: relative rise of RMSE over its value at training (RMSE now /
            RMSE at training - 1) from which the model has decayed (medium).
        rmse_increase_critical: Regression: relative rise from which decay is severity high.
    """

    drift_share: float = 0.3
    drift_share_critical: float = 0.6
    auc_decay: float = 0.03
    auc_decay_critical: float = 0.08
    min_rows: int = 50
    macro_auc_decay: float = 0.03
    macro_auc_decay_critical: float = 0.08
    rmse_increase: float = 0.10
    rmse_increase_critical: float = 0.25

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
        if not (isinstance(self.macro_auc_decay, (int, float)) and 0 < self.macro_auc_decay < 1):
            bad("macro_auc_decay", self.macro_auc_decay, "in (0, 1)")
        if not (
            isinstance(self.macro_auc_decay_critical, (int, float))
            and self.macro_auc_decay <= self.macro_auc_decay_critical < 1
        ):
            bad(
                "macro_auc_decay_critical",
                self.macro_auc_decay_critical,
                f"in [{self.macro_auc_decay}, 1)",
            )
        if not (
            isinstance(self.rmse_increase, (int, float))
            and 0 < self.rmse_increase <= MAX_RMSE_INCREASE
        ):
            bad("rmse_increase", self.rmse_increase, f"in (0, {MAX_RMSE_INCREASE}]")
        if not (
            isinstance(self.rmse_increase_critical, (int, float))
            and self.rmse_increase <= self.rmse_increase_critical <= MAX_RMSE_INCREASE
        ):
            bad(
                "rmse_increase_critical",
                self.rmse_increase_critical,
                f"in [{self.rmse_increase}, {MAX_RMSE_INCREASE}]",
            )

    def decay_rule(self, task: str) -> tuple:
        """(metric, how its decay reads, threshold, critical threshold) of a task name."""
        if task == "multiclass":
            return (
                "macro AUC",
                "macro AUC fell by",
                self.macro_auc_decay,
                self.macro_auc_decay_critical,
            )
        if task == "regression":
            return (
                "RMSE",
                "RMSE rose (relative to training) by",
                self.rmse_increase,
                self.rmse_increase_critical,
            )
        return "AUC", "AUC fell by", self.auc_decay, self.auc_decay_critical


@dataclasses.dataclass
class Assessment:
    severity: str
    reasons: list

    @property
    def crossed(self) -> bool:
        return self.severity != "none"


def severity_level(severity: Optional[str]) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def assess(
    drift_share: Optional[float], auc_decay: Optional[float], t: Thresholds, task: str = "binary"
) -> Assessment:
    """Severity of a window: none < low (drift) < medium (critical drift, or decay) < high.

    High means the model measurably lost its task's primary metric beyond the critical threshold
    (binary AUC, multiclass macro AUC, regression relative RMSE rise: :meth:`Thresholds.decay_rule`),
    or the data drifted *and* the model decayed: the data moved and it hurts.
    """
    metric, what, decay_t, decay_critical = t.decay_rule(task)
    level, reasons = 0, []
    drifted = drift_share is not None and drift_share >= t.drift_share
    decayed = auc_decay is not None and auc_decay >= decay_t
    if drifted:
        critical = drift_share >= t.drift_share_critical
        level = 2 if critical else 1
        reasons.append(
            f"{drift_share:.0%} of features drifted (threshold {t.drift_share:.0%}"
            + (f", critical {t.drift_share_critical:.0%})" if critical else ")")
        )
    if decayed:
        critical = auc_decay >= decay_critical
        level = max(level, 3 if critical else 2)
        reasons.append(
            f"{what} {auc_decay:.4f} since training (threshold {decay_t:.4f}"
            + (f", critical {decay_critical:.4f})" if critical else ")")
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
            f"{metric} decay not measured"
            if auc_decay is None
            else f"{metric} decay {auc_decay:.4f} below {decay_t:.4f}"
        )
        reasons.append("; ".join(parts))
    return Assessment(SEVERITIES[level], reasons)


# --------------------------------------------------------------------------- dedupe + cooldown


def window_hash(df) -> str:
    """Content hash of a window (same rows, same hash, whichever file or table it came from)."""
    from components._shared.io import content_hash

    return content_hash(df)


def dedupe_key(model_name: str, content_hash: str) -> str:
    """The key under which a window may start at most one retraining run of a model."""
    return hashlib.sha256(f"{model_name}\0{content_hash}".encode()).hexdigest()[:24]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


def parse_time(value: str) -> datetime.datetime:
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
        until = parse_time(last["at"]) + datetime.timedelta(hours=cooldown_hours)
        if now < until:
            if severity_level(assessment.severity) <= severity_level(last.get("severity")):
                reasons.append(
                    f"cooldown: run {last.get('run_id')} started at {last['at']} with severity "
                    f"{last.get('severity')}; no new run before {iso(until)} unless the severity rises"
                )
                return Decision("skip", assessment.severity, reasons, key, iso(until))
            reasons.append(
                f"severity rose from {last.get('severity')} to {assessment.severity} during the cooldown"
            )
    return Decision("trigger", assessment.severity, reasons, key)


def record_trigger(
    state: dict, decision: Decision, run: dict, now: datetime.datetime, keep: int = FILE_STATE_KEEP
) -> dict:
    """The state after a run was started (or found already started) for ``decision``."""
    entry = {
        "at": iso(now),
        "severity": decision.severity,
        "dedupe_key": decision.dedupe_key,
        "run_id": run.get("run_id"),
        "run_name": run.get("run_name"),
        "target": run.get("target"),
    }
    triggers = [t for t in state.get("triggers", []) if t.get("dedupe_key") != decision.dedupe_key]
    triggers = (triggers + [entry])[-keep:]
    return {"version": STATE_VERSION, "last_trigger": entry, "triggers": triggers}


def component_defaults() -> dict:
    """The monitor wrapper's tuning parameters as the monitoring pipeline passes them by default.

    The wrapper declares no defaults of its own (a lightweight component ships only its source, so
    they would be a second copy): these values come from :class:`Thresholds` and the launch modules.
    """
    from components._shared.launch.kfp import DEFAULT_EXPERIMENT
    from components._shared.launch.package import TRAINING_PIPELINE
    from components._shared.launch.vertex import DEFAULT_LOCATION

    t = Thresholds()
    return {
        "drift_share_threshold": t.drift_share,
        "drift_share_critical": t.drift_share_critical,
        "auc_decay_threshold": t.auc_decay,
        "auc_decay_critical": t.auc_decay_critical,
        "macro_auc_decay_threshold": t.macro_auc_decay,
        "macro_auc_decay_critical": t.macro_auc_decay_critical,
        "rmse_increase_threshold": t.rmse_increase,
        "rmse_increase_critical": t.rmse_increase_critical,
        "min_rows": t.min_rows,
        "cooldown_hours": COOLDOWN_HOURS,
        "training_pipeline": TRAINING_PIPELINE,
        "kfp_experiment": DEFAULT_EXPERIMENT,
        "vertex_location": DEFAULT_LOCATION,
    }
