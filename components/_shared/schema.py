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
from components._shared.sketches import (  # noqa: F401  (MAX_DOMAIN, QUANTILE_SAMPLE: re-exported)
    MAX_DOMAIN,
    QUANTILE_SAMPLE,
    DistinctInts,
    NumericStream,
    Reservoir,
    ValueCounts,
)

SCHEMA_VERSION = 1
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
    profile = ColumnProfile(series.name)
    profile.update(series)
    return profile.kind(n_rows)


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
        if is_id_candidate(name, is_int, n, nunique, sample):
            found.append((not is_int, i, name))
    return pick_id_column(found)


def is_id_candidate(name: str, is_int: bool, rows: int, nunique: int, sample=None) -> bool:
    """The identifier rule of :func:`infer_kind` on one column's counts (no missing value, a name
    that reads as an identifier's already checked); ``sample`` is a pandas Series of a text
    column's values (dates are never identifiers). Shared by the file path and ingest's BigQuery
    path, which computes the counts in SQL."""
    if not is_int and _looks_like_dates(sample):
        return False
    rule = _identifier(name, is_int, rows, rows, nunique, sample)
    return bool(rule and rule[0] == "id")


def pick_id_column(found: list) -> tuple[Optional[str], Optional[str]]:
    """Of the qualifying columns ``(is_text, position, name)``, the integer one first, then the
    first in column order: (name, why), or (None, None)."""
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
    """Range, moments, quantile bins and their frequencies of a float64 array (see :class:`NumericStream`)."""
    import numpy as np

    acc = NumericStream()
    acc.update(np.asarray(values, dtype=np.float64))
    return acc.stats()


def categorical_stats(values) -> dict:
    """Domain (most frequent first), frequencies and cardinality of a categorical Series."""
    acc = ValueCounts()
    acc.update(values)
    return acc.stats()


def infer_schema(
    data,
    label: str,
    positive_label: Optional[str] = None,
    id_column: Optional[str] = None,
    exclude: Optional[list] = None,
    id_detected: bool = False,
) -> dict:
    """Infer a schema (kinds, ranges, domains, feature roles) from a training split.

    ``data`` is a DataFrame or a Parquet split (file or folder of shards), read batch by batch
    (see :func:`chunks`): memory does not grow with rows. ``id_column`` is excluded from the
    features as an identifier; ``id_detected`` says ingest found it (:func:`detect_id_column`)
    rather than the user naming it.
    """
    profile = TableProfile(label, skip=[id_column] if id_column else ())
    for df in chunks(data):
        profile.update(df)
    return schema_from_profile(profile, data, label, positive_label, id_column, exclude, id_detected)


def schema_from_profile(profile: TableProfile, data, label: str, positive_label: Optional[str] = None,
                        id_column: Optional[str] = None, exclude: Optional[list] = None,
                        id_detected: bool = False) -> dict:
    """The schema of a profiled split; a column whose kind needs a view of its values that the
    profile does not hold (text read as timestamps) gets one more pass over ``data``."""
    exclude = set(exclude or [])
    n = profile.n
    columns, restat = {}, {}
    for name, col in profile.columns.items():
        entry: dict = {"dtype": str(col.dtype), "missing_rate": float(col.nulls / n) if n else float("nan")}
        if name == label:
            entry.update(kind="label", role="label", reason=None)
            columns[name] = entry
            continue
        if name == id_column:
            kind, reason = "id", ID_DETECTED_REASON if id_detected else ID_GIVEN_REASON
        else:
            kind, reason = col.kind(n)
        entry["kind"] = kind
        if name in exclude:
            entry.update(role="excluded", reason="excluded by configuration")
        elif kind in FEATURE_KINDS:
            entry.update(role="feature", reason=None)
        else:
            entry.update(role="excluded", reason=reason)
        if kind in FEATURE_KINDS:
            stats = col.kind_stats(kind)
            if stats is None:
                restat[name] = kind
            else:
                entry.update(stats)
        entry["nullable"] = entry["missing_rate"] > 0
        columns[name] = entry
    for name, stats in column_stats(data, restat).items():
        columns[name].update(stats)
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


# --------------------------------------------------------------------------- streaming profile
# A split is profiled batch by batch (exact and sampled statistics: see components/_shared/sketches.py),
# so memory does not grow with rows.

BATCH_ROWS = 131_072  # rows per batch read from a Parquet split
TEXT_SAMPLE = 5000  # values of a text column kept to tell dates, free text and numbers apart


def chunks(data, columns: Optional[list] = None):
    """The pandas batches of a split: ``data`` is a DataFrame (one batch), a Parquet file or folder
    of shards (read with :func:`io.iter_parquet_batches`, strings as categoricals), or a callable
    returning an iterator of DataFrames or RecordBatches (called once per pass)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        yield data if columns is None else data[columns]
        return
    if isinstance(data, str):
        batches = io.iter_parquet_batches(data, columns=columns, batch_rows=BATCH_ROWS)
    else:
        batches = data()
    import pyarrow as pa

    empty = True
    for batch in batches:
        if not isinstance(batch, pd.DataFrame):
            batch = io.to_pandas(pa.Table.from_batches([batch]))
        empty = False
        yield batch if columns is None else batch[columns]
    if empty and isinstance(data, str):  # a split without rows still has its columns
        import pyarrow.parquet as pq

        schema = pq.read_schema(io.parquet_files(data)[0])
        table = schema.empty_table()
        yield io.to_pandas(table if columns is None else table.select(columns))


def column_names(data) -> list:
    """The column names of a split (see :func:`chunks`) without reading its rows where possible."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return list(data.columns)
    if isinstance(data, str):
        return list(io.read_parquet_schema_names(data))
    first = next(iter(chunks(data)), None)
    return [] if first is None else list(first.columns)


def _promote(a, b):
    """The dtype of a column whose batches have dtypes ``a`` and ``b`` (an integer column with
    missing values reads as float in the batches that have them, a boolean one as object)."""
    import pandas as pd

    if a is None or a == b:
        return b
    num = pd.api.types.is_numeric_dtype
    boolean = pd.api.types.is_bool_dtype
    if num(a) and num(b) and not boolean(a) and not boolean(b):
        return a if pd.api.types.is_float_dtype(a) else b
    if isinstance(a, pd.CategoricalDtype) and isinstance(b, pd.CategoricalDtype):
        return a
    return pd.api.types.pandas_dtype(object)


class ColumnProfile:
    """One column's statistics accumulated over batches: what :func:`infer_kind` decides on and
    the statistics of the kind its values have (numeric view or value counts)."""

    def __init__(self, name, stats: bool = True):
        self.name, self.stats = name, stats
        self.n, self.nulls, self.dtype, self.first = 0, 0, None, None
        self.lo = self.hi = None
        self.numeric: Optional[NumericStream] = None
        self.ints: Optional[DistinctInts] = None
        self.counts: Optional[ValueCounts] = None
        self.text: Optional[Reservoir] = None

    def update(self, series) -> None:
        import pandas as pd

        isna = series.isna()
        nulls = int(isna.sum())
        self.n += len(series)
        self.nulls += nulls
        self.dtype = _promote(self.dtype, series.dtype)
        if nulls == len(series):
            return
        nonnull = series[~isna] if nulls else series
        if self.first is None:
            self.first = nonnull.iloc[0]
        if not self.stats:
            return
        dt = series.dtype
        boolean = pd.api.types.is_bool_dtype(dt)
        if pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_datetime64_any_dtype(dt):
            lo, hi = nonnull.min(), nonnull.max()
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
            if self.numeric is None:
                self.numeric = NumericStream()
            self.numeric.update(_numeric_view(series))
            if pd.api.types.is_integer_dtype(dt):
                if self.ints is None:
                    self.ints = DistinctInts()
                self.ints.update(nonnull.to_numpy())
            if not boolean:
                return
        if self.counts is None:
            self.counts, self.text = ValueCounts(), Reservoir(TEXT_SAMPLE)
        self.counts.update(column_values(series, "categorical"))
        self.text.update(series.to_numpy(dtype=object), ~isna.to_numpy())

    def nonnull(self) -> int:
        return self.n - self.nulls

    def text_sample(self, k: Optional[int] = None):
        import pandas as pd

        return pd.Series(self.text.sample(k) if self.text is not None else [], dtype=object)

    def kind(self, n_rows: int) -> tuple[str, Optional[str]]:
        """:func:`infer_kind` on the accumulated statistics."""
        import pandas as pd

        nonnull_count = self.nonnull()
        if nonnull_count == 0:
            return "constant", "every value is missing"
        dt = self.dtype
        numeric_path = (pd.api.types.is_bool_dtype(dt) or pd.api.types.is_datetime64_any_dtype(dt)
                        or pd.api.types.is_numeric_dtype(dt))
        if numeric_path:
            nunique = 1 if self.lo == self.hi else 2
        else:
            nunique = int(round(self.counts.distinct()))
        if nunique == 1:
            value = self.first
            return "constant", f"a single value ({getattr(value, 'item', lambda: value)()!r})"
        if pd.api.types.is_bool_dtype(dt):
            return "boolean", None
        if pd.api.types.is_datetime64_any_dtype(dt):
            return "timestamp", None
        if pd.api.types.is_numeric_dtype(dt):
            integer = pd.api.types.is_integer_dtype(dt)
            distinct = nonnull_count if (integer and self.ints is not None and self.ints.all_distinct()) else -1
            return (integer and _identifier(self.name, True, n_rows, nonnull_count, distinct)) or ("numeric", None)
        sample = self.text_sample(2000)
        if not isinstance(sample.iloc[0], str) and hasattr(sample.iloc[0], "isoformat"):
            return "timestamp", None  # datetime.date objects
        if _looks_like_dates(sample):
            return "timestamp", None
        return _identifier(self.name, False, n_rows, nonnull_count, nunique, sample) or ("categorical", None)

    def kind_stats(self, kind: str) -> Optional[dict]:
        """The statistics of ``kind`` when this pass has them (None: another pass is needed)."""
        import pandas as pd

        dt = self.dtype
        numeric_dtype = (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_datetime64_any_dtype(dt))
        if kind in NUMERIC_KINDS and numeric_dtype and (kind == "timestamp") == pd.api.types.is_datetime64_any_dtype(dt):
            return (self.numeric or NumericStream()).stats()
        if kind == "categorical" and self.counts is not None and not (numeric_dtype and not pd.api.types.is_bool_dtype(dt)):
            return self.counts.stats()
        if self.nonnull() == 0:
            return NumericStream().stats() if kind in NUMERIC_KINDS else ValueCounts().stats() | {"cardinality": 0}
        return None


class TableProfile:
    """Per-column profiles of a split, fed batch by batch (:meth:`update`)."""

    def __init__(self, label: Optional[str] = None, skip=()):
        self.label, self.skip = label, set(skip or ())
        self.columns: dict = {}
        self.n = 0

    def update(self, df) -> None:
        self.n += len(df)
        for name in df.columns:
            col = self.columns.get(name)
            if col is None:
                col = self.columns[name] = ColumnProfile(name, stats=name != self.label and name not in self.skip)
            col.update(df[name])


def column_stats(data, kinds: dict) -> dict:
    """The statistics of each column of ``kinds`` ({name: kind}) viewed as that kind, in one pass
    over ``data`` (see :func:`chunks`)."""
    acc = {name: NumericStream() if kind in NUMERIC_KINDS else ValueCounts() for name, kind in kinds.items()}
    if not acc:
        return {}
    for df in chunks(data, list(kinds)):
        for name, kind in kinds.items():
            acc[name].update(column_values(df[name], kind))
    return {name: a.stats() for name, a in acc.items()}
