"""Datasets as folders of Parquet shards: the writer, and readers that take a file or a folder.

A split (ingest's train/eval/test, engineer's outputs) is a folder ``part-00000.parquet``,
``part-00001.parquet``, ... written by :class:`ShardWriter` as rows stream, so no step holds a
whole split; a single Parquet file (an older run, a user's file) stays readable everywhere.
Import these through :mod:`components._shared.io`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Optional

from components._shared.errors import DataError

logger = logging.getLogger(__name__)


def _fs_and_path(uri: str):
    """(pyarrow filesystem or None, path, fsspec filesystem or None) for a local path or an fsspec URI."""
    if "://" in uri and not uri.startswith("file://"):
        try:
            from pyarrow.fs import FSSpecHandler, PyFileSystem

            from components._shared.object_store import filesystem  # also minio://, s3://
            fs, path = filesystem(uri)
        except ImportError as exc:  # pragma: no cover - depends on image
            raise DataError(f"reading {uri} needs fsspec (gcsfs for gs://, s3fs for s3:// and minio://): "
                            f"{exc}") from exc
        return PyFileSystem(FSSpecHandler(fs)), path, fs
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return None, path, None


def to_pandas(table):
    """Arrow -> pandas with strings as categoricals (no per-row Python strings) and dates as datetime64."""
    import pyarrow as pa

    cols = []
    for i, field in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            col = col.dictionary_encode()
        cols.append(col)
    table = pa.table(cols, names=table.column_names)
    return table.to_pandas(split_blocks=True, self_destruct=True, date_as_object=False)


PARQUET_SUFFIXES = (".parquet", ".pq")
SHARD_NAME = "part-{:05d}.parquet"
SHARD_ROWS = 1_000_000  # rows per shard a ShardWriter writes by default
ROW_GROUP_ROWS = 131_072  # rows per Parquet row group a ShardWriter writes


def parquet_files(path: str) -> list[str]:
    """The Parquet files of a dataset: a file -> [file]; a folder of shards -> its sorted *.parquet.

    A split written by :class:`ShardWriter` is a folder (``part-00000.parquet``, ...); a single
    Parquet file (an older run, a user's file) stays readable everywhere. Works for local paths
    and fsspec URIs (gs://, s3://, ...); a URI's files come back as URIs.

    Raises:
        DataError: The path does not exist, or the folder holds no Parquet file.
    """
    _, p, fs = _fs_and_path(path)
    if fs is None:
        if os.path.isdir(p):
            files = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.lower().endswith(PARQUET_SUFFIXES) and not f.startswith((".", "_")))
        elif os.path.exists(p):
            return [p]
        else:
            raise DataError(f"the data path {path} does not exist")
    else:
        if not fs.exists(p):
            raise DataError(f"the data path {path} does not exist")
        if not fs.isdir(p):
            return [path]
        scheme = path.split("://", 1)[0]
        files = sorted(f"{scheme}://{f}" for f in fs.ls(p, detail=False)
                       if f.lower().endswith(PARQUET_SUFFIXES) and not os.path.basename(f).startswith((".", "_")))
    if not files:
        raise DataError(f"the folder {path} holds no Parquet files")
    return files


def open_parquet(file: str):
    """A pyarrow ParquetFile for one local or fsspec file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pa_fs, p, _ = _fs_and_path(file)
    try:
        return pq.ParquetFile(pa_fs.open_input_file(p) if pa_fs is not None else p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"could not read {file} as Parquet: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from exc


def _check_columns(path: str, columns: Optional[list[str]]) -> None:
    if columns is not None:
        names = read_parquet_schema_names(path)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"the data {path} has no column {missing[0]!r}")


def parquet_num_rows(path: str) -> int:
    """Rows of a Parquet file or folder of shards, from the footers (no data read)."""
    return sum(open_parquet(f).metadata.num_rows for f in parquet_files(path))


def _unified_schema(path: str, files: list, columns: Optional[list[str]]):
    """The schema every part of a multi-file dataset is read as: the shards' schemas unified as
    :func:`read_parquet_arrow` concatenates them (``promote_options="permissive"``: int64 and double
    -> double, a column of nulls takes the other shards' type), from the footers alone. None for one
    file (nothing to unify).

    Raises:
        DataError: A shard's columns differ from the first's, or two types cannot be unified.
    """
    import pyarrow as pa

    if len(files) < 2:
        return None
    schemas, names = [], None
    for f in files:
        with open_parquet(f) as pf:
            schema = pf.schema_arrow
        if names is None:
            names = schema.names
        elif schema.names != names:
            raise DataError(f"the shard {f} has columns {schema.names} but the first shard of {path} has {names}")
        schemas.append(schema if columns is None else pa.schema([schema.field(c) for c in columns]))
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"the shards of {path} disagree on column types: {exc}") from exc
    return unified.with_metadata(schemas[0].metadata)


def _as_schema(part, schema, path: str):
    """``part`` (a RecordBatch or Table) cast to ``schema``'s types, in ``part``'s column order."""
    import pyarrow as pa

    if schema is None:
        return part
    target = pa.schema([schema.field(n) for n in part.schema.names], metadata=schema.metadata)
    if part.schema.equals(target):
        return part
    try:
        return part.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"the shards of {path} disagree on column types: {exc}") from exc


def iter_parquet_batches(path: str, columns: Optional[list[str]] = None,
                         batch_rows: int = ROW_GROUP_ROWS) -> Iterator:
    """Yield pyarrow RecordBatches of at most ``batch_rows`` rows of a Parquet file or folder of
    shards, shard by shard, in order: memory holds about one row group, whatever the rows.

    Every batch has the types :func:`read_parquet_arrow` gives the whole dataset (shards whose
    types differ are unified as it unifies them: see :func:`_unified_schema`).

    Raises:
        DataError: A requested column is missing, or a shard's columns or types disagree with the others'.
    """
    _check_columns(path, columns)
    files = parquet_files(path)
    schema = _unified_schema(path, files, columns)
    for f in files:
        pf = open_parquet(f)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True):
            yield _as_schema(batch, schema, path)


def read_parquet_arrow(path: str, columns: Optional[list[str]] = None):
    """A Parquet file or folder of shards as one pyarrow Table (all of it in memory).

    Raises:
        DataError: A requested column is missing, or the shards disagree on columns or types.
    """
    import pyarrow as pa

    _check_columns(path, columns)
    # ParquetFile, not read_table: read_table imports pyarrow.dataset (~0.3 s of every step's start).
    tables = [open_parquet(f).read(columns=columns) for f in parquet_files(path)]
    if len(tables) == 1:
        return tables[0]
    names = tables[0].schema.names
    bad = next((i for i, t in enumerate(tables) if t.schema.names != names), None)
    if bad is not None:
        raise DataError(f"the shard {parquet_files(path)[bad]} has columns {tables[bad].schema.names} "
                        f"but the first shard of {path} has {names}")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"the shards of {path} disagree on column types: {exc}") from exc


def read_parquet(path: str, columns: Optional[list[str]] = None):
    """Read a Parquet file or folder of shards into pandas (strings as categoricals).

    Holds the whole dataset in memory: a step that must stay bounded reads
    :func:`iter_parquet_batches` or :func:`sample_parquet` instead.

    Raises:
        DataError: A requested column is not in the data.
    """
    return to_pandas(read_parquet_arrow(path, columns=columns))


def sample_parquet(path: str, rows: int, seed: int = 0, columns: Optional[list[str]] = None):
    """At most ``rows`` random rows (of ``columns``) of a Parquet file or folder of shards, as pandas
    (strings as categoricals).

    Row positions are drawn over the whole dataset, then read one row group at a time, keeping
    only the drawn rows: memory holds one row group plus the sample. For one file the rows are
    the ones earlier versions returned for the same seed.
    """
    import numpy as np
    import pyarrow as pa

    _check_columns(path, columns)
    files = parquet_files(path)
    sizes = []
    for f in files:  # footers first; a reader is kept open only while its rows are read
        with open_parquet(f) as pf:
            sizes.append([pf.metadata.row_group(rg).num_rows for rg in range(pf.metadata.num_row_groups)])
    total = sum(map(sum, sizes))
    if total <= rows:
        return read_parquet(path, columns=columns)
    idx = np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))
    schema = _unified_schema(path, files, columns)
    parts, start = [], 0
    for f, groups in zip(files, sizes, strict=True):
        lo, hi = np.searchsorted(idx, [start, start + sum(groups)])
        if hi == lo:
            start += sum(groups)
            continue
        with open_parquet(f) as pf:
            for rg, n in enumerate(groups):
                lo, hi = np.searchsorted(idx, [start, start + n])
                if hi > lo:
                    part = pf.read_row_group(rg, columns=columns).take(pa.array(idx[lo:hi] - start))
                    parts.append(_as_schema(part, schema, path))
                start += n
    return to_pandas(pa.concat_tables(parts))


def columns_with_nulls(path: str, columns: list) -> tuple[list, list]:
    """(integer columns, boolean columns) of ``columns`` with a missing value anywhere in the split:
    pandas makes them float64 and object for the whole split. From the Parquet statistics; a
    column without them is read on its own."""
    import pyarrow as pa

    files = parquet_files(path)
    schema = open_parquet(files[0]).schema_arrow
    candidates = [c for c in columns
                  if pa.types.is_integer(schema.field(c).type) or pa.types.is_boolean(schema.field(c).type)]
    nulls = dict.fromkeys(candidates, 0)
    unknown = set()
    for f in files:
        with open_parquet(f) as pf:
            meta = pf.metadata
            index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
            for rg in range(meta.num_row_groups):
                group = meta.row_group(rg)
                for c in candidates:
                    stats = group.column(index[c]).statistics if c in index else None
                    if stats is None or not stats.has_null_count:
                        unknown.add(c)
                    else:
                        nulls[c] += stats.null_count
    for c in unknown:
        nulls[c] = sum(b.column(0).null_count for b in iter_parquet_batches(path, columns=[c]))
    with_nulls = [c for c in candidates if nulls[c]]
    return ([c for c in with_nulls if pa.types.is_integer(schema.field(c).type)],
            [c for c in with_nulls if pa.types.is_boolean(schema.field(c).type)])


def read_parquet_schema_names(path: str) -> list:
    """Column names of a Parquet file or folder of shards (the first shard's footer; no data read)."""
    return list(open_parquet(parquet_files(path)[0]).schema_arrow.names)


class ShardWriter:
    """Write a dataset as a folder of Parquet shards while it streams.

    ``folder/part-00000.parquet``, ``part-00001.parquet``, ... (zstd), each at most
    ``rows_per_shard`` rows in row groups of ``row_group_rows``: memory holds at most one row
    group of buffered rows. Every shard has the schema of the first batch written (a later
    batch is cast to it). Closing a writer that saw a schema but no rows writes one empty shard,
    so the folder always says what its columns are.

    Use as a context manager; ``close()`` returns the rows written. On an exception inside the
    ``with`` block the shards written so far are removed.

    Example:
        with io.ShardWriter(train_path) as out:
            for batch in batches:
                out.write(batch)
        rows = out.rows
    """

    def __init__(self, folder: str, rows_per_shard: int = SHARD_ROWS, row_group_rows: int = ROW_GROUP_ROWS,
                 schema=None):
        if rows_per_shard < 1 or row_group_rows < 1:
            raise ValueError("rows_per_shard and row_group_rows must be positive")
        self.folder = folder
        self.rows_per_shard = rows_per_shard
        self.row_group_rows = min(row_group_rows, rows_per_shard)
        self.schema = schema
        self.rows = 0
        self.files: list[str] = []
        self._pa_fs, self._path, self._fs = _fs_and_path(folder)
        self._writer = None
        self._shard_rows = 0  # rows in the open shard (written and buffered)
        self._buffer: list = []
        self._buffered = 0
        self._closed = False
        if self._fs is None:
            if os.path.isfile(self._path):
                raise DataError(f"cannot write shards to {folder}: it is a file")
            os.makedirs(self._path, exist_ok=True)
        else:
            self._fs.makedirs(self._path, exist_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, data) -> None:
        """Append a pyarrow RecordBatch or Table (its rows in order)."""
        import pyarrow as pa

        if self._closed:
            raise ValueError(f"the shard writer of {self.folder} is closed")
        if isinstance(data, pa.Table):
            for batch in data.to_batches():
                self.write(batch)
            return
        if self.schema is None:
            self.schema = data.schema
        elif not data.schema.equals(self.schema):
            if data.schema.names != self.schema.names:
                raise DataError(f"cannot write columns {data.schema.names} to {self.folder}, "
                                f"whose shards have {self.schema.names}")
            try:
                data = data.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"cannot write a batch to {self.folder}: its column types differ "
                                f"from the first batch's ({exc})") from exc
        offset = 0
        while offset < data.num_rows:
            room = self.rows_per_shard - self._shard_rows
            take = min(room, data.num_rows - offset)
            self._buffer.append(data.slice(offset, take))
            self._buffered += take
            self._shard_rows += take
            offset += take
            if self._buffered >= self.row_group_rows:
                self._flush()
            if self._shard_rows >= self.rows_per_shard:
                self._flush()
                self._finish_shard()

    def _open(self):
        import pyarrow.parquet as pq

        name = SHARD_NAME.format(len(self.files))
        if self._fs is None:
            where = label = os.path.join(self._path, name)
        else:
            where, label = f"{self._path.rstrip('/')}/{name}", f"{self.folder.rstrip('/')}/{name}"
        self.files.append(label)
        return pq.ParquetWriter(where, self.schema, compression="zstd", filesystem=self._pa_fs)

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._buffered:
            return
        if self._writer is None:
            self._writer = self._open()
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self.rows += self._buffered
        self._buffer, self._buffered = [], 0

    def _finish_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_rows = 0

    def close(self) -> int:
        """Write what is buffered, close the last shard, and return the rows written."""
        if self._closed:
            return self.rows
        self._flush()
        if not self.files and self.schema is not None:
            self._writer = self._open()  # an empty dataset still records its columns
        self._finish_shard()
        self._closed = True
        logger.info("wrote %d rows to %s in %d shard(s)", self.rows, self.folder, len(self.files))
        return self.rows

    def abort(self) -> None:
        """Close without flushing and remove the shards written so far."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        for f in self.files:
            with contextlib.suppress(OSError):
                if self._fs is None:
                    os.remove(f)
                else:
                    self._fs.rm(f)
        self.files, self._buffer, self._buffered, self._closed = [], [], 0, True


def write_parquet_shards(table, folder: str, rows_per_shard: int = SHARD_ROWS) -> int:
    """Write an Arrow table or pandas DataFrame as a folder of Parquet shards; returns the rows."""
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with ShardWriter(folder, rows_per_shard=rows_per_shard, schema=table.schema) as out:
        out.write(table)
    return out.rows
