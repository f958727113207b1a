"""Engineer: fit preprocessing statistics on the train split into a transform spec.

The spec is plain JSON. The trainer turns it into Keras layers *inside* the model
(imputation, log transform, normalisation, vocabulary lookups with an out-of-vocabulary
bucket), so the served model takes raw features and applies exactly what training did.
Applying the spec on the host (``encode``: raw columns -> the arrays the model core takes)
is shared by every later stage and lives in :mod:`components._shared.transform`.

Two opt-in extras live in the spec and, like everything else, inside the model:

* ``"buckets"``: ``[{"name", "boundaries"}]`` — quantile boundaries (float32 values,
  ascending, unique, finite) of numeric features, fitted on the train split after median
  imputation and before log/z-score. A value's bucket is the number of boundaries at or
  below it (0 .. len(boundaries)); a missing value gets the bucket of its fill value.
  Bucketized features stay numeric inputs as well; the bucket adds an embedding.
* ``"crosses"``: ``[{"columns", "size", "hashed"}]`` — crosses of two or more features, each
  categorical (index 0 .. len(vocab), 0 = OOV) or bucketized. When the product of the
  columns' sizes is at most ``max_cross_size`` the cross index is exact (row-major over the
  columns, ``size`` = that product); otherwise it is a deterministic integer hash of the
  column indices modulo ``size`` = ``max_cross_size`` (see ``_shared.model.cross_hash_multiplier``).

Neither key is written when its option is not used, so such specs are unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Optional

from components._shared.errors import ConfigError, DataError
from components._shared.params import PARAMS
from components._shared.schema import NUMERIC_KINDS, column_values, feature_names
from components._shared.task import label_spec
from components._shared.transform import SPEC_VERSION

logger = logging.getLogger(__name__)

# Cross indices are computed in int32 inside the model; this bound keeps every intermediate
# value of the hash below 2**31 (see _shared.model.cross_hash_multiplier).
MAX_CROSS_SIZE_LIMIT = 2**20


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
    max_vocab: int = PARAMS.max_vocab,
    min_frequency: int = 1,
    log_skew_threshold: float = PARAMS.log_skew_threshold,
    bucketize: Optional[Sequence[str]] = None,
    num_buckets: int = PARAMS.num_buckets,
    crosses: Optional[Sequence[Sequence[str]]] = None,
    max_cross_size: int = 10_000,
) -> dict:
    """Fit imputation, normalisation and vocabularies on the train split.

    Args:
        train: Training split with raw feature columns.
        schema: Schema from validate (decides each column's kind and role).
        max_vocab: Largest vocabulary kept per categorical feature (most frequent first).
        min_frequency: Values seen fewer times go to the out-of-vocabulary bucket.
        log_skew_threshold: Non-negative numeric columns with a larger skew get log1p.
        bucketize: Numeric features to bucketize by train quantiles (``["*"]``: all of them);
            None or empty: none.
        num_buckets: Buckets per bucketized feature (fewer when quantiles coincide).
        crosses: Feature crosses, each a sequence of two or more categorical or bucketized
            feature names, e.g. ``[("contract", "payment_method")]``.
        max_cross_size: Largest exact cross; larger crosses are hashed into this many buckets.

    Raises:
        DataError: A bucketize or cross entry names a column that cannot be used.
        ConfigError: ``num_buckets`` or ``max_cross_size`` is out of range.
    """
    import numpy as np

    numeric, categorical, taken, filled_values, empty = [], [], set(), {}, []
    for name in feature_names(schema):
        if name not in train.columns:
            raise DataError(f"the feature {name!r} of the schema is not in the train split")
        kind = schema["columns"][name]["kind"]
        values = column_values(train[name], kind)
        if kind in NUMERIC_KINDS:
            finite = values[np.isfinite(values)]
            if len(finite) == 0:
                # Nothing to fit on: the spec (and so the model) leaves it out, and says so.
                logger.warning("the feature %r has no finite value in the train split; excluded from the model", name)
                empty.append(name)
                continue
            fill = float(np.median(finite))
            log = bool(kind == "numeric" and finite.min() >= 0 and
                       float(((finite - finite.mean()) ** 3).mean() / (finite.std() ** 3 + 1e-12)) > log_skew_threshold)
            filled = np.where(np.isfinite(values), values, fill)
            filled_values[name] = filled
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
        "excluded": [c for c, e in schema["columns"].items() if e.get("role") == "excluded" or c in empty],
        "train_rows": int(len(train)),
    }
    # The task's label fields (see _shared/task.py); a schema without a task is binary.
    spec.update(label_spec(train[schema["label"]] if schema["label"] in train.columns else [],
                           schema.get("task") or "binary", schema["label"]))
    # A boolean in a cross needs no configuration: it is bucketized at 0.5 (two buckets).
    crossed = {str(c).strip() for cross in (crosses or [])
               for c in (cross.split("*") if isinstance(cross, str) else cross)}
    bucketize = list(bucketize or [])
    if "*" not in bucketize:
        bucketize += [f["name"] for f in numeric
                      if f["kind"] == "boolean" and f["name"] in crossed and f["name"] not in bucketize]
    buckets = _fit_buckets(bucketize, num_buckets, numeric, categorical, filled_values)
    if buckets:
        spec["buckets"] = buckets
    cross_specs = _fit_crosses(crosses, max_cross_size, numeric, categorical, buckets)
    if cross_specs:
        spec["crosses"] = cross_specs
    logger.info("transform spec: %d numeric (%d log, %d bucketized), %d categorical features, %d crosses",
                len(numeric), sum(f["log"] for f in numeric), len(buckets), len(categorical), len(cross_specs))
    return spec


def _fit_buckets(bucketize, num_buckets: int, numeric: list, categorical: list, filled_values: dict) -> list:
    """Quantile boundaries of the requested numeric features (in spec order)."""
    import numpy as np

    names = [str(n).strip() for n in (bucketize or []) if str(n).strip()]
    if not names:
        return []
    if int(num_buckets) < 2:
        raise ConfigError(f"num_buckets must be at least 2, got {num_buckets!r}")
    numeric_names = [f["name"] for f in numeric]
    if "*" in names:
        wanted = set(numeric_names)
    else:
        categorical_names = {f["name"] for f in categorical}
        for name in names:
            if name in categorical_names:
                raise DataError(f"cannot bucketize {name!r}: it is a categorical feature, not a numeric one")
            if name not in numeric_names:
                raise DataError(f"cannot bucketize {name!r}: it is not a numeric feature of the transform spec")
        wanted = set(names)
    levels = np.arange(1, int(num_buckets)) / int(num_buckets)
    kind_of = {f["name"]: f["kind"] for f in numeric}
    out = []
    for name in numeric_names:
        if name not in wanted:
            continue
        # The model sees float32 values: fit on them and keep float32 boundaries, so a
        # boundary compares the same way in the model as in the spec.
        filled = filled_values[name].astype(np.float32)
        filled = filled[np.isfinite(filled)]
        bounds = np.zeros(0, dtype=np.float32)
        if kind_of[name] == "boolean":
            bounds = np.array([0.5], dtype=np.float32)
        elif len(filled):
            bounds = np.unique(np.quantile(filled.astype(np.float64), levels).astype(np.float32))
            # A boundary at or below the minimum would open a bucket no train row falls in.
            bounds = bounds[np.isfinite(bounds) & (bounds > filled.min())]
        out.append({"name": name, "boundaries": [float(b) for b in bounds]})
    return out


def _fit_crosses(crosses, max_cross_size: int, numeric: list, categorical: list, buckets: list) -> list:
    """Validate the requested crosses and decide each one's size (exact or hashed)."""
    if not crosses:
        return []
    if not 2 <= int(max_cross_size) <= MAX_CROSS_SIZE_LIMIT:
        raise ConfigError(f"max_cross_size must be from 2 to {MAX_CROSS_SIZE_LIMIT}, got {max_cross_size!r}")
    sizes = {f["name"]: len(f["vocab"]) + 1 for f in categorical}
    sizes.update({b["name"]: len(b["boundaries"]) + 1 for b in buckets})
    numeric_names = {f["name"] for f in numeric}
    out = []
    for cross in crosses:
        columns = [str(c).strip() for c in (cross.split("*") if isinstance(cross, str) else cross)]
        label = "*".join(columns)
        if len(columns) < 2:
            raise DataError(f"the cross {label!r} has a single column: a cross needs two or more")
        for i, name in enumerate(columns):
            if name in numeric_names and name not in sizes:
                raise DataError(f"the cross {label!r} uses the numeric feature {name!r}, which is not "
                                f"bucketized: add it to the bucketized columns")
            if name not in sizes:
                raise DataError(f"the cross {label!r} names {name!r}, which is not a feature of the transform spec")
            if name in columns[:i]:
                raise DataError(f"the cross {label!r} names {name!r} more than once")
        product = 1
        for name in columns:
            product *= sizes[name]
        hashed = product > int(max_cross_size)
        out.append({"columns": columns, "size": int(max_cross_size) if hashed else int(product), "hashed": hashed})
    return out


def parse_column_list(value, name: str = "bucketize_columns") -> list:
    """``["a", "b"]`` (or deprecated ``"a, b"``) -> ``["a", "b"]``; ``["*"]`` / ``"*"`` -> ``["*"]``;
    empty -> ``[]`` (component parameters)."""
    from components._shared.values import str_list

    return str_list(value, name)


def parse_crosses(value) -> list:
    """``["a*b", "c*d*e"]`` (or ``[["a", "b"], ...]``, or deprecated ``"a*b, c*d*e"``) ->
    ``[["a", "b"], ["c", "d", "e"]]`` (component parameters)."""
    from components._shared.values import list_items, str_list

    out = []
    for item in list_items(value, "crosses"):
        parts = str_list(item, "crosses") if isinstance(item, (list, tuple)) else str(item).split("*")
        parts = [p.strip() for p in parts]
        if any(parts):
            out.append(parts)
    return out
