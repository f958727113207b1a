"""Reading and writing tables: CSV / Parquet from a path, a folder of shards, gs://, bq://.

Reading goes through pyarrow (multithreaded, typed); a column keeps the type its values
have, so text in a numeric column shows up as a string column that validation flags,
instead of being coerced silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any, Optional

from components._shared.errors import DataError
from components._shared.shards import (  # noqa: F401 - every reader of a split goes through io
    ROW_GROUP_ROWS,
    SHARD_ROWS,
    ShardWriter,
    _fs_and_path,
    columns_with_nulls,
    iter_parquet_batches,
    open_parquet,
    parquet_files,
    parquet_num_rows,
    read_parquet,
    read_parquet_arrow,
    read_parquet_schema_names,
    sample_parquet,
    to_pandas,
    write_parquet_shards,
)

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _format_of(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz")):
        return "csv"
    raise DataError(f"{name} is neither CSV nor Parquet (expected one of {', '.join(TABLE_SUFFIXES)})")


def list_shards(uri: str) -> tuple[list[str], str]:
    """Return the files a URI names (one file, or every CSV/Parquet file in a folder)."""
    pa_fs, path, fs = _fs_and_path(uri)
    if fs is None:
        if not os.path.exists(path):
            raise DataError(f"the data path {uri} does not exist")
        if os.path.isdir(path):
            files = sorted(
                os.path.join(root, f)
                for root, _, names in os.walk(path)
                for f in names
                if f.lower().endswith(TABLE_SUFFIXES) and not f.startswith((".", "_"))
            )
        else:
            files = [path]
    else:
        if not fs.exists(path):
            raise DataError(f"the data path {uri} does not exist")
        if fs.isdir(path):
            files = sorted(f for f in fs.find(path) if f.lower().endswith(TABLE_SUFFIXES))
        else:
            files = [path]
    if not files:
        raise DataError(f"the folder {uri} holds no CSV or Parquet files")
    formats = {_format_of(f) for f in files}
    if len(formats) > 1:
        raise DataError(f"the folder {uri} mixes CSV and Parquet files; use one format")
    return files, formats.pop()


def clean_column_name(name) -> str:
    """A header name as every stage sees it: surrounding whitespace and a UTF-8 byte-order mark
    (which some editors write before the first name) removed."""
    return str(name).replace("\ufeff", "").strip()


def _check_text_start(head: bytes, name: str) -> None:
    """Refuse a "CSV" whose first bytes are not UTF-8 text (a binary file, a compressed file
    without its .gz suffix, another encoding), with one sentence instead of junk column names."""
    import codecs

    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    what = None
    if head.startswith(b"PAR1"):
        what = "it is a Parquet file; name it .parquet"
    elif head.startswith(b"\x1f\x8b"):
        what = "it is gzip-compressed; name it .csv.gz"
    elif b"\x00" in head:
        what = "its first bytes are binary data, not text"
    else:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            what = "its first bytes are not UTF-8 text (binary data, or text in another encoding)"
    if what:
        raise DataError(f"the file {name} is not a readable CSV or Parquet table: {what}")


def _read_head(path: str, pa_fs=None, size: int = 64 * 1024) -> bytes:
    """The first ``size`` bytes of a CSV file, decompressed when it is named .gz."""
    import gzip

    try:
        if pa_fs is not None:
            with pa_fs.open_input_stream(path) as fh:  # compression detected from the suffix
                return fh.read(size)
        opener = gzip.open if path.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            return fh.read(size)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"the file {path} is not a readable CSV or Parquet table: {exc}") from exc


def check_csv_text(path: str, pa_fs=None) -> None:
    """Refuse, with one sentence, a CSV file whose first bytes are not UTF-8 text (every CSV reader
    calls it first: pyarrow would read binary junk as column names)."""
    _check_text_start(_read_head(path, pa_fs), path)


def csv_header(path: str) -> tuple[list[str], bool]:
    """(column names of a local CSV file's header line, whether a data line follows).

    Tolerates a UTF-8 byte-order mark; a file that is not text fails with one sentence.

    Raises:
        DataError: The file is empty, binary, or has no header line.
    """
    import csv

    head = _read_head(path)
    if not head:
        raise DataError(f"the data file {path} is empty")
    _check_text_start(head, path)
    lines = head.decode("utf-8-sig", errors="replace").splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"the data file {path} has no header line")
    names = [clean_column_name(c) for c in next(csv.reader([lines[0]]))]
    return names, len(lines) > 1 and bool(lines[1].strip())


def read_table(uri: str, columns: Optional[list[str]] = None):
    """Read a CSV/Parquet file, a folder of shards, a gs:// URI or a bq:// table into pandas.

    Args:
        uri: Local path, ``file://``, ``gs://`` (or any fsspec URI), or
            ``bq://project.dataset.table`` / ``bq://project?query=SELECT ...``.
        columns: Read only these columns.

    Raises:
        DataError: The path does not exist, is empty, or is not CSV/Parquet.
    """
    return to_pandas(read_arrow(uri, columns=columns))


def read_arrow(uri: str, columns: Optional[list[str]] = None):
    """Like :func:`read_table` but returns a pyarrow Table (no per-row Python objects)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if uri.startswith("bq://"):
        return pa.Table.from_pandas(read_bigquery(uri, columns=columns), preserve_index=False)
    pa_fs, _, _ = _fs_and_path(uri)
    files, fmt = list_shards(uri)
    tables = []
    for f in files:
        try:
            if fmt == "parquet":
                tables.append(pq.read_table(f, columns=columns, filesystem=pa_fs))
            else:
                if pa_fs is None and os.path.getsize(f) == 0:
                    raise DataError(f"the data file {f} is empty")
                # pyarrow skips a UTF-8 byte-order mark itself; binary junk would otherwise
                # come back as column names.
                check_csv_text(f, pa_fs)
                opener = pa_fs.open_input_stream(f) if pa_fs is not None else f
                tables.append(
                    pacsv.read_csv(
                        opener,
                        read_options=pacsv.ReadOptions(block_size=1 << 24),
                        convert_options=pacsv.ConvertOptions(
                            strings_can_be_null=True,
                            null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"],
                        ),
                    )
                )
        except DataError:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"could not read {f} as {fmt.upper()}: {first}") from exc
    if len(tables) > 1:
        names = [t.schema.names for t in tables]
        if any(n != names[0] for n in names[1:]):
            bad = next(i for i, n in enumerate(names) if n != names[0])
            raise DataError(
                f"the shard {files[bad]} has columns {names[bad]} but {files[0]} has {names[0]}"
            )
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"the shards of {uri} disagree on column types: {exc}") from exc
    else:
        table = tables[0]
    table = table.rename_columns([clean_column_name(c) for c in table.column_names])
    if columns is not None and fmt == "csv":
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DataError(f"the data {uri} has no column {missing[0]!r}")
        table = table.select(columns)
    logger.info("read %s: %d rows x %d columns from %d file(s)", uri, table.num_rows, table.num_columns, len(files))
    return table


def read_bigquery(uri: str, columns: Optional[list[str]] = None):
    """Read ``bq://project.dataset.table`` or ``bq://project?query=...`` with google-cloud-bigquery."""
    from urllib.parse import parse_qs, unquote, urlparse

    try:
        from google.cloud import bigquery
    except ImportError as exc:  # pragma: no cover - depends on image
        raise DataError(f"reading {uri} needs google-cloud-bigquery: {exc}") from exc
    import google.auth.exceptions

    parsed = urlparse(uri)
    query = parse_qs(parsed.query).get("query", [None])[0]
    target = parsed.netloc + parsed.path
    try:
        if query:
            client = bigquery.Client(project=target or None)
            df = client.query(unquote(query)).to_dataframe()
        else:
            parts = target.split(".")
            if len(parts) != 3:
                raise DataError(f"{uri} is not bq://project.dataset.table or bq://project?query=...")
            client = bigquery.Client(project=parts[0])
            rows = client.list_rows(target, selected_fields=None)
            df = rows.to_dataframe()
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise DataError(
            f"cannot read {uri}: no Google Cloud credentials found "
            "(set GOOGLE_APPLICATION_CREDENTIALS or run on a service account)"
        ) from exc
    if columns is not None:
        df = df[columns]
    return df


def write_parquet(df, path: str) -> None:
    """Write a DataFrame as a single Parquet file (zstd), creating parent folders."""
    import pyarrow as pa

    write_arrow_parquet(pa.Table.from_pandas(df, preserve_index=False), path)


def content_hash(table) -> str:
    """A content hash of a table: column names/types and the Arrow IPC bytes of each column.

    Each column is combined into one chunk first (one column at a time, to bound memory), so
    the hash does not depend on how the rows were split into files or read blocks.
    """
    import hashlib

    import pyarrow as pa

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    h = hashlib.sha256()
    h.update(",".join(f"{f.name}:{f.type}" for f in table.schema).encode())
    for i, field in enumerate(table.schema):
        col = table.column(i).combine_chunks()
        batch = pa.record_batch([col], schema=pa.schema([field]))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        h.update(memoryview(sink.getvalue()))
    return h.hexdigest()


def write_arrow_parquet(table, path: str) -> None:
    """Write an Arrow table as a single Parquet file (zstd), creating parent folders."""
    import pyarrow.parquet as pq

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=256_000)


# --------------------------------------------------------------------------- atomic writes
# Every file another step, a server or a collector may read while it is being written goes
# through these: the content lands in a hidden sibling and is renamed into place, so a reader
# sees the old file or the new one, never half of one.


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary file path beside ``path``; on success the file replaces ``path``.

    For writers that want a path (``DataFrame.to_csv``, ...). Parent folders are created; on an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text_atomic(text: str, path: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def write_bytes_atomic(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def replace_dir_atomic(path: str) -> Iterator[str]:
    """Yield a new empty folder beside ``path``; on success it becomes ``path``.

    Fill the yielded folder; when the block ends without an exception, a folder already at
    ``path`` is removed and the new one renamed into place (a server watching the parent sees
    no half-written folder). On an exception the new folder is removed and ``path`` is untouched.
    """
    import shutil

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield tmp
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(obj: Any, path: str) -> None:
    """Write JSON with sorted keys atomically (a reader never sees half a file)."""
    write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", path)


def read_json(path: str) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")
