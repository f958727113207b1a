"""The schema validate infers and every later stage reads, and its column helpers.

A schema is plain JSON: ``{"version", "label", "positive_label", "row_count", "columns"}``,
where each column entry records its kind (numeric, categorical, boolean, timestamp, or an
excluded kind: id, text, constant), its role (feature, label, excluded) and why, its
nullability and missing rate, and the statistics later steps compare against: range,
mean/std, quantile bins with their frequencies (numeric kinds), domain, frequencies and
cardinality (categorical). Identifiers, free text and constant columns are excluded from the
features; timestamps become numeric features (days since the epoch).

:func:`column_values` is the one view of a column by its kind, shared by validation, the
transform spec (engineer), drift and the monitor, so they all see the same numbers.
"""

from __future__ import annotations

import re
from typing import Optional

from components._shared import io

SCHEMA_VERSION = 1
MAX_DOMAIN = 1000  # categorical values kept in a schema's domain (most frequent first)
QUANTILE_SAMPLE = 200_000  # values the quantile bins are fitted on
NUMERIC_KINDS = ("numeric", "boolean", "timestamp")
FEATURE_KINDS = NUMERIC_KINDS + ("categorical",)


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


ID_GIVEN_REASON = "the configured id column"
ID_DETECTED_REASON = "the id column the splits are hashed on (detected by ingest)"

# Names of identifier columns: id, uuid, guid, key alone or as the last word (customer_id,
# user-uuid, order key, customerID, userId).
_ID_NAME = re.compile(r"(?:^|[_\-\s.])(?:id|uuid|guid|key)$", re.IGNORECASE)
_ID_NAME_CAMEL = re.compile(r"[a-z0-9](?:Id|ID|Uuid|UUID|Guid|GUID|Key)$")


def id_like_name(name) -> bool:
    """Whether a column name reads as an identifier's (``id``, ``customer_id``, ``customerID``, ``uuid``, ``key``)."""
    name = str(name).strip()
    return bool(_ID_NAME.search(name) or _ID_NAME_CAMEL.search(name))


def infer_kind(series, n_rows: int) -> tuple[str, Optional[str]]:
    """Return (kind, reason) of a column from its dtype and statistics.

    This is the one rule of what an identifier is (validate excludes it from the features,
    ingest hashes the split on it, see :func:`detect_id_column`): an integer column unique per
    row (at least 100 rows, or 20 when it is named like an identifier), or a string column whose
    values are almost all distinct and are not free text. A float column is never an identifier.
    """
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
        integer = pd.api.types.is_integer_dtype(series)
        return (integer and _identifier(series.name, True, n_rows, nonnull_count, nunique)) or ("numeric", None)
    nonnull = series.dropna()
    sample = nonnull.sample(min(len(nonnull), 2000), random_state=0) if len(nonnull) > 2000 else nonnull
    sample = sample.astype(object)
    if not isinstance(sample.iloc[0], str) and hasattr(sample.iloc[0], "isoformat"):
        return "timestamp", None  # datetime.date objects
    if _looks_like_dates(sample):
        return "timestamp", None
    return _identifier(series.name, False, n_rows, nonnull_count, nunique, sample) or ("categorical", None)


def _identifier(name, integer: bool, n_rows: int, nonnull_count: int, nunique: int, sample=None):
    """The identifier rule on a column's statistics: ("id" | "text", reason), or None.

    ``sample``: up to 2000 of a string column's values (not dates), to tell free text apart.
    """
    if integer:
        if nunique == nonnull_count == n_rows and (n_rows >= 100 or (n_rows >= 20 and id_like_name(name))):
            return "id", "an integer that is unique per row (an identifier)"
        return None
    if nonnull_count >= 20 and nunique / nonnull_count > 0.95:
        text = sample.astype(str)
        if text.str.len().mean() > 30 and text.str.contains(" ").mean() > 0.5:
            return "text", "free text (long, mostly unique values)"
        return "id", "a string that is unique per row (an identifier)"
    return None


def detect_id_column(table, label: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """The identifier column to split a table on, and why; (None, None) when there is none.

    A column qualifies when the rule of :func:`infer_kind` calls it an identifier (applied here
    to Arrow statistics and a sample, so a 1M-row table is not converted), it has no missing value,
    and its name reads as an identifier's (:func:`id_like_name`): a unique float feature, a
    pandas index written as ``Unnamed: 0`` or a column of names is never picked. Several
    qualify: the integer one first, then the first in column order.

    Args:
        table: A pyarrow Table or a pandas DataFrame.
        label: The label column (never an identifier).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    n = table.num_rows
    found = []
    for i, field in enumerate(table.schema):
        name = field.name
        if name == label or not id_like_name(name):
            continue
        is_int = pa.types.is_integer(field.type)
        if not (is_int or pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        col = table.column(i)
        if col.null_count or n == 0:
            continue
        nunique = pc.count_distinct(col).as_py()
        sample = None
        if not is_int:
            idx = np.random.default_rng(0).choice(n, min(n, 2000), replace=False)
            sample = pd.Series(col.take(pa.array(np.sort(idx))).to_pylist(), dtype=object)
            if _looks_like_dates(sample):
                continue
        rule = _identifier(name, is_int, n, n, nunique, sample)
        if rule and rule[0] == "id":
            found.append((not is_int, i, name))
    if not found:
        return None, None
    text, _, name = min(found)
    return name, ("named like an identifier, with text values almost all distinct" if text
                  else "named like an identifier, with integer values unique per row")


def _as_timestamp(series):
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    from components._shared.timestamps import parse_timestamps

    return parse_timestamps(series)


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


def numeric_stats(values) -> dict:
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


def categorical_stats(values) -> dict:
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
    id_detected: bool = False,
) -> dict:
    """Infer a schema (kinds, ranges, domains, feature roles) from a training split.

    ``id_column`` is excluded from the features as an identifier; ``id_detected`` says ingest
    found it (:func:`detect_id_column`) rather than the user naming it.
    """
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
            kind, reason = "id", ID_DETECTED_REASON if id_detected else ID_GIVEN_REASON
        entry["kind"] = kind
        if name in exclude:
            entry.update(role="excluded", reason="excluded by configuration")
        elif kind in FEATURE_KINDS:
            entry.update(role="feature", reason=None)
        else:
            entry.update(role="excluded", reason=reason)
        values = column_values(series, kind) if kind in FEATURE_KINDS else None
        if kind in NUMERIC_KINDS:
            entry.update(numeric_stats(values))
        elif kind == "categorical":
            entry.update(categorical_stats(values))
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
    """The schema's feature columns, in column order."""
    return [c for c, e in schema["columns"].items() if e.get("role") == "feature"]


def load_schema(path: str) -> dict:
    return io.read_json(path)
