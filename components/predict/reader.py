"""Reading a table to score as a stream of Arrow record batches: constant memory, whatever its size.

The same sources as ingest (``_shared.io``): a CSV or Parquet file, a folder of shards, any fsspec
URI (``gs://``), or BigQuery (``bq://project.dataset.table`` / ``bq://project?query=...``). Parquet
is read row group by row group (``iter_batches``), CSV block by block (pyarrow's streaming reader,
the same null markers as ingest), BigQuery page by page; no source is ever held whole in memory.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Optional

from components._shared import io
from components._shared.errors import DataError

CSV_BLOCK_BYTES = 16 << 20  # a CSV batch: about 150k rows of a churn-like table
# The markers ingest reads as missing (pyarrow's CSV convert options there).
CSV_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


@dataclasses.dataclass
class TableStream:
    """A table being read: its column names, row count when known up front, and its batches."""

    uri: str
    columns: list
    rows: Optional[int]
    _read: Callable  # columns (or None) -> iterator of pyarrow.RecordBatch

    def batches(self, columns: Optional[list] = None) -> Iterator:
        """The record batches, of ``columns`` only (in that order) when given; read once."""
        for batch in self._read(columns):
            yield batch if columns is None or batch.schema.names == columns else batch.select(columns)


def _csv_error(exc: Exception, path: str, names: list) -> DataError:
    """One sentence for a CSV block pyarrow could not convert, naming the column when it can."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    m = re.search(r"column #(\d+)", text)
    if m and int(m.group(1)) < len(names):
        name = names[int(m.group(1))]
        detail = text.split(":", 1)[1].strip() if ":" in text else text
        return DataError(f"column {name!r} of {path} changes type part-way through the file ({detail})")
    return DataError(f"could not read {path} as CSV: {text}")


def _csv_batches(f: str, pa_fs, names: list) -> Iterator:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    io.check_csv_text(f, pa_fs)  # binary junk: one sentence, not junk column names
    stream = pa_fs.open_input_stream(f) if pa_fs is not None else f
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, null_values=CSV_NULLS),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        if "Empty CSV file" in str(exc):
            return
        raise DataError(f"could not read {f} as CSV: {str(exc).strip().splitlines()[0]}") from exc
    # Header names as ingest sees them (a byte-order mark and surrounding spaces removed).
    clean = [io.clean_column_name(c) for c in reader.schema.names]
    names[:] = names or clean
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            raise _csv_error(exc, f, clean) from exc
        yield batch.rename_columns(clean)


def _file_stream(uri: str, batch_rows: int) -> TableStream:
    import pyarrow.parquet as pq

    files, fmt = io.list_shards(uri)
    pa_fs = io._fs_and_path(uri)[0]
    if fmt == "parquet":
        opened = [pq.ParquetFile(pa_fs.open_input_file(f) if pa_fs is not None else f) for f in files]
        names = opened[0].schema_arrow.names
        for f, pf in zip(files[1:], opened[1:], strict=True):
            if pf.schema_arrow.names != names:
                raise DataError(f"the shard {f} has columns {pf.schema_arrow.names} but {files[0]} has {names}")

        def parquet_batches(columns):
            for pf in opened:  # only the columns asked for are read and decompressed
                yield from pf.iter_batches(batch_size=batch_rows, columns=columns)

        return TableStream(uri, names, sum(pf.metadata.num_rows for pf in opened), parquet_batches)

    first: list = []
    batches = _csv_batches(files[0], pa_fs, first)
    head = next(batches, None)  # the header names the columns (and an empty file has none)

    def csv_batches(columns):
        if head is not None:
            yield head
        yield from batches
        for f in files[1:]:
            names: list = []
            for batch in _csv_batches(f, pa_fs, names):
                if names != first:
                    raise DataError(f"the shard {f} has columns {names} but {files[0]} has {first}")
                yield batch

    return TableStream(uri, list(first), None, csv_batches)


def _bigquery_stream(uri: str) -> TableStream:
    """BigQuery through the Storage Read API when available (``to_arrow_iterable``), page by page."""
    from urllib.parse import parse_qs, unquote, urlparse

    try:
        from google.cloud import bigquery
    except ImportError as exc:  # pragma: no cover - depends on the image
        raise DataError(f"reading {uri} needs google-cloud-bigquery: {exc}") from exc
    parsed = urlparse(uri)
    query = parse_qs(parsed.query).get("query", [None])[0]
    target = parsed.netloc + parsed.path
    if query:
        rows = bigquery.Client(project=target or None).query(unquote(query)).result()
    else:
        if len(target.split(".")) != 3:
            raise DataError(f"{uri} is not bq://project.dataset.table or bq://project?query=...")
        rows = bigquery.Client(project=target.split(".")[0]).list_rows(target)
    names = [f.name for f in rows.schema]
    return TableStream(uri, names, rows.total_rows, lambda columns: iter(rows.to_arrow_iterable()))


def open_table(uri: str, batch_rows: int) -> TableStream:
    """Open ``uri`` for reading in batches of about ``batch_rows`` rows (CSV: about 16 MB each).

    Raises:
        DataError: The path does not exist, is not CSV/Parquet, or its shards disagree (one sentence).
    """
    if uri.startswith("bq://"):
        return _bigquery_stream(uri)
    return _file_stream(uri, batch_rows)
