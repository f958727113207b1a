"""Validate: infer this run's schema, enforce the reference's, measure drift; the gate's verdict.

:func:`validate` orchestrates: the schema comes from :mod:`components._shared.schema`, the
anomaly checks from :mod:`components._shared.anomalies`, the drift gate (population stability
index over every row, per feature) from :mod:`components._shared.drift`, the HTML page from
:mod:`components.validate.report`. evidently's drift tests run on a sample, for the report only,
in their own pipeline step (``components/validate/evidently_drift.py``): importing evidently
alone takes over 3 s, which would otherwise sit on the path to training.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from components._shared.anomalies import (
    DEFAULT_SEVERITY,
    Anomaly,
    check_against_schema,
    check_corrupted_types,
    check_new_schema,
)
from components._shared.drift import PSI_DRIFT, population_stability, psi_drift
from components._shared.errors import ValidationError
from components._shared.schema import (
    FEATURE_KINDS,
    NUMERIC_KINDS,
    categorical_stats,
    column_values,
    feature_names,
    infer_schema,
    numeric_stats,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ValidationResult:
    schema: dict
    anomalies: list
    drift: dict
    status: str  # "ok" | "warnings"

    @property
    def blocking(self) -> list:
        return [a for a in self.anomalies if a.severity == "blocking"]



def _keep_roles(schema: dict, reference: dict, train) -> None:
    """Apply a reference schema's roles to a freshly inferred one: its exclusions stay excluded,
    and its features stay features even when they look constant (or id-like) in this data,
    unless excluded by configuration."""
    for name, entry in reference["columns"].items():
        new = schema["columns"].get(name)
        if new is None or new.get("role") == "label":
            continue
        if entry.get("role") == "excluded":
            new["role"] = "excluded"
            new["reason"] = entry.get("reason") or "excluded in the reference schema"
        elif (entry.get("role") == "feature" and new.get("role") == "excluded"
              and new.get("reason") != "excluded by configuration" and new.get("kind") != entry["kind"]
              and new.get("kind") in ("constant", "id", "text") and entry["kind"] in FEATURE_KINDS):
            kind = entry["kind"]
            values = column_values(train[name], kind)
            new.update(kind=kind, role="feature", reason=None,
                       **(numeric_stats(values) if kind in NUMERIC_KINDS else categorical_stats(values)))



def validate(
    train,
    others: dict,
    label: str,
    positive_label: Optional[str] = None,
    reference_schema: Optional[dict] = None,
    user_schema: Optional[dict] = None,
    id_column: Optional[str] = None,
    id_detected: bool = False,
    exclude: Optional[list] = None,
    severity: Optional[dict] = None,
    min_rows: int = 50,
    max_missing_jump: float = 0.1,
    max_unseen_share: float = 0.01,
    max_out_of_range_share: float = 0.01,
    psi_drift_share: float = 0.5,
    psi_threshold: float = PSI_DRIFT,
    report_html: Optional[str] = None,
    task: Optional[str] = None,
) -> ValidationResult:
    """Infer this run's schema, check every split, measure drift.

    Args:
        train: Training split (DataFrame, label encoded 0/1).
        others: Other splits by name (``{"eval": df, "test": df}``).
        reference_schema: The champion's (or a user's) schema to enforce; None on a first run.
            It also fixes the feature set and the bins of the drift gate.
        user_schema: A user's schema enforced as well (its anomalies name "schema file").
        id_column: The identifier column (excluded from features); ``id_detected``: ingest found
            it rather than the user naming it (the schema says which).
        severity: Overrides of :data:`DEFAULT_SEVERITY` by anomaly kind.
        psi_drift_share: A drift anomaly is raised when more than this share of features has a
            population stability index above ``psi_threshold`` (computed on every row,
            vectorised). Not evidently's drift share (the monitor's threshold).
        psi_threshold: PSI above which a feature counts as drifted.
        task: The task ingest decided (binary when None); recorded in the schema, and the label's
            domain is checked for it (see :func:`label_anomalies`).

    Returns:
        The result; raise on blocking anomalies is the caller's choice (see :func:`raise_if_blocking`).
    """
    sev = dict(DEFAULT_SEVERITY)
    for kind, level in (severity or {}).items():
        if kind not in DEFAULT_SEVERITY or level not in ("blocking", "warning"):
            raise ValidationError(f"invalid severity override {kind!r}: {level!r} (kinds: {sorted(DEFAULT_SEVERITY)})")
        sev[kind] = level

    schema = infer_schema(train, label, positive_label, id_column=id_column, exclude=exclude, id_detected=id_detected)
    anomalies = check_corrupted_types(train, schema, "train")
    if reference_schema is not None:
        ref_pos = reference_schema.get("positive_label")
        if ref_pos is not None and positive_label is not None and str(ref_pos) != str(positive_label):
            anomalies.append(Anomaly(
                "label_domain", label,
                f"the positive label is {positive_label!r} but the reference schema's is {ref_pos!r}"))
        # Keep the reference's feature set, so the challenger's serving signature takes the same
        # inputs as the champion's.
        _keep_roles(schema, reference_schema, train)
        if user_schema is not None:
            _keep_roles(schema, user_schema, train)
        # A column the champion did not have becomes a feature only when a schema file lists it:
        # a new model input would break every client that sends the champion's inputs.
        listed = (user_schema or {}).get("columns", {})
        for name, new in schema["columns"].items():
            if name in reference_schema["columns"] or new.get("role") == "label":
                continue
            if new.get("role") == "feature" and listed.get(name, {}).get("role") == "feature":
                anomalies.append(Anomaly("extra_column", name, f"train: column {name!r} is not in the champion's "
                                         "schema; a new feature, as the schema file lists it"))
                continue
            if new.get("role") == "feature":
                new["role"] = "excluded"
                new["reason"] = "not in the champion's schema (list it in a schema file to add it as a feature)"
            anomalies.append(Anomaly("extra_column", name, f"train: column {name!r} is not in the champion's schema; "
                                     "excluded from features, so the model takes the champion's inputs"))
        anomalies += check_against_schema(train, reference_schema, "train", min_rows, max_missing_jump,
                                          max_unseen_share, max_out_of_range_share)
    else:
        if user_schema is not None:
            _keep_roles(schema, user_schema, train)
        if len(train) < min_rows:
            anomalies.append(Anomaly("too_few_rows", None, f"train: {len(train)} rows, fewer than the minimum {min_rows}"))
    # The roles are final here (a reference or a schema file may have kept a column a feature):
    # what is reported as excluded is what is excluded.
    # (A column not in the champion's schema has its own sentence above.)
    extra = {a.column for a in anomalies if a.kind == "extra_column"}
    anomalies = [a for a in check_new_schema(schema) if a.column not in extra] + anomalies
    if not feature_names(schema):
        anomalies.append(Anomaly("too_few_rows", None, "no usable feature columns remain after feature selection", "blocking"))
    for split, df in others.items():
        anomalies += check_against_schema(df, reference_schema or schema, split, 1, max_missing_jump,
                                          max_unseen_share if reference_schema else 1.0,
                                          max_out_of_range_share if reference_schema else 1.0)
    if user_schema is not None:
        for split, df in {"train": train, **others}.items():
            anomalies += check_against_schema(df, user_schema, f"{split} (schema file)", 1, max_missing_jump,
                                              max_unseen_share, max_out_of_range_share)
    base = reference_schema or schema
    current = train if reference_schema else others.get("test", train)
    psi = population_stability(current, base)
    gate = psi_drift(psi, psi_threshold)
    drift: dict = {"psi": psi, "psi_drift": gate,
                   "reference": "champion schema" if reference_schema else "train split"}
    if gate["share"] > psi_drift_share:
        anomalies.append(Anomaly(
            "drift", None,
            f"{gate['share']:.0%} of features drifted from the {drift['reference']} (PSI > {psi_threshold}; "
            f"allowed share {psi_drift_share:.0%}): " + ", ".join(gate["drifted"][:10])))
    anomalies += label_anomalies(train, others, label, task)
    if task and task != "binary":  # binary schemas stay as they were (no "task" = binary)
        schema["task"] = task
    for a in anomalies:
        a.severity = sev.get(a.kind, a.severity)
    result = ValidationResult(schema=schema, anomalies=anomalies, drift=drift,
                              status="warnings" if anomalies else "ok")
    if report_html:
        from components.validate.report import write_report_html

        write_report_html(result, report_html)
    return result


def label_anomalies(train, others: dict, label: str, task: Optional[str]) -> list:
    """The label's domain per task: a multiclass class seen in eval/test but not in train is a
    ``label_domain`` anomaly (blocking by default: the model cannot predict it, and its metrics
    would be wrong); a regression label must be finite (``label_domain``) and a heavy tail is a
    ``label_tail`` warning."""
    import numpy as np
    import pandas as pd

    from components._shared.task import MULTICLASS, REGRESSION, class_keys, heavy_tail_warning

    out = []
    if label not in train.columns:
        return out
    if task == MULTICLASS:
        known = set(class_keys(train[label]).dropna())
        for split, df in others.items():
            if label not in df.columns:
                continue
            keys = class_keys(df[label]).dropna()
            unseen = keys[~keys.isin(known)]
            if len(unseen):
                shown = ", ".join(repr(v) for v in sorted(set(unseen))[:5])
                out.append(Anomaly("label_domain", label, f"{split}: {len(unseen)} row(s) of label class(es) {shown} "
                                   f"that the train split does not have (the model cannot predict them)"))
    elif task == REGRESSION:
        for split, df in {"train": train, **others}.items():
            if label not in df.columns:
                continue
            values = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64)
            bad = int((~np.isfinite(values)).sum())
            if bad:
                out.append(Anomaly("label_domain", label, f"{split}: {bad} regression label value(s) are not finite"))
        tail = heavy_tail_warning(pd.to_numeric(train[label], errors="coerce").dropna().to_numpy(), label)
        if tail:
            out.append(Anomaly("label_tail", label, f"train: {tail}", "warning"))
    return out


def raise_if_blocking(result: ValidationResult) -> None:
    blocking = result.blocking
    if blocking:
        raise ValidationError(
            f"validation found {len(blocking)} blocking anomal{'y' if len(blocking) == 1 else 'ies'}: "
            + "; ".join(a.message for a in blocking))


def result_to_json(result: ValidationResult) -> dict:
    return {
        "status": "failed" if result.blocking else result.status,
        "anomalies": [dataclasses.asdict(a) for a in result.anomalies],
        "drift": result.drift,
        "features": feature_names(result.schema),
    }
