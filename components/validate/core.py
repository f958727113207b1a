"""Validate: infer a schema once, enforce it afterwards, measure drift, write reports.

The schema records, per column, its kind (numeric, categorical, boolean, timestamp, or an
excluded kind: id, text, constant), nullability, ranges, quantile bins and categorical
domains. Feature selection happens here: identifiers, free text and constant columns
are excluded with a warning, timestamps become numeric features.

What gates the run is computed with vectorised statistics over the whole split
(population stability index per feature). evidently's drift tests (:func:`evidently_drift`) run
on a sample of at most ``DRIFT_SAMPLE_ROWS`` rows per side, for the report only, in their own
pipeline step (``components/validate/drift_report.py``): importing evidently alone takes over
3 s, which would otherwise sit on the path to training.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from typing import Optional

from components._shared import io
from components._shared.errors import ValidationError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_DOMAIN = 1000
DRIFT_SAMPLE_ROWS = 20_000
QUANTILE_SAMPLE = 200_000
PSI_DRIFT = 0.2  # population stability index above which a feature counts as drifted
NUMERIC_KINDS = ("numeric", "boolean", "timestamp")
FEATURE_KINDS = NUMERIC_KINDS + ("categorical",)

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


@dataclasses.dataclass
class ValidationResult:
    schema: dict
    anomalies: list
    drift: dict
    status: str  # "ok" | "warnings"

    @property
    def blocking(self) -> list:
        return [a for a in self.anomalies if a.severity == "blocking"]


# --------------------------------------------------------------------------- schema


def _numeric_view(series):
    """A float64 view of a numeric, boolean or timestamp column (timestamps as days since epoch)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        s = series
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        vals = s.to_numpy(dtype="datetime64[ns]").astype("int64").astype(np.float64) / 86_400e9
        vals[s.isna().to_numpy()] = np.nan
        return vals
    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64").to_numpy()
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _looks_like_dates(sample) -> bool:
    import pandas as pd

    if len(sample) == 0:
        return False
    text = sample.astype(str)
    if not text.str.match(r"^\d{4}-\d{2}-\d{2}").mean() > 0.98:
        return False
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    return parsed.notna().mean() > 0.98


def infer_kind(series, n_rows: int) -> tuple[str, Optional[str]]:
    """Return (kind, reason) of a column from its dtype and statistics."""
    import pandas as pd

    nonnull_count = int(series.notna().sum())
    if nonnull_count == 0:
        return "constant", "every value is missing"
    nunique = int(series.nunique(dropna=True))
    if nunique == 1:
        value = series.dropna().iloc[0]
        return "constant", f"a single value ({getattr(value, 'item', lambda: value)()!r})"
    if pd.api.types.is_bool_dtype(series):
        return "boolean", None
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp", None
    if pd.api.types.is_numeric_dtype(series):
        if pd.api.types.is_integer_dtype(series) and n_rows >= 100 and nunique == nonnull_count == n_rows:
            return "id", "an integer that is unique per row (an identifier)"
        return "numeric", None
    nonnull = series.dropna()
    sample = nonnull.sample(min(len(nonnull), 2000), random_state=0) if len(nonnull) > 2000 else nonnull
    sample = sample.astype(object)
    if not isinstance(sample.iloc[0], str) and hasattr(sample.iloc[0], "isoformat"):
        return "timestamp", None  # datetime.date objects
    if _looks_like_dates(sample):
        return "timestamp", None
    unique_ratio = nunique / nonnull_count
    if nonnull_count >= 20 and unique_ratio > 0.95:
        text = sample.astype(str)
        if text.str.len().mean() > 30 and text.str.contains(" ").mean() > 0.5:
            return "text", "free text (long, mostly unique values)"
        return "id", "a string that is unique per row (an identifier)"
    return "categorical", None


def _as_timestamp(series):
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    return pd.to_datetime(series.astype("string"), errors="coerce", format="ISO8601", utc=True).dt.tz_localize(None)


def column_values(series, kind: str):
    """Numeric view (float64 array) for numeric kinds, a categorical Series of strings otherwise."""
    import pandas as pd

    if kind == "timestamp":
        return _numeric_view(_as_timestamp(series))
    if kind in NUMERIC_KINDS:
        return _numeric_view(series)
    if isinstance(series.dtype, pd.CategoricalDtype):
        if len(series.cat.categories) and not isinstance(series.cat.categories[0], str):
            return series.astype(str).where(series.notna()).astype("category")
        return series
    return series.astype("string").astype("category")


def _numeric_stats(values) -> dict:
    import numpy as np

    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "bins": []}
    sample = finite if len(finite) <= QUANTILE_SAMPLE else np.random.default_rng(0).choice(finite, QUANTILE_SAMPLE, replace=False)
    qs = np.unique(np.quantile(sample, np.linspace(0, 1, 11)))
    edges = qs[1:-1].tolist()
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    return {
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "bins": edges,
        "bin_freq": (counts / counts.sum()).tolist(),
        "skew": float(((finite - finite.mean()) ** 3).mean() / (finite.std() ** 3 + 1e-12)),
    }


def _categorical_stats(values) -> dict:
    counts = values.value_counts(dropna=True)
    counts = counts[counts > 0]
    total = int(counts.sum())
    top = counts.iloc[:MAX_DOMAIN]
    return {
        "domain": [str(v) for v in top.index],
        "frequencies": {str(k): float(v) / total for k, v in top.items()},
        "cardinality": int(len(counts)),
    }


def infer_schema(
    df,
    label: str,
    positive_label: Optional[str] = None,
    id_column: Optional[str] = None,
    exclude: Optional[list] = None,
) -> dict:
    """Infer a schema (kinds, ranges, domains, feature roles) from a training split."""
    exclude = set(exclude or [])
    n = len(df)
    columns = {}
    for name in df.columns:
        series = df[name]
        entry: dict = {"dtype": str(series.dtype), "missing_rate": float(series.isna().mean())}
        if name == label:
            entry.update(kind="label", role="label", reason=None)
            columns[name] = entry
            continue
        kind, reason = infer_kind(series, n)
        if name == id_column:
            kind, reason = "id", "the configured id column"
        entry["kind"] = kind
        if name in exclude:
            entry.update(role="excluded", reason="excluded by configuration")
        elif kind in FEATURE_KINDS:
            entry.update(role="feature", reason=None)
        else:
            entry.update(role="excluded", reason=reason)
        values = column_values(series, kind) if kind in FEATURE_KINDS else None
        if kind in NUMERIC_KINDS:
            entry.update(_numeric_stats(values))
        elif kind == "categorical":
            entry.update(_categorical_stats(values))
        entry["nullable"] = entry["missing_rate"] > 0
        columns[name] = entry
    return {
        "version": SCHEMA_VERSION,
        "label": label,
        "positive_label": positive_label,
        "row_count": n,
        "columns": columns,
    }


def feature_names(schema: dict) -> list:
    return [c for c, e in schema["columns"].items() if e.get("role") == "feature"]


# --------------------------------------------------------------------------- checks


def _psi(ref_freq, cur_freq) -> float:
    import numpy as np

    ref = np.clip(np.asarray(ref_freq, dtype=float), 1e-4, None)
    cur = np.clip(np.asarray(cur_freq, dtype=float), 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def population_stability(df, schema: dict) -> dict:
    """PSI of each feature of ``df`` against the schema's bins/frequencies (whole data, vectorised)."""
    import numpy as np

    out = {}
    for name in feature_names(schema):
        entry = schema["columns"][name]
        if name not in df.columns:
            continue
        values = column_values(df[name], entry["kind"])
        if entry["kind"] in NUMERIC_KINDS:
            if not entry.get("bin_freq"):
                continue
            finite = values[np.isfinite(values)]
            if len(finite) == 0:
                continue
            counts = np.bincount(np.searchsorted(entry["bins"], finite, side="right"), minlength=len(entry["bin_freq"]))
            out[name] = _psi(entry["bin_freq"], counts / counts.sum())
        else:
            if not entry.get("frequencies"):
                continue
            freq = values.value_counts(normalize=True, dropna=True)
            keys = list(entry["frequencies"])
            ref = [entry["frequencies"][k] for k in keys] + [max(0.0, 1 - sum(entry["frequencies"].values()))]
            cur = [float(freq.get(k, 0.0)) for k in keys]
            cur.append(max(0.0, 1.0 - sum(cur)))
            out[name] = _psi(ref, cur)
    return out


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
                       **(_numeric_stats(values) if kind in NUMERIC_KINDS else _categorical_stats(values)))


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
            example = repr(bad.iloc[0]) if len(bad) else "?"
            anomalies.append(Anomaly(
                "type_change", name,
                f"{split}: column {name!r} should be {kind} but holds text such as {example} ({len(bad)} values)"))
            continue
        missing = float(series.isna().mean())
        if "missing_rate" in entry and missing - entry["missing_rate"] > max_missing_jump:
            anomalies.append(Anomaly(
                "missing_rate_jump", name,
                f"{split}: column {name!r} is missing in {missing:.1%} of rows (schema: {entry['missing_rate']:.1%})"))
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
        if entry.get("kind") == "constant":
            anomalies.append(Anomaly("constant_column", name, f"{split}: column {name!r} is constant ({entry['reason']}); excluded"))
        elif entry.get("role") == "excluded":
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


# --------------------------------------------------------------------------- drift


def evidently_drift(reference, current, columns: list, html_path: Optional[str], seed: int = 0,
                    max_rows: int = DRIFT_SAMPLE_ROWS) -> dict:
    """Per-feature drift tests and drift share with evidently, on at most ``max_rows`` rows per side."""
    import warnings

    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = reference[columns]
    cur = current[columns]
    if len(ref) > max_rows:
        ref = ref.sample(max_rows, random_state=seed)
    if len(cur) > max_rows:
        cur = cur.sample(max_rows, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    per_feature = {}
    share = None
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
        elif cfg.get("type", "").endswith("ValueDrift"):
            method = cfg.get("method", "")
            value = float(m["value"])
            threshold = float(cfg.get("threshold", 0.05))
            drifted = value < threshold if "p_value" in method else value >= threshold
            per_feature[cfg["column"]] = {"method": method, "score": value, "threshold": threshold, "drifted": drifted}
    if html_path:
        snapshot.save_html(html_path)
    return {"share": share, "features": per_feature, "sample_rows": [len(ref), len(cur)]}


def psi_drift(psi: dict, threshold: float = PSI_DRIFT) -> dict:
    """Drift share and per-feature verdicts from population stability indices."""
    drifted = sorted(c for c, v in psi.items() if v > threshold)
    return {"share": len(drifted) / len(psi) if psi else 0.0, "drifted": drifted, "threshold": threshold}


# --------------------------------------------------------------------------- entry point


def validate(
    train,
    others: dict,
    label: str,
    positive_label: Optional[str] = None,
    reference_schema: Optional[dict] = None,
    user_schema: Optional[dict] = None,
    id_column: Optional[str] = None,
    exclude: Optional[list] = None,
    severity: Optional[dict] = None,
    min_rows: int = 50,
    max_missing_jump: float = 0.1,
    max_unseen_share: float = 0.01,
    max_out_of_range_share: float = 0.01,
    drift_share_threshold: float = 0.5,
    psi_threshold: float = PSI_DRIFT,
    report_html: Optional[str] = None,
) -> ValidationResult:
    """Infer this run's schema, check every split, measure drift.

    Args:
        train: Training split (DataFrame, label encoded 0/1).
        others: Other splits by name (``{"eval": df, "test": df}``).
        reference_schema: The champion's (or a user's) schema to enforce; None on a first run.
            It also fixes the feature set and the bins of the drift gate.
        user_schema: A user's schema enforced as well (its anomalies name "schema file").
        severity: Overrides of :data:`DEFAULT_SEVERITY` by anomaly kind.
        drift_share_threshold: A drift anomaly is raised when more than this share of features
            has a PSI above ``psi_threshold`` (computed on every row, vectorised).

    Returns:
        The result; raise on blocking anomalies is the caller's choice (see :func:`raise_if_blocking`).
    """
    sev = dict(DEFAULT_SEVERITY)
    for kind, level in (severity or {}).items():
        if kind not in DEFAULT_SEVERITY or level not in ("blocking", "warning"):
            raise ValidationError(f"invalid severity override {kind!r}: {level!r} (kinds: {sorted(DEFAULT_SEVERITY)})")
        sev[kind] = level

    schema = infer_schema(train, label, positive_label, id_column=id_column, exclude=exclude)
    anomalies = check_new_schema(schema) + check_corrupted_types(train, schema, "train")
    if not feature_names(schema):
        anomalies.append(Anomaly("too_few_rows", None, "no usable feature columns remain after feature selection", "blocking"))
    if reference_schema is not None:
        ref_pos = reference_schema.get("positive_label")
        if ref_pos is not None and positive_label is not None and str(ref_pos) != str(positive_label):
            anomalies.append(Anomaly(
                "label_domain", label,
                f"the positive label is {positive_label!r} but the reference schema's is {ref_pos!r}"))
        # Keep the reference's feature set, so the challenger's serving signature takes the same
        # inputs as the champion's.
        _keep_roles(schema, reference_schema, train)
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
        if len(train) < min_rows:
            anomalies.append(Anomaly("too_few_rows", None, f"train: {len(train)} rows, fewer than the minimum {min_rows}"))
    for split, df in others.items():
        anomalies += check_against_schema(df, reference_schema or schema, split, 1, max_missing_jump,
                                          max_unseen_share if reference_schema else 1.0,
                                          max_out_of_range_share if reference_schema else 1.0)
    if user_schema is not None:
        _keep_roles(schema, user_schema, train)
        for split, df in {"train": train, **others}.items():
            anomalies += check_against_schema(df, user_schema, f"{split} (schema file)", 1, max_missing_jump,
                                              max_unseen_share, max_out_of_range_share)
    base = reference_schema or schema
    current = train if reference_schema else others.get("test", train)
    psi = population_stability(current, base)
    gate = psi_drift(psi, psi_threshold)
    drift: dict = {"psi": psi, "psi_drift": gate,
                   "reference": "champion schema" if reference_schema else "train split"}
    if gate["share"] > drift_share_threshold:
        anomalies.append(Anomaly(
            "drift", None,
            f"{gate['share']:.0%} of features drifted from the {drift['reference']} (PSI > {psi_threshold}; "
            f"allowed share {drift_share_threshold:.0%}): " + ", ".join(gate["drifted"][:10])))
    for a in anomalies:
        a.severity = sev.get(a.kind, a.severity)
    result = ValidationResult(schema=schema, anomalies=anomalies, drift=drift,
                              status="warnings" if anomalies else "ok")
    if report_html:
        write_report_html(result, report_html)
    return result


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


def write_report_html(result: ValidationResult, path: str) -> None:
    """A self-contained HTML page: anomalies, feature table, drift table."""
    rows = []
    for name, e in result.schema["columns"].items():
        rng = ""
        if e.get("min") is not None:
            rng = f"{e['min']:.4g} .. {e['max']:.4g}"
        elif e.get("domain"):
            rng = ", ".join(e["domain"][:8]) + (" ..." if len(e["domain"]) > 8 else "")
        psi = result.drift.get("psi", {}).get(name)
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                name, e.get("kind"), e.get("role"), e.get("reason") or "", f"{e['missing_rate']:.2%}", rng,
                "" if psi is None else f"{psi:.3f}",
            )) + "</tr>")
    anomalies = "".join(
        f"<li class='{a.severity}'><b>{a.severity}</b> {html.escape(a.kind)}: {html.escape(a.message)}</li>"
        for a in result.anomalies) or "<li>none</li>"
    psi_share = (result.drift.get("psi_drift") or {}).get("share")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Data validation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
.blocking{{color:#b00}}.warning{{color:#a60}}</style></head><body>
<h1>Data validation: {'FAILED' if result.blocking else result.status.upper()}</h1>
<p>Rows in train: {result.schema['row_count']}. Drift reference: {html.escape(result.drift.get('reference', ''))}.
Drift share by PSI (all rows, gates the run): {'n/a' if psi_share is None else f'{psi_share:.0%}'}.
evidently's per-feature drift tests (a sample of at most {DRIFT_SAMPLE_ROWS} rows per side, report only) are the
drift-report step's HTML.</p>
<h2>Anomalies</h2><ul>{anomalies}</ul>
<h2>Columns</h2><table><tr><th>column</th><th>kind</th><th>role</th><th>why</th><th>missing</th><th>range / domain</th><th>PSI</th></tr>
{''.join(rows)}</table>
</body></html>"""
    with open(path, "w") as fh:
        fh.write(page)


def load_schema(path: str) -> dict:
    return io.read_json(path)
