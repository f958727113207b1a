"""Batch prediction: score a table with a registered version, after checking it looks like its training data.

:func:`predict` reads the table in batches (``reader``), checks it against the version's schema
with the same anomaly checks validate runs (``_shared.anomalies``: a missing feature or a type
change blocks, unseen categories and out-of-range values warn), scores each batch with the
version's model as evaluate, compare and the monitor do (``_shared.scoring``: the transform
spec's encoding, then the TFLite scorer), and writes Parquet with the id column, the task's
predictions (binary ``probability`` and ``class_id`` at the threshold chosen at training; multiclass
``probabilities``, ``class_id`` and ``predicted_label``; regression ``prediction``: see
:func:`_score_columns`), the label when the table has it, and the model name and version on every
row (``writer``: nothing at the output path unless every batch succeeded). A table that carries the
label gets the task's live metrics (binary AUC and the rest; multiclass accuracy, macro F1, log loss;
regression RMSE, MAE, R²).

Memory stays constant: one batch of rows at a time, plus what the summary needs (a score histogram,
a 20k-row sample for drift, and the scores of labelled rows when the table carries the label).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Optional

from components._shared.anomalies import DEFAULT_SEVERITY, check_against_schema
from components._shared.drift import (
    DRIFT_SAMPLE_ROWS,
    PSI_DRIFT,
    population_stability,
    psi_drift,
    psi_of_counts,
)
from components._shared.errors import ConfigError, DataError, ValidationError
from components._shared.params import PARAMS
from components._shared.schema import feature_names, numeric_stats
from components._shared.task import task_of
from components.predict.reader import open_table
from components.predict.resolve import ResolvedModel
from components.predict.writer import atomic_output

logger = logging.getLogger(__name__)

ROW_COLUMN = "row_number"  # written instead of an id column when the table has none


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """Settings of a prediction run; the prediction pipeline's defaults come from here.

    Attributes:
        batch_rows: Rows read, scored and written at a time (Parquet; CSV reads 16 MB blocks).
        shard_rows: Largest Parquet shard of a folder output.
        max_missing_jump / max_unseen_share / max_out_of_range_share: as in validate (a missing rate
            that rises more than this blocks; shares of unseen categories / out-of-range values above
            these warn).
        psi_drift_share: Share of features drifted (PSI) above which a drift warning is raised.
        sample_rows: Rows of the table kept as a uniform sample for drift (PSI, evidently).
    """

    batch_rows: int = 262_144
    shard_rows: int = 5_000_000
    max_missing_jump: float = 0.1
    max_unseen_share: float = 0.01
    max_out_of_range_share: float = 0.01
    psi_drift_share: float = PARAMS.psi_drift_share
    sample_rows: int = DRIFT_SAMPLE_ROWS


@dataclasses.dataclass
class PredictResult:
    summary: dict
    sample: object  # pandas DataFrame: a uniform sample of the feature columns (for the drift report)


def _blocking(anomalies: list) -> list:
    return [a for a in anomalies if a.severity == "blocking"]


def _check(df, schema: dict, severity: dict, cfg: PredictConfig, where: str) -> list:
    found = check_against_schema(df, schema, where, 1, cfg.max_missing_jump, cfg.max_unseen_share,
                                 cfg.max_out_of_range_share)
    for a in found:
        a.severity = severity.get(a.kind, a.severity)
    return found


def _refuse(anomalies: list, uri: str, model: ResolvedModel) -> None:
    blocking = _blocking(anomalies)
    if blocking:
        raise ValidationError(f"the table {uri} does not match what {model.name} v{model.version} was trained on: "
                              + "; ".join(a.message for a in blocking))


def _feature_schema(schema: dict) -> dict:
    """The schema without its label: a table to score need not have one."""
    return {**schema, "columns": {n: e for n, e in schema["columns"].items() if e.get("role") != "label"}}


def _id_column(given: str, columns: list, schema: dict, uri: str) -> Optional[str]:
    if given:
        if given not in columns:
            raise DataError(f"the table {uri} has no id column {given!r}")
        return given
    ids = [n for n, e in schema["columns"].items() if e.get("kind") == "id" and n in columns]
    return ids[0] if ids else None


def _labels(column, schema: dict):
    """(0/1 labels, mask of rows that have a known label value) of a raw label column (Arrow)."""
    import numpy as np
    import pyarrow as pa

    from components._shared.labels import _label_key

    pos = str(schema.get("positive_label"))
    neg = None if schema.get("negative_label") is None else str(schema["negative_label"])
    enc = column.dictionary_encode() if not pa.types.is_dictionary(column.type) else column
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    keys = [None if v is None else _label_key(v) for v in enc.dictionary.to_pylist()]
    is_pos = np.array([k == pos for k in keys] + [False], dtype=np.int8)
    # A value that is neither class is not counted (a schema without its negative value: any other value).
    known = np.array([k is not None and (k in (pos, neg) or neg is None) for k in keys] + [False])
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(enc.is_null().to_numpy(zero_copy_only=False), len(keys), codes)
    return is_pos[codes], known[codes]


def _score_columns(task: str, out, threshold: float, classes: list) -> tuple:
    """(one score per row for the score histogram, the prediction columns) of a batch's model outputs.

    binary: ``probability`` and ``class_id`` (at the threshold); multiclass: ``probabilities``
    (a list per row, in the spec's ``classes`` order), ``class_id`` (the most likely class) and
    ``predicted_label`` (its name), scored by the top probability; regression: ``prediction``, in
    the label's units — the outputs of the served SavedModel under the same names.
    """
    import numpy as np
    import pyarrow as pa

    out = np.asarray(out, dtype=np.float32)
    if task == "multiclass":
        probs = out.reshape(len(out), -1)
        cls = probs.argmax(axis=1).astype(np.int32)
        labels = pa.DictionaryArray.from_arrays(pa.array(cls), pa.array([str(c) for c in classes]))
        cols = [("probabilities", pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), probs.shape[1])),
                ("class_id", pa.array(cls)), ("predicted_label", labels)]
        return probs.max(axis=1), cols
    p = out.reshape(-1)
    if task == "regression":
        return p, [("prediction", pa.array(p))]
    return p, [("probability", pa.array(p)), ("class_id", pa.array((p >= threshold).astype(np.int8)))]


def _output_table(batch, n: int, score_cols: list, id_col: Optional[str], label: Optional[str], first_row: int,
                  name_arr, version_arr):
    import numpy as np
    import pyarrow as pa

    cols, names = [], []
    if id_col:
        cols.append(batch.column(id_col))
        names.append(id_col)
    else:
        cols.append(pa.array(np.arange(first_row, first_row + n, dtype=np.int64)))
        names.append(ROW_COLUMN)
    cols += [c for _, c in score_cols]
    names += [name for name, _ in score_cols]
    if label:
        cols.append(batch.column(label))
        names.append(label)
    zeros = pa.array(np.zeros(n, dtype=np.int32))
    cols += [pa.DictionaryArray.from_arrays(zeros, name_arr), pa.DictionaryArray.from_arrays(zeros, version_arr)]
    names += ["model_name", "model_version"]
    return pa.Table.from_arrays(cols, names=names)


def _task_labels(task: str, column, schema: dict, spec: dict) -> tuple:
    """(labels, mask of rows with a usable label) of a raw label column (Arrow): binary 0/1, multiclass
    class indices (a value that is not one of the model's classes is not counted), regression floats."""
    import numpy as np
    import pandas as pd

    from components._shared.labels import class_indices
    from components._shared.task import class_keys

    if task == "binary":
        return _labels(column, schema)
    values = column.to_pandas()
    if task == "regression":
        y = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        return y, np.isfinite(y)
    keys = class_keys(values)
    known = keys.isin(spec["classes"]).to_numpy()
    y = np.zeros(len(keys), dtype=np.int32)
    y[known] = class_indices(keys[known], spec["classes"])
    return y, known


class _Sample:
    """A uniform sample of at most ``rows`` rows of a stream of DataFrames: every row gets a random key and
    the rows with the smallest keys are kept (bottom-k sampling), so each batch adds only rows below the cut."""

    def __init__(self, rows: int, seed: int = 0):
        import numpy as np

        self.rows, self.kept, self.keys, self.cut = rows, None, None, 1.0
        self.rng = np.random.default_rng(seed)

    def add(self, df) -> None:
        import numpy as np
        import pandas as pd

        u = self.rng.random(len(df))
        below = u < self.cut
        if not below.any():
            return
        part, keys = df.iloc[below], u[below]
        if self.kept is not None:
            part, keys = pd.concat([self.kept, part], ignore_index=True), np.concatenate([self.keys, keys])
        if len(keys) > self.rows:
            keep = np.argpartition(keys, self.rows)[:self.rows]
            part, keys = part.iloc[keep], keys[keep]
            self.cut = float(keys.max())
        self.kept, self.keys = part.reset_index(drop=True), keys

    def frame(self):
        return self.kept


def _prefetched(items):
    """``items``, each produced in a worker thread while the caller works on the previous one: reading,
    decompressing and converting a batch (Arrow, no GIL held) overlaps scoring and writing the last."""
    from concurrent.futures import ThreadPoolExecutor

    it = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, it, None)
        while True:
            item = pending.result()
            if item is None:
                return
            pending = pool.submit(next, it, None)
            yield item


def predict(data_uri: str, model: ResolvedModel, out_uri: str, id_column: str = "",
            severity: Optional[dict] = None, config: Optional[PredictConfig] = None,
            require_durable_output: bool = False) -> PredictResult:
    """Check ``data_uri`` against ``model``'s schema, score it, write the predictions to ``out_uri``.

    Args:
        data_uri: CSV/Parquet file or folder, gs://..., or bq://...
        model: The version to score with (:func:`components.predict.resolve.resolve`).
        out_uri: ``<path>.parquet`` for one file, any other path or gs://... URI for a folder of shards.
        id_column: Column copied to the output to join predictions back; empty: the id column of the
            model's schema when the table has it, else a ``row_number`` column.
        severity: Overrides of the anomaly severities (``{"unseen_categories": "blocking"}``).
        require_durable_output: A compiled (cluster) run: refuse an output path inside the pod.

    Raises:
        DataError / ValidationError: Bad input (one sentence); nothing is then written at ``out_uri``.
    """
    import numpy as np
    import pyarrow as pa

    from components._shared.io import to_pandas
    from components._shared.model import load_scorer
    from components._shared.scoring import model_spec
    from components._shared.transform import encode

    cfg = config or PredictConfig()
    if require_durable_output and out_uri and "://" not in out_uri:
        raise ConfigError(f"the output {out_uri} is a folder inside the pod, which is discarded with it: write to "
                          "gs://... (or leave output_uri empty to write into the pipeline root)")
    sev = {**DEFAULT_SEVERITY, **(severity or {})}
    unknown = sorted(set(sev) - set(DEFAULT_SEVERITY))
    if unknown or any(v not in ("blocking", "warning") for v in sev.values()):
        raise ConfigError(f"invalid anomaly_severity {severity!r} (kinds: {sorted(DEFAULT_SEVERITY)}; levels: "
                          "blocking, warning)")
    spec, schema = model_spec(model.model_dir), _feature_schema(model.schema)
    features = [f["name"] for f in spec["numeric"] + spec["categorical"]]
    needed = list(dict.fromkeys(features + feature_names(schema)))
    stream = open_table(data_uri, cfg.batch_rows)
    missing = [c for c in needed if c not in stream.columns]
    if missing:
        raise ValidationError(
            f"the table {data_uri} lacks the feature column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} that {model.name} v{model.version} was trained on")
    id_col = _id_column(id_column, stream.columns, schema, data_uri)
    label = model.schema.get("label")
    label = label if label and label in stream.columns and label != id_col else None
    scorer = load_scorer(model.model_dir)
    task = task_of(spec).name

    ref_stats = None
    if model.reference_path:
        from components._shared.io import read_parquet

        ref = read_parquet(model.reference_path, columns=features)
        ref_scores, _ = _score_columns(task, scorer(encode(ref, spec)), model.threshold, spec.get("classes") or [])
        ref_stats = numeric_stats(np.asarray(ref_scores, dtype=np.float64))
    bins = np.asarray(ref_stats["bins"]) if ref_stats else np.linspace(0.1, 0.9, 9)
    hist = np.zeros(len(bins) + 1, dtype=np.int64)
    name_arr, version_arr = pa.array([model.name]), pa.array([str(model.version)])
    anomalies: list = []
    first_types: Optional[dict] = None
    sample = _Sample(cfg.sample_rows)
    ys, ps = [], []
    rows, score_sum, started = 0, 0.0, time.time()
    wanted = list(dict.fromkeys(needed + [c for c in (id_col, label) if c]))
    frames = ((b, to_pandas(pa.Table.from_batches([b]).select(needed))) for b in stream.batches(wanted) if b.num_rows)
    with atomic_output(out_uri, cfg.shard_rows) as writer:
        for batch, df in _prefetched(frames):
            types = {c: df[c].dtype.kind for c in needed}
            if first_types is None:
                # The checks validate runs, on the first batch (up to batch_rows rows)...
                anomalies = _check(df, schema, sev, cfg, "data")
                _refuse(anomalies, data_uri, model)
                first_types = types
            elif types != first_types:
                # ... and again on any later batch whose column types differ (text in a numeric column).
                _refuse(_check(df, schema, sev, cfg, f"data (rows from {rows})"), data_uri, model)
            out = np.asarray(scorer(encode(df, spec)), dtype=np.float32)
            p, score_cols = _score_columns(task, out, model.threshold, spec.get("classes") or [])
            writer.write(_output_table(batch, len(p), score_cols, id_col, label, rows, name_arr, version_arr))
            hist += np.bincount(np.searchsorted(bins, p, side="right"), minlength=len(bins) + 1)
            score_sum += float(p.sum(dtype=np.float64))
            if label:
                y, known = _task_labels(task, batch.column(label), model.schema, spec)
                ys.append(y[known])
                ps.append(out.reshape(len(p), -1)[known] if task == "multiclass" else p[known])
            sample.add(df[feature_names(schema)])
            rows += len(p)
        if rows == 0:
            raise DataError(f"the table {data_uri} has no rows: nothing to score")
        seconds = time.time() - started
    files = writer.files  # their final names, once moved into place
    drawn = sample.frame()
    summary = _summary(data_uri, out_uri, files, model, rows, seconds, score_sum, hist, ref_stats, anomalies,
                       drawn, schema, cfg, ys, ps, id_col, label, spec)
    return PredictResult(summary, drawn)


def _summary(data_uri, out_uri, files, model: ResolvedModel, rows, seconds, score_sum, hist, ref_stats,
             anomalies, sample, schema, cfg: PredictConfig, ys, ps, id_col, label, spec: Optional[dict] = None) -> dict:
    import dataclasses as dc

    import numpy as np

    from components._shared.metrics import (
        binary_metrics,
        finite_or_none,
        multiclass_metrics,
        regression_metrics,
    )

    warnings = [a.message for a in anomalies]
    freq = (hist / hist.sum()).tolist()
    scores: dict = {"mean": score_sum / rows, "bin_freq": freq}
    if ref_stats:
        shift = psi_of_counts(ref_stats["bin_freq"], hist)
        scores.update(bins=ref_stats["bins"], training_bin_freq=ref_stats["bin_freq"],
                      training_mean=ref_stats["mean"], psi=shift, shifted=bool(shift > PSI_DRIFT))
        if shift > PSI_DRIFT:
            warnings.append(f"the score distribution shifted from training (PSI {shift:.3f} > {PSI_DRIFT}; mean "
                            f"{scores['mean']:.3f} vs {ref_stats['mean']:.3f} at training)")
    psi = population_stability(sample, schema)
    gate = psi_drift(psi, PSI_DRIFT)
    if gate["share"] > cfg.psi_drift_share:
        warnings.append(f"{gate['share']:.0%} of features drifted from the training data (PSI > {PSI_DRIFT}): "
                        + ", ".join(gate["drifted"][:10]))
    live = None
    task = task_of(spec).name
    if label and task != "binary":
        y = np.concatenate(ys) if ys else np.zeros(0)
        if len(y):
            p = np.concatenate(ps)
            live = (multiclass_metrics(y, p, spec["classes"]) if task == "multiclass" else regression_metrics(y, p))
            live.pop("confusion", None)
            live = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in live.items()}
    elif label:
        y = np.concatenate(ys) if ys else np.zeros(0, dtype=np.int8)
        p = np.concatenate(ps) if ps else np.zeros(0, dtype=np.float32)
        if len(y):
            live = binary_metrics(y, p, model.threshold)
            live.pop("confusion", None)
            live = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in live.items()}
            live["auc_at_training"] = model.auc_at_training
            live["auc_decay"] = (model.auc_at_training - live["auc"]
                                 if model.auc_at_training is not None and live.get("auc") is not None else None)
    return {
        "data": data_uri,
        "output": out_uri,
        "files": files,
        "model_name": model.name,
        "model_version": model.version,
        "model_requested": model.requested,
        "task": task,
        "threshold": model.threshold if task == "binary" else None,
        "id_column": id_col or ROW_COLUMN,
        "label_column": label,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "scores": scores,
        "drift": {"psi": psi, "share": gate["share"], "drifted": gate["drifted"], "sample_rows": len(sample)},
        "anomalies": [dc.asdict(a) for a in anomalies],
        "warnings": warnings,
        "live_metrics": live,
    }
