"""The transform spec applied on the host: raw columns -> the arrays the model core takes.

The spec (plain JSON, fitted by ``components/engineer``) is the contract between engineer,
train, evaluate, export, compare and the monitor. :func:`encode` is the one host-side step
they share: numbers as float32 with NaN for missing; categories as vocabulary indices, 0
for out-of-vocabulary, the same mapping the SavedModel's lookup tables apply.
:func:`raw_features` gives the per-feature arrays a serving client sends: numbers as float32,
timestamps and categories as strings (timestamps as in the training file, or ISO 8601).
"""

from __future__ import annotations

from typing import Optional

from components._shared.errors import DataError
from components._shared.labels import labels
from components._shared.schema import column_values

SPEC_VERSION = 1


def check_columns(df, spec: dict, where: str = "data") -> None:
    """Raise DataError naming the first feature of the spec that ``df`` lacks."""
    for f in spec["numeric"] + spec["categorical"]:
        if f["name"] not in df.columns:
            raise DataError(f"the {where} has no column {f['name']!r}, which the transform spec needs")


def encode(df, spec: dict) -> dict:
    """Raw columns -> model-core arrays: ``numeric`` float32 (NaN = missing), ``categorical`` int32."""
    import numpy as np
    import pandas as pd

    check_columns(df, spec)
    out = {}
    if spec["numeric"]:
        num = np.empty((len(df), len(spec["numeric"])), dtype=np.float32)
        for j, f in enumerate(spec["numeric"]):
            num[:, j] = column_values(df[f["name"]], f["kind"])
        out["numeric"] = num
    if spec["categorical"]:
        cat = np.empty((len(df), len(spec["categorical"])), dtype=np.int32)
        for j, f in enumerate(spec["categorical"]):
            s = df[f["name"]]
            if not isinstance(s.dtype, pd.CategoricalDtype):
                s = s.astype("string")
            cat[:, j] = pd.Categorical(s, categories=f["vocab"]).codes.astype(np.int32) + 1
        out["categorical"] = cat
    return out


def raw_features(df, spec: dict, rows: Optional[int] = None) -> dict:
    """Raw per-feature arrays as a serving client would send them (for SavedModel calls).

    Timestamps are strings (see :func:`components._shared.timestamps.timestamp_strings`): the
    SavedModel parses them itself, as training did; "" for missing.
    """
    import numpy as np

    from components._shared.timestamps import timestamp_strings

    part = df if rows is None else df.iloc[:rows]
    out = {}
    for f in spec["numeric"]:
        if f["kind"] == "timestamp":
            out[f["input_name"]] = timestamp_strings(part[f["name"]])
        else:
            out[f["input_name"]] = column_values(part[f["name"]], f["kind"]).astype(np.float32)
    for f in spec["categorical"]:
        out[f["input_name"]] = part[f["name"]].astype("string").fillna("").to_numpy(dtype=object).astype(str)
    return out


def encode_parquet(path: str, spec: dict, batch_rows: int = 262_144) -> tuple:
    """Encode a Parquet split batch by batch into compact model-core arrays plus labels.

    Only the encoded arrays (4 bytes per feature per row) are held in memory, never the raw
    table: a 10M-row split needs about 0.5 GB here instead of several GB of pandas columns.

    Returns:
        (arrays dict as from :func:`encode`, float32 labels)
    """
    import numpy as np

    from components._shared.io import (
        iter_parquet_batches,
        parquet_num_rows,
        read_parquet_schema_names,
        to_pandas,
    )

    n = parquet_num_rows(path)  # a file or a folder of shards
    names = [f["name"] for f in spec["numeric"] + spec["categorical"]]
    present = set(read_parquet_schema_names(path))
    missing = [c for c in names + [spec["label"]] if c not in present]
    if missing:
        raise DataError(f"the data {path} has no column {missing[0]!r}, which the transform spec needs")
    out = {}
    if spec["numeric"]:
        out["numeric"] = np.empty((n, len(spec["numeric"])), dtype=np.float32)
    if spec["categorical"]:
        out["categorical"] = np.empty((n, len(spec["categorical"])), dtype=np.int32)
    y = np.empty(n, dtype=np.float32)
    start = 0
    for batch in iter_parquet_batches(path, columns=names + [spec["label"]], batch_rows=batch_rows):
        import pyarrow as pa

        df = to_pandas(pa.Table.from_batches([batch]))
        enc = encode(df, spec)
        stop = start + len(df)
        for k, v in enc.items():
            out[k][start:stop] = v
        y[start:stop] = labels(df, spec)
        start = stop
    return out, y
