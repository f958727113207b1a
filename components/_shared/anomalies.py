"""Anomaly checks of a table against a schema (validate's splits, the monitor's windows), and what a
fresh schema shows by itself.

Each check returns :class:`Anomaly` objects with a sentence that names the split, the column and
the threshold; :func:`components.validate.core.validate` sets their severity
(:data:`DEFAULT_SEVERITY`, overridable per kind) and decides what blocks the run.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from components._shared.schema import MAX_DOMAIN, NUMERIC_KINDS, column_values, feature_names

# Default severity per anomaly kind; override with validate(severity={...}).
DEFAULT_SEVERITY = {
    "missing_column": "blocking",
    "extra_column": "warning",
    "type_change": "blocking",
    "corrupted_type": "blocking",
    "missing_rate_jump": "blocking",
    "out_of_range": "warning",
    "unseen_categories": "warning",
    "label_domain": "blocking",
    "too_few_rows": "blocking",
    "constant_column": "warning",
    "excluded_column": "warning",
    "drift": "warning",
}


@dataclasses.dataclass
class Anomaly:
    kind: str
    column: Optional[str]
    message: str
    severity: str = "warning"

    def text(self) -> str:
        return f"[{self.severity}] {self.message}"



def check_against_schema(df, schema: dict, split: str, min_rows: int, max_missing_jump: float,
                         max_unseen_share: float, max_out_of_range_share: float) -> list:
    """Anomalies of one split against a reference schema."""
    import numpy as np
    import pandas as pd

    anomalies = []
    ref_cols = schema["columns"]
    for name, entry in ref_cols.items():
        if entry.get("role") in ("feature", "label") and name not in df.columns:
            anomalies.append(Anomaly("missing_column", name, f"{split}: column {name!r} of the schema is missing"))
    if len(df) < min_rows:
        anomalies.append(Anomaly("too_few_rows", None, f"{split}: {len(df)} rows, fewer than the minimum {min_rows}"))
    for name in feature_names(schema):
        if name not in df.columns:
            continue
        entry = ref_cols[name]
        series = df[name]
        kind = entry["kind"]
        if kind in NUMERIC_KINDS and not (
            pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
            or pd.api.types.is_datetime64_any_dtype(series) or kind == "timestamp"
        ):
            bad = series.dropna()
            bad = bad[pd.to_numeric(bad, errors="coerce").isna()]
            if len(bad):  # an all-missing column (read as text, having no values) is no type change
                anomalies.append(Anomaly(
                    "type_change", name,
                    f"{split}: column {name!r} should be {kind} but holds text such as {bad.iloc[0]!r} "
                    f"({len(bad)} values)"))
                continue
        missing = float(series.isna().mean()) if len(series) else 0.0
        if "missing_rate" in entry and missing - entry["missing_rate"] > max_missing_jump:
            what = "is entirely empty: every value is missing" if missing == 1.0 else f"is missing in {missing:.1%} of rows"
            anomalies.append(Anomaly(
                "missing_rate_jump", name, f"{split}: column {name!r} {what} (schema: {entry['missing_rate']:.1%})"))
        values = column_values(series, kind)
        if kind in NUMERIC_KINDS and (entry.get("min") is not None or entry.get("max") is not None):
            lo = entry["min"] if entry.get("min") is not None else -np.inf
            hi = entry["max"] if entry.get("max") is not None else np.inf
            finite = values[np.isfinite(values)]
            if len(finite):
                out = float(((finite < lo) | (finite > hi)).mean())
                if out > max_out_of_range_share:
                    anomalies.append(Anomaly(
                        "out_of_range", name,
                        f"{split}: {out:.1%} of {name!r} is outside the schema range [{lo:.4g}, {hi:.4g}]"))
        elif kind == "categorical" and entry.get("domain") is not None and entry.get("cardinality", 0) <= MAX_DOMAIN:
            nonnull = values.dropna()
            if len(nonnull):
                unseen_mask = ~nonnull.isin(entry["domain"])
                share = float(unseen_mask.mean())
                if share > max_unseen_share:
                    examples = ", ".join(repr(v) for v in pd.unique(nonnull[unseen_mask])[:3])
                    anomalies.append(Anomaly(
                        "unseen_categories", name,
                        f"{split}: {share:.1%} of {name!r} are values the schema has not seen ({examples})"))
    return anomalies


def check_new_schema(schema: dict, split: str = "train") -> list:
    """Anomalies visible in a freshly inferred schema: corrupted types, constants, exclusions."""
    anomalies = []
    for name, entry in schema["columns"].items():
        if entry.get("role") != "excluded":
            continue
        if entry.get("kind") == "constant" and entry.get("missing_rate") == 1.0:
            anomalies.append(Anomaly("constant_column", name, f"{split}: column {name!r} is entirely empty (every "
                                     "value is missing); excluded from features"))
        elif entry.get("kind") == "constant":
            anomalies.append(Anomaly("constant_column", name, f"{split}: column {name!r} is constant ({entry['reason']}); "
                                     "excluded from features"))
        else:
            anomalies.append(Anomaly("excluded_column", name, f"column {name!r} is excluded from features: {entry['reason']}"))
    return anomalies


def check_corrupted_types(df, schema: dict, split: str) -> list:
    """Text columns whose values are almost all numbers: a numeric column with corrupted entries."""
    import pandas as pd

    anomalies = []
    for name, entry in schema["columns"].items():
        if entry.get("kind") not in ("categorical", "id", "text") or name not in df.columns:
            continue
        nonnull = df[name].dropna()
        if len(nonnull) == 0:
            continue
        sample = nonnull.sample(min(len(nonnull), 5000), random_state=0) if len(nonnull) > 5000 else nonnull
        parsed = pd.to_numeric(sample.astype(str), errors="coerce")
        share = float(parsed.notna().mean())
        if 0.5 <= share < 1.0 and entry.get("cardinality", MAX_DOMAIN + 1) > 20:
            bad = sample[parsed.isna()]
            anomalies.append(Anomaly(
                "corrupted_type", name,
                f"{split}: column {name!r} is numeric except for text values such as {bad.iloc[0]!r} "
                f"({1 - share:.2%} of a sample); fix the data or exclude the column"))
    return anomalies
