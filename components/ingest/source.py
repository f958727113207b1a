"""The table ingest reads, as a stream of Arrow record batches that can be read more than once.

CSV is read block by block (pyarrow's streaming reader) and Parquet row group by row group, so
no source is held whole. Column names are cleaned as every stage sees them. A CSV column's type
is fixed for the whole read: first what pyarrow infers from the first block, then, when a later
block holds a value that type cannot hold (an integer column with ``1.5`` further down, a
numeric column with text), the column is widened the way pyarrow's whole-file reader would
infer it (integer -> float -> text) and the read starts again (:class:`Widened`). The
caller that reads every column first (ingest's scan) settles the types before anything is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Optional

from components._shared import io
from components._shared.errors import DataError

logger = logging.getLogger(__name__)

# A CSV batch: about 23k rows of a churn-like table. pyarrow's streaming CSV reader reads up to 32
# blocks ahead in the background, so the block size bounds the memory it takes (32 x 2 MB).
CSV_BLOCK_BYTES = 2 << 20
PARQUET_BATCH_ROWS = 131_072
# The markers read as missing (the same as io.read_arrow's).
CSV_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


class Widened(Exception):
    """A CSV column needed a wider type part-way through: the read must start again."""


class Source:
    """A CSV/Parquet file, folder of shards or fsspec URI, read in batches (any number of times).

    Attributes:
        uri: What was opened.
        names: Column names as stages see them (cleaned), in file order.
        rows: Rows, when the format says so without reading (Parquet), else None.
    """

    def __init__(self, uri: str):
        self.uri = uri
        self.rows: Optional[int] = None
        if uri.startswith("bq://"):  # read whole by io (the BigQuery path of its own streams)
            self.format, self._table = "table", io.read_arrow(uri)
            self.raw_names = list(self._table.column_names)
            self.names = [io.clean_column_name(c) for c in self.raw_names]
            self.rows = self._table.num_rows
            return
        self._pa_fs = io._fs_and_path(uri)[0]
        self.files, self.format = io.list_shards(uri)
        if self.format == "parquet":
            self._open_parquet()
        else:
            self._open_csv()

    # ------------------------------------------------------------------ parquet
    def _open_parquet(self) -> None:
        import pyarrow as pa

        schemas, rows = [], 0
        for f in self.files:  # footers only: an open reader keeps what it last read (~15 MB a file)
            with self._parquet_file(f) as pf:
                schemas.append(pf.schema_arrow)
                rows += pf.metadata.num_rows
        for f, s in zip(self.files[1:], schemas[1:], strict=True):
            if s.names != schemas[0].names:
                raise DataError(f"the shard {f} has columns {s.names} but {self.files[0]} has {schemas[0].names}")
        try:
            self._schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"the shards of {self.uri} disagree on column types: {exc}") from exc
        self.raw_names = list(self._schema.names)
        self.names = [io.clean_column_name(c) for c in self.raw_names]
        self.rows = rows

    def _parquet_file(self, f: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self._pa_fs.open_input_file(f) if self._pa_fs else f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"could not read {f} as PARQUET: {_first_line(exc)}") from exc

    def _parquet_batches(self, columns: Optional[list]) -> Iterator:
        import pyarrow as pa

        raw = None if columns is None else [self.raw_names[self.names.index(c)] for c in columns]
        schema = self._schema if raw is None else pa.schema([self._schema.field(c) for c in raw])
        for f in self.files:
            with self._parquet_file(f) as pf:  # opened per read and closed: nothing kept between files
                for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=raw):
                    if not batch.schema.equals(schema):
                        try:
                            batch = batch.cast(schema)
                        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                            raise DataError(f"the shards of {self.uri} disagree on column types: {exc}") from exc
                    yield batch

    # ------------------------------------------------------------------ csv
    def _reader(self, f: str):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        if self._pa_fs is None:
            import os

            if os.path.getsize(f) == 0:
                raise DataError(f"the data file {f} is empty")
        io.check_csv_text(f, self._pa_fs)  # binary junk: one sentence, not junk column names
        types = getattr(self, "_types", None)
        try:
            return pacsv.open_csv(
                self._pa_fs.open_input_stream(f) if self._pa_fs is not None else f,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True, null_values=CSV_NULLS, column_types=types),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"could not read {f} as CSV: {_first_line(exc)}") from exc

    def _open_csv(self) -> None:
        reader = self._reader(self.files[0])
        self.raw_names = list(reader.schema.names)
        self.names = [io.clean_column_name(c) for c in self.raw_names]
        # Duplicate names: ingest refuses them by name; a type map keyed by name cannot hold them.
        self._types = None if len(set(self.raw_names)) < len(self.raw_names) else dict(
            zip(self.raw_names, reader.schema.types, strict=True))
        reader.close()

    def _csv_batches(self, columns: Optional[list]) -> Iterator:
        import pyarrow as pa

        for f in self.files:
            reader = self._reader(f)
            if reader.schema.names != self.raw_names:
                raise DataError(f"the shard {f} has columns {reader.schema.names} but {self.files[0]} has "
                                f"{self.raw_names}")
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError) as exc:
                    self._widen(exc, f)
                    raise Widened(str(exc)) from exc
                batch = batch.rename_columns(self.names)
                yield batch if columns is None else batch.select(columns)

    def _widen(self, exc: Exception, f: str) -> None:
        """Widen the column a conversion error names, or raise a DataError that says what failed."""
        import pyarrow as pa

        text = _first_line(exc)
        m = re.search(r"CSV column #(\d+): CSV conversion error to [^:]+: invalid value '(.*)'$", text)
        if not m or self._types is None or int(m.group(1)) >= len(self.raw_names):
            raise DataError(f"could not read {f} as CSV: {text}")
        name = self.raw_names[int(m.group(1))]
        old, new = self._types[name], _widened(self._types[name], m.group(2))
        if new == old or pa.types.is_string(old):
            raise DataError(f"could not read {f} as CSV: {text}")
        logger.info("column %r of %s holds %r further down: reading it as %s, not %s, from the start",
                    io.clean_column_name(name), self.uri, m.group(2), new, old)
        self._types[name] = new

    # ------------------------------------------------------------------ both
    def batches(self, columns: Optional[list] = None) -> Iterator:
        """Record batches (of ``columns`` only, in that order, when given) with cleaned names.

        Raises:
            Widened: A CSV column's type changed; read again from the start.
            DataError: A file cannot be read, or the shards disagree.
        """
        if self.format == "table":
            table = self._table.rename_columns(self.names)
            for batch in (table if columns is None else table.select(columns)).to_batches(PARQUET_BATCH_ROWS):
                yield batch
        elif self.format == "parquet":
            for batch in self._parquet_batches(columns):
                yield batch.rename_columns(self.names if columns is None else list(columns))
        else:
            yield from self._csv_batches(columns)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _widened(old, value: str):
    """The type a column of type ``old`` needs to also hold the text ``value``: what pyarrow infers
    for the value alone, promoted with ``old`` (integer + float -> float; otherwise text)."""
    import io as _bytes_io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        alone = pacsv.read_csv(_bytes_io.BytesIO(b"v\n" + value.encode() + b"\n"),
                               convert_options=pacsv.ConvertOptions(null_values=CSV_NULLS)).schema.types[0]
    except pa.ArrowInvalid:
        return pa.string()
    if pa.types.is_null(old):
        return alone
    if pa.types.is_integer(old) and pa.types.is_floating(alone):
        return pa.float64()
    return pa.string()
