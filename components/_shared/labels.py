"""The label column: raw values -> what ingest writes, and what ingest wrote -> model targets.

Binary: ingest encodes the label once (:func:`encode_label`) as 0/1; :func:`labels` reads it back
as float32. Multiclass: ingest writes each value as its class string
(:func:`components._shared.task.class_key`); :func:`labels` maps it to the class index of the
spec's ``classes``. Regression: ingest writes float64; :func:`labels` gives float32. The monitor
encodes a window's raw labels the same way. (The task table is in ``_shared/task.py``.)
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
    """The label column named by the transform spec as model targets: binary 0/1 float32,
    multiclass int32 class indices (of ``spec["classes"]``), regression float32.

    Raises:
        DataError: A multiclass label value is not one of the spec's classes.
    """
    import numpy as np

    from components._shared.task import MULTICLASS, REGRESSION, class_keys, task_of

    task = task_of(spec).name
    col = df[spec["label"]]
    if task == MULTICLASS:
        return class_indices(class_keys(col), spec["classes"], spec["label"])
    if task == REGRESSION:
        return col.to_numpy(dtype=np.float64).astype(np.float32)
    return col.to_numpy().astype(np.float32)


def class_indices(keys, classes: list, label: str = "label"):
    """Class strings -> int32 indices into ``classes``; DataError naming a value not among them."""
    import numpy as np
    import pandas as pd

    codes = pd.Categorical(pd.Series(keys, dtype=object), categories=list(classes)).codes.astype(np.int32)
    if (codes < 0).any():
        unknown = pd.Series(keys, dtype=object)[codes < 0]
        raise DataError(f"the label {label!r} has {len(unknown)} row(s) whose class {unknown.iloc[0]!r} is not one "
                        f"of the model's classes ({', '.join(map(str, classes[:10]))}), which come from the train split")
    return codes
