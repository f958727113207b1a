"""Scoring a trained model folder (``model.keras`` + ``transform_spec.json``, as train writes it and
the registry keeps under ``model/``) on raw rows: evaluate, compare (the champion, re-scored)
and the monitor (performance decay) all score this way.

A split is scored batch by batch (:func:`score_split`): only the columns the models need, plus
the few a caller keeps (slice columns), are read, and only labels, outputs and the kept columns
are held, never the whole split as one DataFrame. The outputs equal scoring the whole split at
once, row for row: batches are ``SCORE_ROWS`` consecutive rows, a multiple of the scorers' own
chunks, and each batch is typed as :func:`components._shared.io.read_parquet` types the whole split.

The mapping from raw columns to model inputs is ``_shared.transform.encode`` and the model format
is ``_shared.model``; both are imported when called, so importing this module costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any, Optional

from components._shared import io

# Rows scored at a time: a multiple of the Keras (8192) and TFLite (4096) scorers' own chunks, so
# each row is scored in the same chunk of rows as when the whole split is scored at once.
SCORE_ROWS = 131_072


def score(model_dir: str, df, spec: Optional[dict] = None):
    """Outputs of a saved model for the rows of ``df`` (TFLite scorer when present): binary
    probabilities (N,), multiclass probabilities (N, K), regression predictions (N,).

    Args:
        model_dir: A trained model folder.
        df: Raw rows (pandas) holding every feature column of the transform spec.
        spec: The transform spec; read from ``model_dir`` when not given.
    """
    return scorer(model_dir, spec)(df)


def scorer(model_dir: str, spec: Optional[dict] = None) -> Callable:
    """``score(df) -> outputs`` of a saved model, as :func:`score` returns them; the model is
    loaded once, on the first call, so a split scored batch by batch loads it once."""
    from components._shared.model import load_scorer
    from components._shared.transform import encode

    loaded: dict = {}

    def score_rows(df):
        if not loaded:
            loaded["spec"] = spec or model_spec(model_dir)
            loaded["score"] = load_scorer(model_dir)
        return as_task_output(loaded["score"](encode(df, loaded["spec"])), loaded["spec"])

    return score_rows


def as_task_output(outputs, spec: dict):
    """A scorer's outputs in the task's shape: (N, K) class probabilities in the spec's class order
    for multiclass (a flat TFLite output is reshaped), (N,) otherwise."""
    import numpy as np

    from components._shared.task import MULTICLASS, task_of

    out = np.asarray(outputs)
    if task_of(spec).name == MULTICLASS:
        return out.reshape(-1, len(spec["classes"]))
    return out.reshape(-1)


def has_model(model_dir: str) -> bool:
    """Whether ``model_dir`` holds a trained model (a registered version may lack one)."""
    from components._shared.model import MODEL_FILE

    return os.path.exists(os.path.join(model_dir, MODEL_FILE))


def model_spec(model_dir: str) -> dict:
    """The transform spec saved beside a trained model."""
    from components._shared.model import SPEC_FILE

    return io.read_json(os.path.join(model_dir, SPEC_FILE))


def feature_columns(spec: dict) -> list:
    """The raw columns a transform spec encodes."""
    return [f["name"] for f in spec["numeric"] + spec["categorical"]]


@dataclasses.dataclass
class ScoredSplit:
    """What :func:`score_split` keeps of a split: per-row arrays in the split's row order."""

    labels: Any  # numpy, as components._shared.labels.labels gives them
    outputs: dict  # scorer name -> outputs (N,) or (N, K)
    errors: dict  # scorer name -> the exception a tolerated scorer raised (it has no outputs)
    kept: Any  # pandas DataFrame of the kept columns present in the split, typed as read_parquet types them
    rows: int


def score_split(path: str, spec: dict, scorers: dict, keep: Optional[list] = None,
                extra_columns: Optional[list] = None, tolerate: tuple = (),
                batch_rows: Optional[int] = None) -> ScoredSplit:
    """Score a split (a Parquet file or folder of shards) batch by batch.

    Reads the spec's features and label, ``extra_columns`` (other scorers' features) and
    ``keep``; a column the split lacks is not read (encoding then names the missing feature, as
    it does for a whole split). Memory holds one batch plus labels, outputs and the kept columns.

    Args:
        spec: The transform spec whose label is read.
        scorers: name -> ``score(df) -> outputs`` called on each batch (e.g. :func:`scorer`).
        keep: Columns kept for every row (slice columns), returned as one DataFrame.
        extra_columns: Further columns the scorers need.
        tolerate: Names of scorers whose exception is recorded in ``errors`` (and that scorer
            is not called again) instead of raised: a champion that cannot score today's data.
        batch_rows: Rows scored at a time (a multiple of 8192); ``SCORE_ROWS`` when None.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from pandas.api.types import union_categoricals

    from components._shared.errors import DataError
    from components._shared.labels import labels

    present = set(io.read_parquet_schema_names(path))
    missing = [c for c in feature_columns(spec) + [spec["label"]] if c not in present]
    if missing:
        raise DataError(f"the data {path} has no column {missing[0]!r}, which the transform spec needs")
    wanted = feature_columns(spec) + [spec["label"]] + list(extra_columns or []) + list(keep or [])
    columns = [c for c in dict.fromkeys(wanted) if c in present]
    kept_names = [c for c in dict.fromkeys(keep or []) if c in present]
    parts: dict = {name: [] for name in scorers}
    errors: dict = {}
    ys, kept_chunks, rows = [], {c: [] for c in kept_names}, 0
    for table, df in _split_batches(path, columns, batch_rows or SCORE_ROWS):
        for name, score_rows in scorers.items():
            if name in errors:
                continue
            try:
                parts[name].append(score_rows(df))
            except Exception as exc:
                if name not in tolerate:
                    raise
                errors[name] = exc  # the caller says what it means (compare: a reason, and a warning)
        try:
            ys.append(labels(df, spec))
        except DataError:  # say it as for the whole split (rows counted over all of it): read the label alone
            labels(io.read_parquet(path, columns=[spec["label"]]), spec)
            raise
        for c in kept_names:  # text as the batch's categorical (a byte or two a row), other types as read
            kept_chunks[c].append(df[c] if isinstance(df[c].dtype, pd.CategoricalDtype)
                                  else table.column(c).combine_chunks())
        rows += len(df)
    outputs = {name: np.concatenate(p) for name, p in parts.items() if name not in errors}
    kept = pd.DataFrame(index=pd.RangeIndex(rows))
    for c, ch in kept_chunks.items():  # typed as read_parquet types the whole column (an int with nulls: float64)
        kept[c] = (union_categoricals(ch, ignore_order=True) if isinstance(ch[0], pd.Series)
                   else io.to_pandas(pa.table({c: pa.chunked_array(ch)}))[c])
        ch.clear()
    return ScoredSplit(np.concatenate(ys), outputs, errors, kept, rows)


def _split_batches(path: str, columns: list, batch_rows: int) -> Iterator[tuple]:
    """(arrow table, pandas frame) of ``batch_rows`` consecutive rows of a split at a time (the last
    shorter; one empty batch for an empty split), in order, across shard boundaries.

    Each frame is typed as :func:`io.read_parquet` types the whole split: an integer column with a
    missing value anywhere is float64 in every batch, a boolean one object.
    """
    import pyarrow as pa

    if batch_rows % 8192:
        raise ValueError("batch_rows must be a multiple of 8192 (the scorers' chunk)")
    floats, objects = io.columns_with_nulls(path, columns)

    def frame(table):
        for c in floats:
            table = table.set_column(table.schema.get_field_index(c), c, table.column(c).cast(pa.float64()))
        df = io.to_pandas(table)
        for c in objects:
            df[c] = df[c].astype(object)
        return table, df

    buf, buffered, done = [], 0, False
    for batch in io.iter_parquet_batches(path, columns=columns, batch_rows=batch_rows):
        buf.append(batch)
        buffered += batch.num_rows
        while buffered >= batch_rows:
            table = pa.Table.from_batches(buf)
            yield frame(table.slice(0, batch_rows))
            done = True
            rest = table.slice(batch_rows)
            buf, buffered = rest.to_batches(), rest.num_rows
    if buffered:
        yield frame(pa.Table.from_batches(buf))
    elif not done:
        yield frame(io.read_parquet_arrow(path, columns=columns))
