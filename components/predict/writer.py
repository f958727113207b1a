"""Writing predictions: Parquet, local or any fsspec URI (gs://), all or nothing.

Everything is written to a temporary sibling of the output path and moved into place only when
the last row is written; a failure removes it, so nothing appears at the output path (and what was
there before is untouched). ``<out>.parquet`` is one file; any other path is a folder of shards
``part-00000.parquet``, ``part-00001.parquet``, ... of at most ``shard_rows`` rows each.

Locally the move is a rename (atomic; ``_shared.io.replace_dir_atomic`` / ``atomic_path``). An
object store has no rename: the finished shards are copied from the temporary prefix, then a
``_SUCCESS`` marker is written last, so a reader that waits for it never sees half an output.
``bq://project.dataset.table``: the shards are written to a local temporary folder, loaded into a
staging table beside the destination, and copied over the destination in one copy job
(``WRITE_TRUNCATE``: readers see the old table or the new one); the staging table is then deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

from components._shared import io

SUCCESS_FILE = "_SUCCESS"


def single_file(out: str) -> bool:
    return out.lower().endswith((".parquet", ".pq"))


class ShardWriter:
    """Parquet writer into a folder (shards of ``shard_rows``) or one file, under a temporary location."""

    def __init__(self, target: str, fs, one_file: bool, shard_rows: int):
        self.target, self.fs, self.one_file, self.shard_rows = target, fs, one_file, max(1, int(shard_rows))
        self.files: list = []
        self._writer = self._handle = None
        self._rows_in_shard = 0
        self.rows = 0

    def _open(self, schema) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.target if self.one_file else f"{self.target.rstrip('/')}/part-{len(self.files):05d}.parquet"
        # Dictionary pages only for the columns that are dictionaries (model name and version, ...): an id
        # column is unique per row, and trying to dictionary-encode it costs more than writing it.
        options = {"compression": "zstd",
                   "use_dictionary": [f.name for f in schema if pa.types.is_dictionary(f.type)] or False}
        if self.fs is None:
            self._handle = None
            self._writer = pq.ParquetWriter(path, schema, **options)
        else:
            self._handle = self.fs.open(path, "wb")
            self._writer = pq.ParquetWriter(self._handle, schema, **options)
        self.files.append(path)
        self._rows_in_shard = 0

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, table) -> None:
        """Append an Arrow table (same schema every call), starting new shards as they fill."""
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                self._open(table.schema)
            room = table.num_rows - start if self.one_file else self.shard_rows - self._rows_in_shard
            part = table.slice(start, room)
            self._writer.write_table(part, row_group_size=256_000)
            self._rows_in_shard += part.num_rows
            self.rows += part.num_rows
            start += part.num_rows
            if not self.one_file and self._rows_in_shard >= self.shard_rows:
                self._close()

    def close(self) -> None:
        self._close()


def bigquery_table(out: str) -> tuple[str, str, str]:
    """(project, dataset, table) of ``bq://project.dataset.table``.

    Raises:
        DataError: Not of that form.
    """
    from components._shared.errors import DataError

    parts = out[len("bq://"):].split(".")
    if len(parts) != 3 or not all(parts) or "?" in out:
        raise DataError(f"the output {out} is not bq://project.dataset.table")
    return parts[0], parts[1], parts[2]


@contextlib.contextmanager
def _bigquery_output(out: str, shard_rows: int) -> Iterator[ShardWriter]:
    import shutil
    import tempfile

    project, dataset, table = bigquery_table(out)
    folder = tempfile.mkdtemp(prefix="predictions-")
    writer = ShardWriter(folder, None, False, shard_rows)
    try:
        yield writer
        writer.close()
        from google.cloud import bigquery

        client = bigquery.Client(project=project)
        staging = f"{project}.{dataset}._{table}_staging_{secrets.token_hex(4)}"
        try:
            for i, path in enumerate(writer.files):
                config = bigquery.LoadJobConfig(
                    source_format=bigquery.SourceFormat.PARQUET,
                    write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE if i == 0
                    else bigquery.WriteDisposition.WRITE_APPEND)
                with open(path, "rb") as fh:
                    client.load_table_from_file(fh, staging, job_config=config).result()
            client.copy_table(staging, f"{project}.{dataset}.{table}", job_config=bigquery.CopyJobConfig(
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)).result()
        finally:
            client.delete_table(staging, not_found_ok=True)
        writer.files = [out]
    finally:
        writer.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(out: str, shard_rows: int) -> Iterator[ShardWriter]:
    """Yield a :class:`ShardWriter` whose files appear at ``out`` only if the block succeeds."""
    if out.startswith("bq://"):
        with _bigquery_output(out, shard_rows) as writer:
            yield writer
        return
    one_file = single_file(out)
    if "://" not in out or out.startswith("file://"):
        path = out[len("file://"):] if out.startswith("file://") else out
        with (io.atomic_path(path) if one_file else io.replace_dir_atomic(path)) as tmp:
            writer = ShardWriter(tmp, None, one_file, shard_rows)
            try:
                yield writer
            finally:
                writer.close()
            if not one_file:  # the files' final names, for the summary (renamed with the folder)
                writer.files = [os.path.join(path, os.path.basename(f)) for f in writer.files]
        return
    from components._shared.object_store import filesystem  # gs://, s3://, minio://

    fs, path = filesystem(out)
    path = path.rstrip("/")
    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    tmp = f"{parent}/.{name}.tmp-{secrets.token_hex(4)}" if parent else f".{name}.tmp-{secrets.token_hex(4)}"
    writer = ShardWriter(tmp, fs, one_file, shard_rows)
    try:
        if not one_file:
            fs.makedirs(tmp, exist_ok=True)
        yield writer
        writer.close()
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if one_file:
            fs.mv(tmp, path)
            final = [path]
        else:
            final = []
            for f in writer.files:
                dest = f"{path}/{f.rsplit('/', 1)[1]}"
                fs.mv(f, dest)
                final.append(dest)
            with fs.open(f"{path}/{SUCCESS_FILE}", "wb"):
                pass
        writer.files = [fs.unstrip_protocol(f) for f in final]
    finally:
        writer.close()
        with contextlib.suppress(FileNotFoundError):
            if fs.exists(tmp):
                fs.rm(tmp, recursive=True)
