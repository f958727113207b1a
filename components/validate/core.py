"""Validate: infer this run's schema, enforce the reference's, measure drift; the gate's verdict.

:func:`validate` orchestrates: the schema comes from :mod:`components._shared.schema`, the
anomaly checks from :mod:`components._shared.anomalies`, the drift gate (population stability
index over every row, per feature) from :mod:`components._shared.drift`, the HTML page from
:mod:`components.validate.report`. evidently's drift tests run on a sample, for the report only,
in their own pipeline step (``components/validate/evidently_drift.py``): importing evidently
alone takes over 3 s, which would otherwise sit on the path to training.

Every split is read batch by batch (a DataFrame, or a Parquet file or folder of shards; see
:func:`components._shared.schema.chunks`), and everything is counted as it streams: the train
split is read once for its profile and its checks against a reference schema, each other split
once for its checks and drift, so memory does not grow with rows.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from components._shared.anomalies import (
    DEFAULT_SEVERITY,
    Anomaly,
    SchemaCheck,
    check_new_schema,
    corrupted_types,
)
from components._shared.drift import PSI_DRIFT, PopulationStability, psi_drift
from components._shared.errors import ValidationError
from components._shared.schema import (
    FEATURE_KINDS,
    TableProfile,
    chunks,
    column_stats,
    feature_names,
    schema_from_profile,
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



def _keep_roles(schema: dict, reference: dict, train, profile: TableProfile) -> None:
    """Apply a reference schema's roles to a freshly inferred one: its exclusions stay excluded,
    and its features stay features even when they look constant (or id-like) in this data,
    unless excluded by configuration."""
    restat = {}
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
            new.update(kind=kind, role="feature", reason=None)
            col = profile.columns[name]
            stats = col.kind_stats(kind) if col.stats else None
            if stats is None:
                restat[name] = kind
            else:
                new.update(stats)
    for name, stats in column_stats(train, restat).items():  # one more pass, over these columns only
        schema["columns"][name].update(stats)


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
        train: Training split (label encoded 0/1): a DataFrame, or a Parquet file or folder of
            shards, read batch by batch (see :func:`components._shared.schema.chunks`).
        others: Other splits by name (``{"eval": df_or_path, "test": df_or_path}``).
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

    others = dict(others)
    train_checks = {}
    if reference_schema is not None:
        train_checks["reference"] = SchemaCheck(reference_schema, "train", min_rows, max_missing_jump,
                                                max_unseen_share, max_out_of_range_share)
    if user_schema is not None:
        train_checks["user"] = SchemaCheck(user_schema, "train (schema file)", 1, max_missing_jump,
                                           max_unseen_share, max_out_of_range_share)
    psi_acc = PopulationStability(reference_schema) if reference_schema is not None else None
    labels = {"train": LabelStats(label, task)}
    profile = TableProfile(label, skip=[id_column] if id_column else ())
    for df in chunks(train):  # one pass over the train split
        profile.update(df)
        for check in train_checks.values():
            check.update(df)
        if psi_acc is not None:
            psi_acc.update(df)
        labels["train"].update(df)
    schema = schema_from_profile(profile, train, label, positive_label, id_column, exclude, id_detected)
    samples = {name: col.text_sample() for name, col in profile.columns.items() if col.text is not None}
    anomalies = corrupted_types(samples, schema, "train")
    if reference_schema is not None:
        ref_pos = reference_schema.get("positive_label")
        if ref_pos is not None and positive_label is not None and str(ref_pos) != str(positive_label):
            anomalies.append(Anomaly(
                "label_domain", label,
                f"the positive label is {positive_label!r} but the reference schema's is {ref_pos!r}"))
        # Keep the reference's feature set, so the challenger's serving signature takes the same
        # inputs as the champion's.
        _keep_roles(schema, reference_schema, train, profile)
        if user_schema is not None:
            _keep_roles(schema, user_schema, train, profile)
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
        anomalies += train_checks["reference"].anomalies()
    else:
        if user_schema is not None:
            _keep_roles(schema, user_schema, train, profile)
        if profile.n < min_rows:
            anomalies.append(Anomaly("too_few_rows", None, f"train: {profile.n} rows, fewer than the minimum {min_rows}"))
    # The roles are final here (a reference or a schema file may have kept a column a feature):
    # what is reported as excluded is what is excluded.
    # (A column not in the champion's schema has its own sentence above.)
    extra = {a.column for a in anomalies if a.kind == "extra_column"}
    anomalies = [a for a in check_new_schema(schema) if a.column not in extra] + anomalies
    if not feature_names(schema):
        anomalies.append(Anomaly("too_few_rows", None, "no usable feature columns remain after feature selection", "blocking"))
    # Drift: this run's train split against the champion's schema, or on a first run this run's
    # test split against the schema just inferred.
    if psi_acc is None:
        psi_acc = PopulationStability(schema)
        if "test" not in others:
            for df in chunks(train):
                psi_acc.update(df)
    user_checks = []
    for split, data in others.items():  # one pass over each other split
        check = SchemaCheck(reference_schema or schema, split, 1, max_missing_jump,
                            max_unseen_share if reference_schema else 1.0,
                            max_out_of_range_share if reference_schema else 1.0)
        user = (SchemaCheck(user_schema, f"{split} (schema file)", 1, max_missing_jump, max_unseen_share,
                            max_out_of_range_share) if user_schema is not None else None)
        labels[split] = LabelStats(label, task)
        for df in chunks(data):
            check.update(df)
            if user is not None:
                user.update(df)
            if reference_schema is None and split == "test":
                psi_acc.update(df)
            labels[split].update(df)
        anomalies += check.anomalies()
        if user is not None:
            user_checks.append(user)
    if user_schema is not None:
        anomalies += train_checks["user"].anomalies()
        for user in user_checks:
            anomalies += user.anomalies()
    psi = psi_acc.result()
    gate = psi_drift(psi, psi_threshold)
    drift: dict = {"psi": psi, "psi_drift": gate,
                   "reference": "champion schema" if reference_schema else "train split"}
    if gate["share"] > psi_drift_share:
        anomalies.append(Anomaly(
            "drift", None,
            f"{gate['share']:.0%} of features drifted from the {drift['reference']} (PSI > {psi_threshold}; "
            f"allowed share {psi_drift_share:.0%}): " + ", ".join(gate["drifted"][:10])))
    anomalies += _label_anomalies(labels)
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


class LabelStats:
    """What :func:`label_anomalies` needs of one split's label, counted batch by batch: the
    multiclass keys and their row counts; the regression label's non-finite values, and power
    sums (shifted by the first batch's mean) and range of its finite values for the tail check."""

    def __init__(self, label: str, task: Optional[str]):
        from collections import Counter

        self.label, self.task = label, task
        self.present = None
        self.keys: Counter = Counter()
        self.bad, self.shift, self.sums = 0, None, [0.0] * 5
        self.lo, self.hi = float("inf"), float("-inf")

    def update(self, df) -> None:
        import numpy as np
        import pandas as pd

        from components._shared.task import MULTICLASS, REGRESSION, class_key

        if self.present is None:
            self.present = self.label in df.columns
        if not self.present:
            return
        if self.task == MULTICLASS:
            vc = df[self.label].value_counts(sort=False, dropna=True)
            for value, count in vc[vc > 0].items():
                self.keys[class_key(value)] += int(count)
        elif self.task == REGRESSION:
            values = pd.to_numeric(df[self.label], errors="coerce").to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            self.bad += len(values) - len(finite)
            if len(finite):
                if self.shift is None:
                    self.shift = float(finite.mean())
                d = finite - self.shift
                for k in range(5):
                    self.sums[k] += float((d ** k).sum())
                self.lo, self.hi = min(self.lo, float(finite.min())), max(self.hi, float(finite.max()))

    def tail(self) -> Optional[str]:
        """``heavy_tail_warning``'s sentence, from the power sums (excess kurtosis > 10 or a value
        more than 10 standard deviations out)."""
        n = self.sums[0]
        if n < 10:
            return None
        m1 = self.sums[1] / n
        var = max(self.sums[2] / n - m1 ** 2, 0.0)
        if var == 0:
            return None
        m4 = self.sums[4] / n - 4 * m1 * self.sums[3] / n + 6 * m1 ** 2 * self.sums[2] / n - 3 * m1 ** 4
        kurt = m4 / var ** 2 - 3.0
        mean, std = self.shift + m1, var ** 0.5
        zmax = max(self.hi - mean, mean - self.lo) / std
        if kurt > 10 or zmax > 10:
            return (f"the regression label {self.label!r} is heavy-tailed (excess kurtosis {kurt:.1f}, largest value "
                    f"{zmax:.1f} standard deviations from the mean): RMSE is dominated by a few rows; "
                    "consider predicting log1p of it")
        return None


def label_anomalies(train, others: dict, label: str, task: Optional[str]) -> list:
    """The label's domain per task: a multiclass class seen in eval/test but not in train is a
    ``label_domain`` anomaly (blocking by default: the model cannot predict it, and its metrics
    would be wrong); a regression label must be finite (``label_domain``) and a heavy tail is a
    ``label_tail`` warning. Splits are DataFrames or Parquet splits (read batch by batch)."""
    stats = {}
    for split, data in {"train": train, **others}.items():
        stats[split] = LabelStats(label, task)
        for df in chunks(data, None):
            stats[split].update(df)
    return _label_anomalies(stats)


def _label_anomalies(stats: dict) -> list:
    """:func:`label_anomalies` from each split's :class:`LabelStats` (the train split's first)."""
    from components._shared.task import MULTICLASS, REGRESSION

    train = stats["train"]
    out = []
    if not train.present:
        return out
    label = train.label
    if train.task == MULTICLASS:
        known = set(train.keys)
        for split, st in stats.items():
            if split == "train" or not st.present:
                continue
            unseen = {k: c for k, c in st.keys.items() if k not in known}
            if unseen:
                shown = ", ".join(repr(v) for v in sorted(unseen)[:5])
                out.append(Anomaly("label_domain", label, f"{split}: {sum(unseen.values())} row(s) of label class(es) "
                                   f"{shown} that the train split does not have (the model cannot predict them)"))
    elif train.task == REGRESSION:
        for split, st in stats.items():
            if st.present and st.bad:
                out.append(Anomaly("label_domain", label, f"{split}: {st.bad} regression label value(s) are not finite"))
        tail = train.tail()
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
