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

The train split is read batch by batch (a DataFrame, or a Parquet file or folder of shards),
twice: the first pass counts vocabularies and takes each numeric feature's range, skew and
median (exact moments; the median of a uniform sample of at most ``QUANTILE_SAMPLE`` values,
exact below that), the second the mean and std after imputation and log (exact) and the bucket
boundaries (quantiles of such a sample, exact below ``QUANTILE_SAMPLE`` rows, else within
``QUANTILE_RANK_ERROR`` of rank): memory does not grow with rows, and the spec does not depend
on the batching (see ``components/_shared/sketches.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Optional

from components._shared.errors import ConfigError, DataError
from components._shared.params import PARAMS
from components._shared.schema import (
    NUMERIC_KINDS,
    chunks,
    column_names,
    column_values,
    feature_names,
)
from components._shared.sketches import (
    COUNT_CAP,
    QUANTILE_SAMPLE,
    Moments,
    NumericStream,
    Reservoir,
    ValueCounts,
)
from components._shared.task import MULTICLASS, REGRESSION, label_spec
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
        train: Training split with raw feature columns: a DataFrame, or a Parquet file or folder of
            shards (read batch by batch, twice; see the module docstring).
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

    names = feature_names(schema)
    present = set(column_names(train))
    for name in names:
        if name not in present:
            raise DataError(f"the feature {name!r} of the schema is not in the train split")
    kinds = {name: schema["columns"][name]["kind"] for name in names}
    label = schema["label"]
    label_fit = _LabelFit(schema.get("task") or "binary", label)
    # Pass 1: vocabularies; range, skew and median of each numeric feature.
    first = {name: NumericStream() if kind in NUMERIC_KINDS else ValueCounts(max(COUNT_CAP, 2 * max_vocab))
             for name, kind in kinds.items()}
    rows = 0
    for df in chunks(train, names + ([label] if label in present else [])):
        rows += len(df)
        for name, acc in first.items():
            acc.update(column_values(df[name], kinds[name]))
        if label in present:
            label_fit.update(df[label])
    numeric, categorical, taken, empty = [], [], set(), []
    for name in names:
        acc = first[name]
        if kinds[name] in NUMERIC_KINDS:
            if acc.moments.n == 0:
                # Nothing to fit on: the spec (and so the model) leaves it out, and says so.
                logger.warning("the feature %r has no finite value in the train split; excluded from the model", name)
                empty.append(name)
                continue
            fill = float(np.median(acc.reservoir.sample()))
            log = bool(kinds[name] == "numeric" and acc.lo >= 0 and acc.moments.skew > log_skew_threshold)
            numeric.append({
                "name": name, "input_name": _input_name(name, taken), "kind": kinds[name], "fill": fill, "log": log,
            })
        else:
            counts = acc.series()
            counts = counts[counts >= min_frequency]
            order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:max_vocab]
            vocab = [str(k) for k, _ in order]
            categorical.append({
                "name": name, "input_name": _input_name(name, taken), "vocab": vocab,
                "oov_share_train": float(1 - sum(v for _, v in order) / max(1, rows)),
            })
    # A boolean in a cross needs no configuration: it is bucketized at 0.5 (two buckets).
    crossed = {str(c).strip() for cross in (crosses or [])
               for c in (cross.split("*") if isinstance(cross, str) else cross)}
    bucketize = list(bucketize or [])
    if "*" not in bucketize:
        bucketize += [f["name"] for f in numeric
                      if f["kind"] == "boolean" and f["name"] in crossed and f["name"] not in bucketize]
    wanted = _bucket_names(bucketize, num_buckets, numeric, categorical)
    # Pass 2: mean and std after imputation (and log); a sample of the imputed float32 values
    # of each bucketized feature, and their minimum.
    moments = {f["name"]: Moments() for f in numeric}
    samples = {name: [Reservoir(QUANTILE_SAMPLE), np.inf] for name in wanted}
    if numeric:
        for df in chunks(train, [f["name"] for f in numeric]):
            for f in numeric:
                values = column_values(df[f["name"]], f["kind"])
                filled = np.where(np.isfinite(values), values, f["fill"])
                moments[f["name"]].update(np.log1p(np.maximum(filled, 0)) if f["log"] else filled)
                if f["name"] in samples:
                    # The model sees float32 values: fit on them, so a boundary compares the same
                    # way in the model as in the spec.
                    f32 = filled.astype(np.float32)
                    ok = np.isfinite(f32)
                    sample = samples[f["name"]]
                    sample[0].update(f32, ok)
                    if ok.any():
                        sample[1] = min(sample[1], float(f32[ok].min()))
    for f in numeric:
        std = moments[f["name"]].std
        f.update(mean=float(moments[f["name"]].mean), std=std if std > 1e-12 else 1.0)
    if not numeric and not categorical:
        raise DataError("no features are left to train on after feature selection")
    spec = {
        "version": SPEC_VERSION,
        "label": schema["label"],
        "positive_label": schema.get("positive_label"),
        "numeric": numeric,
        "categorical": categorical,
        "excluded": [c for c, e in schema["columns"].items() if e.get("role") == "excluded" or c in empty],
        "train_rows": int(rows),
    }
    # The task's label fields (see _shared/task.py); a schema without a task is binary.
    spec.update(label_fit.spec())
    buckets = _fit_buckets(wanted, num_buckets, numeric, samples)
    if buckets:
        spec["buckets"] = buckets
    cross_specs = _fit_crosses(crosses, max_cross_size, numeric, categorical, buckets)
    if cross_specs:
        spec["crosses"] = cross_specs
    logger.info("transform spec: %d numeric (%d log, %d bucketized), %d categorical features, %d crosses",
                len(numeric), sum(f["log"] for f in numeric), len(buckets), len(categorical), len(cross_specs))
    return spec


def _bucket_names(bucketize, num_buckets: int, numeric: list, categorical: list) -> set:
    """The numeric features to bucketize; DataError for a name that cannot be."""
    names = [str(n).strip() for n in (bucketize or []) if str(n).strip()]
    if not names:
        return set()
    if int(num_buckets) < 2:
        raise ConfigError(f"num_buckets must be at least 2, got {num_buckets!r}")
    numeric_names = [f["name"] for f in numeric]
    if "*" in names:
        return set(numeric_names)
    categorical_names = {f["name"] for f in categorical}
    for name in names:
        if name in categorical_names:
            raise DataError(f"cannot bucketize {name!r}: it is a categorical feature, not a numeric one")
        if name not in numeric_names:
            raise DataError(f"cannot bucketize {name!r}: it is not a numeric feature of the transform spec")
    return set(names)


def _fit_buckets(wanted: set, num_buckets: int, numeric: list, samples: dict) -> list:
    """Quantile boundaries of the wanted numeric features (in spec order), from each one's
    sample of imputed float32 values and their minimum (``samples``: {name: [Reservoir, min]})."""
    import numpy as np

    if not wanted:
        return []
    levels = np.arange(1, int(num_buckets)) / int(num_buckets)
    out = []
    for f in numeric:
        name = f["name"]
        if name not in wanted:
            continue
        filled, lowest = samples[name][0].sample(), samples[name][1]
        bounds = np.zeros(0, dtype=np.float32)
        if f["kind"] == "boolean":
            bounds = np.array([0.5], dtype=np.float32)
        elif len(filled):
            bounds = np.unique(np.quantile(filled.astype(np.float64), levels).astype(np.float32))
            # A boundary at or below the minimum would open a bucket no train row falls in.
            bounds = bounds[np.isfinite(bounds) & (bounds > np.float32(lowest))]
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


class _LabelFit:
    """The train split's label, batch by batch, for :func:`label_spec`: the multiclass classes,
    the regression label's mean and std (exact moments)."""

    def __init__(self, task: str, label: str):
        self.task, self.label = task, label
        self.classes: set = set()
        self.moments = Moments()
        self.first = None

    def update(self, series) -> None:
        from components._shared.task import class_key, regression_values

        if self.task == MULTICLASS:
            vc = series.value_counts(sort=False, dropna=True)
            self.classes.update(class_key(v) for v, c in vc.items() if c > 0)
        elif self.task == REGRESSION:
            values = regression_values(series, self.label)
            if self.first is None and len(values):
                self.first = values[0]
            self.moments.update(values)

    def spec(self) -> dict:
        import numpy as np

        if self.task != REGRESSION:
            return label_spec(sorted(self.classes), self.task, self.label)
        std = self.moments.std if self.moments.n else float("nan")
        if not std > 0:  # label_spec's own check and sentence, on what the stream saw
            return label_spec(np.array([] if self.first is None else [self.first]), self.task, self.label)
        return {"task": REGRESSION, "label_mean": float(self.moments.mean), "label_std": std}
