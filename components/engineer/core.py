"""Engineer: fit preprocessing statistics on the train split into a transform spec.

The spec is plain JSON. The trainer turns it into Keras layers *inside* the model
(imputation, log transform, normalisation, vocabulary lookups with an out-of-vocabulary
bucket), so the served model takes raw features and applies exactly what training did.
:func:`encode` is the one host-side step shared by training, evaluation and the TFLite
path: it turns raw columns into the arrays the model core takes (numbers as float32 with
NaN for missing; categories as vocabulary indices, 0 for out-of-vocabulary), the same
mapping the SavedModel's lookup tables apply.
"""

from __future__ import annotations

import logging
import re
from typing import Optional

from components._shared.errors import DataError
from components.validate.core import NUMERIC_KINDS, column_values, feature_names

logger = logging.getLogger(__name__)

SPEC_VERSION = 1


def _input_name(name: str, taken: set) -> str:
    """A TensorFlow-safe signature input name for a column."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "feature"
    if not re.match(r"[A-Za-z]", base[0]):
        base = "f_" + base
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out)
    return out


def fit_transform_spec(
    train,
    schema: dict,
    max_vocab: int = 1000,
    min_frequency: int = 1,
    log_skew_threshold: float = 2.0,
) -> dict:
    """Fit imputation, normalisation and vocabularies on the train split.

    Args:
        train: Training split with raw feature columns.
        schema: Schema from validate (decides each column's kind and role).
        max_vocab: Largest vocabulary kept per categorical feature (most frequent first).
        min_frequency: Values seen fewer times go to the out-of-vocabulary bucket.
        log_skew_threshold: Non-negative numeric columns with a larger skew get log1p.
    """
    import numpy as np

    numeric, categorical, taken = [], [], set()
    for name in feature_names(schema):
        if name not in train.columns:
            raise DataError(f"the feature {name!r} of the schema is not in the train split")
        kind = schema["columns"][name]["kind"]
        values = column_values(train[name], kind)
        if kind in NUMERIC_KINDS:
            finite = values[np.isfinite(values)]
            if len(finite) == 0:
                continue
            fill = float(np.median(finite))
            log = bool(kind == "numeric" and finite.min() >= 0 and
                       float(((finite - finite.mean()) ** 3).mean() / (finite.std() ** 3 + 1e-12)) > log_skew_threshold)
            filled = np.where(np.isfinite(values), values, fill)
            t = np.log1p(np.maximum(filled, 0)) if log else filled
            std = float(t.std())
            numeric.append({
                "name": name, "input_name": _input_name(name, taken), "kind": kind, "fill": fill,
                "log": log, "mean": float(t.mean()), "std": std if std > 1e-12 else 1.0,
            })
        else:
            counts = values.value_counts(dropna=True)
            counts = counts[counts >= min_frequency]
            order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:max_vocab]
            vocab = [str(k) for k, _ in order]
            categorical.append({
                "name": name, "input_name": _input_name(name, taken), "vocab": vocab,
                "oov_share_train": float(1 - sum(v for _, v in order) / max(1, len(values))),
            })
    if not numeric and not categorical:
        raise DataError("no features are left to train on after feature selection")
    spec = {
        "version": SPEC_VERSION,
        "label": schema["label"],
        "positive_label": schema.get("positive_label"),
        "numeric": numeric,
        "categorical": categorical,
        "excluded": [c for c, e in schema["columns"].items() if e.get("role") == "excluded"],
        "train_rows": int(len(train)),
    }
    logger.info("transform spec: %d numeric (%d log), %d categorical features",
                len(numeric), sum(f["log"] for f in numeric), len(categorical))
    return spec


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


def labels(df, spec: dict):
    import numpy as np

    return df[spec["label"]].to_numpy().astype(np.float32)


def raw_features(df, spec: dict, rows: Optional[int] = None) -> dict:
    """Raw per-feature arrays as a serving client would send them (for SavedModel calls)."""
    import numpy as np

    part = df if rows is None else df.iloc[:rows]
    out = {}
    for f in spec["numeric"]:
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
    import pyarrow.parquet as pq

    from components._shared.io import to_pandas

    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    names = [f["name"] for f in spec["numeric"] + spec["categorical"]]
    present = set(pf.schema_arrow.names)
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
    for batch in pf.iter_batches(batch_size=batch_rows, columns=names + [spec["label"]]):
        import pyarrow as pa

        df = to_pandas(pa.Table.from_batches([batch]))
        enc = encode(df, spec)
        stop = start + len(df)
        for k, v in enc.items():
            out[k][start:stop] = v
        y[start:stop] = labels(df, spec)
        start = stop
    return out, y
