"""The window: read it, check it against the champion's schema, view its features as the model does.

A window that cannot be compared at all (no rows, too few rows, a feature column missing, a
column whose type changed) is an error naming the problem; smaller findings (missing-rate jumps,
out-of-range values, unseen categories) are reported as quality anomalies.
"""

from __future__ import annotations

import dataclasses

from components._shared import io
from components._shared.errors import DataError


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
    from components._shared.anomalies import check_against_schema
    from components._shared.schema import feature_names

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

    from components._shared.schema import NUMERIC_KINDS, column_values

    out = {}
    for name in features:
        kind = schema["columns"][name]["kind"]
        values = column_values(df[name], kind)
        if kind in NUMERIC_KINDS:
            out[name] = np.asarray(values, dtype=np.float64)
        else:
            out[name] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out, index=range(len(df)))
