"""Ingest: read a table, decide the task, check the label, split it deterministically, write Parquet.

The task (binary, multiclass, regression; given or inferred, see ``_shared/task.py``) is decided
here, once, and the label normalised for it: binary 0/1 (int8, the mapping of which raw value is
the positive class recorded), multiclass the class value as a string, regression float64.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from components._shared import io
from components._shared.errors import DataError
from components._shared.labels import encode_label
from components._shared.params import PARAMS
from components._shared.task import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    class_keys,
    heavy_tail_warning,
    infer_task,
    regression_values,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class IngestResult:
    source_uri: str
    label: str
    positive_label: Optional[str]  # binary only
    negative_label: Optional[str]
    rows: dict
    columns: list
    content_hash: str
    dropped_missing_label: int
    id_column: Optional[str] = None  # the column the split is hashed on
    id_column_source: Optional[str] = None  # "given" | "detected" | None (split by row position)
    split: str = ""  # how rows were assigned to splits, in a sentence
    warnings: list = dataclasses.field(default_factory=list)
    task: str = BINARY
    task_reason: str = ""  # how the task was decided, in a sentence
    classes: Optional[list] = None  # multiclass: the train split's classes, sorted as strings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_ID = "none"  # id_column value that turns detection off: a seeded split by row position


def choose_id_column(table, label: str, id_column: Optional[str]) -> tuple[Optional[str], Optional[str], str]:
    """(id column, "given" | "detected" | None, a sentence saying how rows are split).

    A given column wins; ``"none"`` means no id column; otherwise the identifier column
    validate would see (:func:`components._shared.schema.detect_id_column`) when there is one.
    """
    from components._shared.schema import detect_id_column

    given = (id_column or "").strip()
    if given.lower() == NO_ID:
        return None, None, "by row position (seeded), as id_column is 'none'"
    if given:
        return given, "given", f"by a hash of the given id column {given!r}"
    found, reason = detect_id_column(table, label)
    if found:
        return found, "detected", (f"by a hash of the id column {found!r}, detected ({reason}); "
                                   "set id_column to choose another, or 'none' to split by row position")
    return None, None, "by row position (seeded): no id column was given or found"


def no_id_warning(how: str) -> str:
    """The warning of a split without an id column."""
    return (f"rows are split {how}; when rows are inserted, removed or reordered, rows the champion trained on "
            "can land in this run's test split, so the champion comparison may favour the champion: "
            "set id_column to a column that identifies a row")


def split_assignments(df, id_column: Optional[str], eval_fraction: float, test_fraction: float, seed: int):
    """Return an int8 array: 0 train, 1 eval, 2 test.

    With an id column the split is a hash of the id, so a record never moves between
    splits as the table grows; otherwise a seeded uniform draw per row position (the same row
    position gets the same split, whatever row is there). ``df`` is a pandas DataFrame or a
    pyarrow Table.
    """
    import numpy as np
    import pandas as pd

    if not (0 < eval_fraction < 1 and 0 < test_fraction < 1 and eval_fraction + test_fraction < 1):
        raise DataError(
            f"eval_fraction ({eval_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and sum to less than 1"
        )
    names = list(df.columns) if isinstance(df, pd.DataFrame) else df.column_names
    n = len(df) if isinstance(df, pd.DataFrame) else df.num_rows
    if id_column:
        if id_column not in names:
            raise DataError(f"the id column {id_column!r} is not in the data (columns: {names[:20]})")
        ids = df[id_column] if isinstance(df, pd.DataFrame) else df.column(id_column).to_pandas()
        hashed = pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), categorize=False)
        u = (hashed % np.uint64(1_000_003)).astype(np.float64) / 1_000_003.0
    else:
        u = np.random.default_rng(seed).random(n)
    out = np.zeros(n, dtype=np.int8)
    out[u >= 1.0 - test_fraction - eval_fraction] = 1
    out[u >= 1.0 - test_fraction] = 2
    return out


def ingest(
    data_uri: str,
    label: str,
    train_path: str,
    eval_path: str,
    test_path: str,
    id_column: Optional[str] = None,
    positive_label: Optional[str] = None,
    eval_fraction: float = PARAMS.eval_fraction,
    test_fraction: float = PARAMS.test_fraction,
    seed: int = PARAMS.seed,
    min_rows: int = PARAMS.min_rows,
    task: str = PARAMS.task,
) -> IngestResult:
    """Read ``data_uri``, encode the label, split, and write three Parquet files.

    Works on Arrow tables end to end (no per-row Python objects), so a 1M-row CSV
    goes through in about a second.

    Raises:
        DataError: Missing file or label column, empty table, unusable label, an empty split.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not label:
        raise DataError("no label column was given (set --label)")
    table = io.read_arrow(data_uri)
    if table.num_columns == 0 or table.num_rows == 0:
        raise DataError(f"the data {data_uri} has no rows")
    names = [io.clean_column_name(c) for c in table.column_names]
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise DataError(f"the data {data_uri} has the column {dup!r} twice")
    table = table.rename_columns(names)
    if label not in names:
        raise DataError(
            f"the label column {label!r} is not in the data {data_uri} "
            f"(columns: {', '.join(names[:20])})"
        )
    if table.num_columns < 2:
        raise DataError(f"the data {data_uri} has only the label column; there are no features")
    valid = pc.is_valid(table.column(label))
    dropped = int(table.num_rows - pc.sum(valid).as_py()) if table.num_rows else 0
    if dropped:
        logger.warning("dropping %d rows whose label %r is missing", dropped, label)
        table = table.filter(valid)
    if table.num_rows < min_rows:
        raise DataError(f"the data {data_uri} has {table.num_rows} labelled rows; at least {min_rows} are needed")
    raw = table.column(label).to_pandas()
    task, task_reason = infer_task(raw, label, task)
    logger.info("%s", task_reason)
    warnings, pos, neg = [], None, None
    if task == BINARY:
        y, pos, neg = encode_label(raw, label, positive_label)
        column = pa.array(y, type=pa.int8())
    elif task == MULTICLASS:
        y = class_keys(raw).to_numpy(dtype=object)
        column = pa.array(y, type=pa.string())
    else:
        y = regression_values(raw, label)
        column = pa.array(y, type=pa.float64())
        tail = heavy_tail_warning(y, label)
        if tail:
            warnings.append(tail)
            logger.warning("%s", tail)
    table = table.set_column(names.index(label), label, column)
    digest = io.content_hash(table)
    id_column, id_source, how = choose_id_column(table, label, id_column)
    if id_column:
        logger.info("rows are split %s", how)
    else:
        warnings.append(no_id_warning(how))
        logger.warning("%s", warnings[-1])
    split = split_assignments(table, id_column, eval_fraction, test_fraction, seed)
    rows = {}
    for name, code, path in (("train", 0, train_path), ("eval", 1, eval_path), ("test", 2, test_path)):
        mask = split == code
        part = table.filter(pa.array(mask))
        if part.num_rows == 0:
            distinct = len(pc.unique(table.column(id_column))) if id_column else table.num_rows
            if distinct < table.num_rows:  # the id column is the cause, not the fractions
                raise DataError(
                    f"the {name} split of {data_uri} is empty: rows are split by the id column {id_column!r}, "
                    f"which has {distinct} distinct value{'s' if distinct != 1 else ''} in {table.num_rows} rows")
            raise DataError(f"the {name} split of {data_uri} is empty ({table.num_rows} rows in all); use more data")
        if name != "eval" and task != REGRESSION and len(np.unique(y[mask])) < 2:
            raise DataError(f"the {name} split of {data_uri} has only one label value; use more data")
        io.write_arrow_parquet(part, path)
        rows[name] = int(part.num_rows)
    classes = None
    if task == MULTICLASS:
        classes = sorted(set(y[split == 0]))
        for name, code in (("eval", 1), ("test", 2)):
            unseen = sorted(set(y[split == code]) - set(classes))
            if unseen:
                warnings.append(f"the {name} split has label class(es) the train split lacks: "
                                f"{', '.join(map(repr, unseen[:5]))}")
                logger.warning("%s", warnings[-1])
    logger.info("ingested %s: rows %s, %s, positive label %r, hash %s", data_uri, rows, task, pos, digest[:12])
    return IngestResult(
        source_uri=data_uri,
        label=label,
        positive_label=pos,
        negative_label=neg,
        rows=rows,
        columns=names,
        content_hash=digest,
        dropped_missing_label=dropped,
        id_column=id_column,
        id_column_source=id_source,
        split=how,
        warnings=warnings,
        task=task,
        task_reason=task_reason,
        classes=classes,
    )


def preflight(data_uri: str, label: str) -> None:
    """Cheap checks before a run starts: the data exists, is not empty, and has the label column.

    Reads only file listings and headers (Parquet schema, the first CSV line), so a CLI can
    fail in a second with a clear sentence instead of inside a pipeline task.
    """
    if not label:
        raise DataError("no label column was given (set --label)")
    if data_uri.startswith("bq://") or ("://" in data_uri and not data_uri.startswith("file://")):
        return  # remote sources are checked by the ingest task itself
    files, fmt = io.list_shards(data_uri)
    first = files[0]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(first)
        except Exception as exc:
            raise DataError(f"could not read {first} as Parquet: {exc}") from exc
        names = [io.clean_column_name(c) for c in meta.names]
        if pq.ParquetFile(first).metadata.num_rows == 0 and len(files) == 1:
            raise DataError(f"the data file {first} has no rows")
    else:
        names, has_rows = io.csv_header(first)
        if not has_rows and len(files) == 1:
            raise DataError(f"the data file {first} has a header but no rows")
    if label not in names:
        raise DataError(f"the label column {label!r} is not in the data {data_uri} (columns: {', '.join(names[:20])})")
