"""Ingest: read a table, decide the task, check the label, split it deterministically, write Parquet shards.

Streams: each split is written as a folder of Parquet shards (``io.ShardWriter``) as the rows go
by, so memory does not grow with the table (see :func:`ingest`).

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
from components._shared.task import BINARY, MULTICLASS, REGRESSION, class_key, infer_task
from components.ingest.digest import ContentHash
from components.ingest.label_scan import MAX_DISTINCT, LabelScan, Moments, is_numeric, plain
from components.ingest.result import NO_ID, IngestResult, class_warnings  # noqa: F401 (re-exported)
from components.ingest.source import Source, Widened

logger = logging.getLogger(__name__)




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
    """Return an int8 array of a whole table's splits: 0 train, 1 eval, 2 test.

    The rule of :mod:`components._shared.split` (ingest applies it batch by batch): with an id column
    the split is a hash of the id, so a record never moves between splits as the table grows (and
    BigQuery SQL computes the same); otherwise a seeded uniform draw per row position. ``df`` is a
    pandas DataFrame or a pyarrow Table.
    """
    from components._shared.split import Splitter

    return Splitter(id_column, eval_fraction, test_fraction, seed).assign(df)


FIRST_CHUNK_ROWS = 100_000  # labelled rows an id column is detected on (its missing values: all rows)
SHARD_ROWS = 1_000_000  # rows per Parquet shard of a split


@dataclasses.dataclass
class _Scan:
    rows: int  # all rows, labelled or not
    labels: LabelScan
    first: object  # pyarrow Table: the first labelled rows' label and id-like columns
    id_nulls: dict  # id-like column -> missing values in labelled rows


def _scan(source, label: str) -> _Scan:
    """The first pass: rows, the label's values, and the id-like columns' missing values.

    CSV is read whole (settling every column's type, see ``source.py``); Parquet only the label
    and the id-like columns. Restarts when a CSV column needs a wider type.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from components._shared.schema import id_like_name

    names = source.names
    if names.count(label) != 1:  # refused by name after the scan; count the rows only
        if source.format != "csv":
            return _Scan(source.rows or 0, LabelScan(), None, {})
        while True:
            try:
                return _Scan(sum(b.num_rows for b in source.batches()), LabelScan(), None, {})
            except Widened:
                continue
    candidates = [n for n in names if n != label and names.count(n) == 1 and id_like_name(n)]
    columns = None if source.format == "csv" else [label] + candidates
    while True:
        rows, labels, chunk, taken, nulls = 0, LabelScan(), [], 0, dict.fromkeys(candidates, 0)
        try:
            for batch in source.batches(columns):
                rows += batch.num_rows
                col = batch.column(label)
                labels.update(col)
                if not candidates:
                    continue
                part = batch.select([label] + candidates)
                if col.null_count:
                    part = part.filter(pc.is_valid(col))
                for c in candidates:
                    nulls[c] += part.column(c).null_count
                if taken < FIRST_CHUNK_ROWS:
                    chunk.append(part.slice(0, FIRST_CHUNK_ROWS - taken))
                    taken += chunk[-1].num_rows
        except Widened:
            continue
        first = pa.Table.from_batches(chunk) if chunk else None
        return _Scan(rows, labels, first, nulls)


def _decide_task(scan: LabelScan, label: str, task: str, positive_label: Optional[str]):
    """(task, reason, positive, negative) from the label's distinct values, as from the whole column.

    Raises:
        DataError: The task is ambiguous, or the label does not fit it.
    """
    from components._shared.task import AUTO, check_task_name

    many = f"more than {MAX_DISTINCT}"
    if scan.overflow and check_task_name(task) == AUTO:
        if not scan.numeric:
            raise DataError(f"the label {label!r} has {many} distinct non-numeric values, too many to infer "
                            f"multiclass classification safely: set --task multiclass")
        kind = "non-integer numbers" if not scan.integer_valued else f"{many} numeric values"
        name, reason = REGRESSION, f"the task is regression (inferred: the label {label!r} has {kind})"
    else:
        name, reason = infer_task(scan.distinct(), label, task)
    pos = neg = None
    if name == BINARY:
        if scan.overflow:
            raise DataError(f"the label column {label!r} must have exactly two values for binary "
                            f"classification but has {many}")
        _, pos, neg = encode_label(scan.distinct(), label, positive_label)
    elif name == MULTICLASS and scan.overflow:
        raise DataError(f"the label {label!r} has {many} classes; multiclass classification needs fewer")
    elif name == REGRESSION and scan.bad:
        raise DataError(f"the regression label {label!r} has {scan.bad} value(s) that are not finite "
                        f"numbers, e.g. {scan.bad_example!r}")
    return name, reason, pos, neg


def _encoder(task: str, pos: Optional[str]):
    """The function that turns a batch's (non-missing) raw label array into what ingest writes."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    def keys(col):
        d = plain(col).dictionary_encode()
        return [class_key(v) for v in d.dictionary.to_pandas()], d.indices.to_numpy(zero_copy_only=False)

    if task == BINARY:
        def encode(col):
            k, idx = keys(col)
            return pa.array(np.array([v == pos for v in k], dtype=np.int8)[idx], type=pa.int8())
    elif task == MULTICLASS:
        def encode(col):
            k, idx = keys(col)
            return pa.array(k, type=pa.string()).take(pa.array(idx))
    else:
        def encode(col):
            col = plain(col)
            if is_numeric(col.type):
                return pa.array(col.to_numpy(zero_copy_only=False).astype(np.float64), type=pa.float64())
            return pa.array(pd.to_numeric(col.to_pandas(), errors="coerce").to_numpy(dtype=np.float64))
    return encode


def _distinct_ids(source, id_column: str, label: str) -> int:
    """Distinct values of the id column in labelled rows (only to explain an empty split)."""
    import pyarrow.compute as pc

    seen: set = set()
    for batch in source.batches([label, id_column]):
        ids = batch.column(1).filter(pc.is_valid(batch.column(0)))
        seen.update(pc.unique(ids).to_pylist())
    return len(seen)


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
    """Read ``data_uri``, encode the label, split, and write each split as a folder of Parquet shards.

    Streams in two passes, in memory that does not grow with rows: the first reads the label
    (and, for CSV, settles every column's type), decides the task and the label encoding; the
    second encodes, hashes, splits and writes each batch (``io.ShardWriter``).

    Raises:
        DataError: Missing file or label column, empty table, unusable label, an empty split.
    """
    if data_uri.startswith("bq://"):  # BigQuery splits and counts in SQL; rows stream out (ingest/bigquery.py)
        from components._shared.split import rule_of
        from components.ingest.bigquery import ingest_bigquery

        result = ingest_bigquery(data_uri, label, train_path, eval_path, test_path, id_column=id_column,
                                 positive_label=positive_label, eval_fraction=eval_fraction,
                                 test_fraction=test_fraction, seed=seed, min_rows=min_rows, task=task)
        result.split_rule = rule_of(result.id_column, seed, eval_fraction=eval_fraction,
                                    test_fraction=test_fraction, bigquery=True)
        return result
    import contextlib

    import pyarrow as pa
    import pyarrow.compute as pc

    from components._shared.split import SPLITS, Splitter, check_fractions, rule_of

    if not label:
        raise DataError("no label column was given (set --label)")
    check_fractions(eval_fraction, test_fraction)
    source = Source(data_uri)
    names = source.names
    if names and len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise DataError(f"the data {data_uri} has the column {dup!r} twice")
    if names and label not in names:
        raise DataError(
            f"the label column {label!r} is not in the data {data_uri} "
            f"(columns: {', '.join(names[:20])})"
        )
    scan = _scan(source, label)
    if not names or scan.rows == 0:
        raise DataError(f"the data {data_uri} has no rows")
    if len(names) < 2:
        raise DataError(f"the data {data_uri} has only the label column; there are no features")
    dropped, labelled = scan.labels.missing, scan.labels.rows
    if dropped:
        logger.warning("dropping %d rows whose label %r is missing", dropped, label)
    if labelled < min_rows:
        raise DataError(f"the data {data_uri} has {labelled} labelled rows; at least {min_rows} are needed")
    task, task_reason, pos, neg = _decide_task(scan.labels, label, task, positive_label)
    logger.info("%s", task_reason)
    first = scan.first
    if first is not None:  # an id column with a missing value anywhere is not an identifier
        first = first.drop_columns([c for c, n in scan.id_nulls.items() if n])
    id_column, id_source, how = choose_id_column(first if first is not None else _no_rows(label), label,
                                                 id_column)
    warnings = []
    if id_column:
        logger.info("rows are split %s", how)
    else:
        warnings.append(no_id_warning(how))
        logger.warning("%s", warnings[-1])
    splitter = Splitter(id_column, eval_fraction, test_fraction, seed)
    encode, moments, digest = _encoder(task, pos), Moments(), None
    at = names.index(label)
    counts, seen = [0, 0, 0], [set(), set(), set()]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(io.ShardWriter(p, rows_per_shard=SHARD_ROWS)) for p in (train_path, eval_path, test_path)]
        try:
            for batch in source.batches():
                col = batch.column(at)
                if col.null_count:
                    batch = batch.filter(pc.is_valid(col))
                if not batch.num_rows:
                    continue
                y = encode(batch.column(at))
                batch = batch.set_column(at, label, y)
                digest = digest or ContentHash(batch.schema)
                digest.update(batch)
                if task == REGRESSION:
                    moments.update(y.to_numpy())
                codes = splitter.assign(batch)
                for code in range(3):
                    mask = codes == code
                    if not mask.any():
                        continue
                    part = batch.filter(pa.array(mask))
                    writers[code].write(part)
                    counts[code] += part.num_rows
                    if task != REGRESSION:
                        seen[code].update(pc.unique(part.column(at)).to_pylist())
        except Widened as exc:  # the scan read every column with these types: not expected
            raise DataError(f"a column of {data_uri} changed type between two reads: {exc}") from exc
        for name, code in SPLITS:
            if counts[code] == 0:
                distinct = _distinct_ids(source, id_column, label) if id_column else labelled
                if distinct < labelled:  # the id column is the cause, not the fractions
                    raise DataError(
                        f"the {name} split of {data_uri} is empty: rows are split by the id column {id_column!r}, "
                        f"which has {distinct} distinct value{'s' if distinct != 1 else ''} in {labelled} rows")
                raise DataError(f"the {name} split of {data_uri} is empty ({labelled} rows in all); use more data")
            if name != "eval" and task != REGRESSION and len(seen[code]) < 2:
                raise DataError(f"the {name} split of {data_uri} has only one label value; use more data")
    rows = {name: counts[code] for name, code in SPLITS}
    tail = moments.heavy_tail_warning(label) if task == REGRESSION else None
    if tail:
        warnings.insert(0, tail)
        logger.warning("%s", tail)
    classes = class_warnings(seen, warnings) if task == MULTICLASS else None
    content_hash = digest.hexdigest()
    logger.info("ingested %s: rows %s, %s, positive label %r, hash %s", data_uri, rows, task, pos, content_hash[:12])
    return IngestResult(
        source_uri=data_uri,
        label=label,
        positive_label=pos,
        negative_label=neg,
        rows=rows,
        columns=names,
        content_hash=content_hash,
        dropped_missing_label=dropped,
        id_column=id_column,
        id_column_source=id_source,
        split=how,
        split_rule=rule_of(id_column, seed, eval_fraction=eval_fraction, test_fraction=test_fraction),
        warnings=warnings,
        task=task,
        task_reason=task_reason,
        classes=classes,
    )


def _no_rows(label: str):
    import pyarrow as pa

    return pa.table({label: pa.array([], type=pa.string())})


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
