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
    """Anomalies of one split (a DataFrame) against a reference schema (see :class:`SchemaCheck`)."""
    check = SchemaCheck(schema, split, min_rows, max_missing_jump, max_unseen_share, max_out_of_range_share)
    check.update(df)
    return check.anomalies()


class _FeatureTally:
    """What the checks of one feature count over a split's batches."""

    def __init__(self):
        self.rows = self.missing = self.bad = self.finite = self.out = self.nonnull = self.unseen = 0
        self.bad_example = None
        self.unseen_examples: list = []


class SchemaCheck:
    """Anomalies of one split against a reference schema, counted batch by batch (:meth:`update`,
    then :meth:`anomalies`): the same numbers for one batch or many, in bounded memory."""

    def __init__(self, schema: dict, split: str, min_rows: int, max_missing_jump: float,
                 max_unseen_share: float, max_out_of_range_share: float):
        self.schema, self.split, self.min_rows = schema, split, min_rows
        self.max_missing_jump, self.max_unseen_share = max_missing_jump, max_unseen_share
        self.max_out_of_range_share = max_out_of_range_share
        self.rows, self.columns = 0, None
        self.tally = {name: _FeatureTally() for name in feature_names(schema)}

    def update(self, df) -> None:
        import numpy as np
        import pandas as pd

        self.rows += len(df)
        if self.columns is None:
            self.columns = set(df.columns)
        for name, t in self.tally.items():
            if name not in df.columns:
                continue
            entry = self.schema["columns"][name]
            series = df[name]
            kind = entry["kind"]
            t.rows += len(series)
            if kind in NUMERIC_KINDS and not (
                pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
                or pd.api.types.is_datetime64_any_dtype(series) or kind == "timestamp"
            ):
                bad = series.dropna()
                bad = bad[pd.to_numeric(bad, errors="coerce").isna()]
                if len(bad) and t.bad_example is None:
                    t.bad_example = bad.iloc[0]
                t.bad += len(bad)
            t.missing += int(series.isna().sum())
            values = column_values(series, kind)
            if kind in NUMERIC_KINDS and (entry.get("min") is not None or entry.get("max") is not None):
                lo = entry["min"] if entry.get("min") is not None else -np.inf
                hi = entry["max"] if entry.get("max") is not None else np.inf
                finite = values[np.isfinite(values)]
                t.finite += len(finite)
                t.out += int(((finite < lo) | (finite > hi)).sum())
            elif kind == "categorical" and entry.get("domain") is not None and entry.get("cardinality", 0) <= MAX_DOMAIN:
                nonnull = values.dropna()
                unseen_mask = ~nonnull.isin(entry["domain"])
                t.nonnull += len(nonnull)
                t.unseen += int(unseen_mask.sum())
                if len(t.unseen_examples) < 3 and t.unseen:
                    for v in pd.unique(nonnull[unseen_mask]):
                        if len(t.unseen_examples) < 3 and v not in t.unseen_examples:
                            t.unseen_examples.append(v)

    def anomalies(self) -> list:
        import numpy as np

        anomalies = []
        split, columns = self.split, self.columns or set()
        for name, entry in self.schema["columns"].items():
            if entry.get("role") in ("feature", "label") and name not in columns:
                anomalies.append(Anomaly("missing_column", name, f"{split}: column {name!r} of the schema is missing"))
        if self.rows < self.min_rows:
            anomalies.append(Anomaly("too_few_rows", None, f"{split}: {self.rows} rows, fewer than the minimum "
                                     f"{self.min_rows}"))
        for name, t in self.tally.items():
            if name not in columns:
                continue
            entry = self.schema["columns"][name]
            kind = entry["kind"]
            if t.bad:  # an all-missing column (read as text, having no values) is no type change
                anomalies.append(Anomaly(
                    "type_change", name,
                    f"{split}: column {name!r} should be {kind} but holds text such as {t.bad_example!r} "
                    f"({t.bad} values)"))
                continue
            missing = t.missing / t.rows if t.rows else 0.0
            if "missing_rate" in entry and missing - entry["missing_rate"] > self.max_missing_jump:
                what = ("is entirely empty: every value is missing" if missing == 1.0
                        else f"is missing in {missing:.1%} of rows")
                anomalies.append(Anomaly(
                    "missing_rate_jump", name, f"{split}: column {name!r} {what} (schema: {entry['missing_rate']:.1%})"))
            if t.finite:
                lo = entry["min"] if entry.get("min") is not None else -np.inf
                hi = entry["max"] if entry.get("max") is not None else np.inf
                out = t.out / t.finite
                if out > self.max_out_of_range_share:
                    anomalies.append(Anomaly(
                        "out_of_range", name,
                        f"{split}: {out:.1%} of {name!r} is outside the schema range [{lo:.4g}, {hi:.4g}]"))
            elif t.nonnull:
                share = t.unseen / t.nonnull
                if share > self.max_unseen_share:
                    examples = ", ".join(repr(v) for v in t.unseen_examples)
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
    """Text columns whose values are almost all numbers: a numeric column with corrupted entries
    (judged on a sample of 5000 values of each text column of a DataFrame)."""
    samples = {}
    for name in schema["columns"]:
        if name in df.columns:
            nonnull = df[name].dropna()
            samples[name] = nonnull.sample(min(len(nonnull), 5000), random_state=0) if len(nonnull) > 5000 else nonnull
    return corrupted_types(samples, schema, split)


def corrupted_types(samples: dict, schema: dict, split: str) -> list:
    """:func:`check_corrupted_types` on samples of non-missing values ({column: Series})."""
    import pandas as pd

    anomalies = []
    for name, entry in schema["columns"].items():
        if entry.get("kind") not in ("categorical", "id", "text") or name not in samples:
            continue
        sample = samples[name]
        if len(sample) == 0:
            continue
        parsed = pd.to_numeric(sample.astype(str), errors="coerce")
        share = float(parsed.notna().mean())
        if 0.5 <= share < 1.0 and entry.get("cardinality", MAX_DOMAIN + 1) > 20:
            bad = sample[parsed.isna()]
            anomalies.append(Anomaly(
                "corrupted_type", name,
                f"{split}: column {name!r} is numeric except for text values such as {bad.iloc[0]!r} "
                f"({1 - share:.2%} of a sample); fix the data or exclude the column"))
    return anomalies
