"""The binary label: raw label values -> 0/1 (ingest, monitor) and the 0/1 label column -> float32.

Ingest encodes the label column once (:func:`encode_label`) and writes it as 0/1; every later
step reads it back with :func:`labels`. The monitor encodes a window's raw labels the same way.
"""

from __future__ import annotations

from typing import Optional

from components._shared.errors import DataError

POSITIVE_TOKENS = ("1", "1.0", "true", "yes", "y", "t", "positive", "pos")


def _label_key(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def encode_label(series, label: str, positive_label: Optional[str] = None):
    """Map a two-valued label column (pandas Series or pyarrow array) to 0/1.

    Returns:
        (int8 numpy array, positive value as string, negative value as string)

    Raises:
        DataError: The label does not have exactly two distinct values, or
            ``positive_label`` is not one of them.
    """
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(series if isinstance(series, pd.Series) else pd.Series(series), sort=True)
    keys = [_label_key(u) for u in list(uniques)]
    values = sorted(set(keys))
    if len(values) != 2:
        shown = ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise DataError(
            f"the label column {label!r} must have exactly two values for binary "
            f"classification but has {len(values)}: {shown}"
        )
    if positive_label is not None and str(positive_label) != "":
        pos = _label_key(positive_label)
        if pos not in values:
            raise DataError(f"positive_label {pos!r} is not a value of the label column {label!r} ({values})")
    else:
        known = [v for v in values if v.lower() in POSITIVE_TOKENS]
        pos = known[0] if len(known) == 1 else values[1]
    neg = values[0] if values[1] == pos else values[1]
    is_pos = np.array([k == pos for k in keys] + [False], dtype=np.int8)  # code -1 (missing) -> last
    return is_pos[codes], pos, neg


def labels(df, spec: dict):
    """The 0/1 label column named by the transform spec, as float32."""
    import numpy as np

    return df[spec["label"]].to_numpy().astype(np.float32)
