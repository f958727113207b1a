"""Sharded Parquet datasets: ShardWriter, and every reader taking a file or a folder of shards."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components._shared import io
from components._shared.errors import DataError


def _table(n: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + n)
    return pa.table({
        "id": pa.array(ids, type=pa.int64()),
        "x": pa.array(ids * 0.5),
        "city": pa.array([f"c{i % 7}" for i in ids]),
        "maybe": pa.array([None if i % 5 == 0 else int(i) for i in ids], type=pa.int64()),
    })


@pytest.fixture
def sharded(tmp_path):
    """The same 2,500 rows as one file and as a folder of 1,000-row shards."""
    table = _table(2500)
    single = str(tmp_path / "one.parquet")
    io.write_arrow_parquet(table, single)
    folder = str(tmp_path / "split")
    with io.ShardWriter(folder, rows_per_shard=1000, row_group_rows=300) as out:
        for batch in table.to_batches(max_chunksize=170):  # batches that straddle groups and shards
            out.write(batch)
    return table, single, folder, out


def test_shard_writer_writes_bounded_shards_in_order(sharded):
    table, _, folder, out = sharded

    assert out.rows == 2500 and out.close() == 2500
    assert sorted(os.listdir(folder)) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert out.files == [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    meta = [pq.ParquetFile(f).metadata for f in out.files]
    assert [m.num_rows for m in meta] == [1000, 1000, 500]
    groups = [m.row_group(i).num_rows for m in meta for i in range(m.num_row_groups)]
    assert max(groups) <= 300 and sum(groups) == 2500
    assert meta[0].row_group(0).column(0).compression == "ZSTD"
    assert io.read_parquet_arrow(folder).equals(table)


def test_every_reader_takes_a_file_or_a_folder(sharded):
    table, single, folder, _ = sharded

    assert io.parquet_files(single) == [single]
    assert io.parquet_files(folder) == [os.path.join(folder, f"part-0000{i}.parquet") for i in range(3)]
    for path in (single, folder):
        assert io.parquet_num_rows(path) == 2500
        assert io.read_parquet_schema_names(path) == ["id", "x", "city", "maybe"]
        df = io.read_parquet(path, columns=["id", "city"])
        assert list(df.columns) == ["id", "city"] and df["id"].tolist() == list(range(2500))
        assert str(df["city"].dtype) == "category"
        batches = list(io.iter_parquet_batches(path, columns=["maybe", "id"], batch_rows=256))
        assert max(b.num_rows for b in batches) <= 256
        assert pa.Table.from_batches(batches).equals(table.select(["maybe", "id"]))
    with pytest.raises(DataError, match="has no column 'nope'"):
        next(io.iter_parquet_batches(folder, columns=["nope"]))
    with pytest.raises(DataError, match="has no column 'nope'"):
        io.read_parquet(folder, columns=["nope"])


def test_sample_reads_the_same_rows_from_a_file_or_its_shards(sharded):
    table, single, folder, _ = sharded

    a = io.sample_parquet(single, 200, seed=3)
    b = io.sample_parquet(folder, 200, seed=3, columns=None)
    assert len(a) == 200 and a.equals(b)
    # The rows earlier versions drew: the seed's positions, in file order.
    idx = np.sort(np.random.default_rng(3).choice(2500, 200, replace=False))
    assert a["id"].tolist() == idx.tolist()
    assert io.sample_parquet(folder, 200, seed=4)["id"].tolist() != a["id"].tolist()
    assert len(io.sample_parquet(folder, 5000, seed=3, columns=["x"])) == 2500


def test_folder_listing_skips_hidden_files_and_refuses_empty_or_missing(tmp_path, sharded):
    _, _, folder, _ = sharded
    open(os.path.join(folder, "_SUCCESS"), "w").close()
    open(os.path.join(folder, ".part-00003.parquet.tmp"), "w").close()
    assert len(io.parquet_files(folder)) == 3

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no Parquet files"):
        io.parquet_files(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="does not exist"):
        io.parquet_num_rows(str(tmp_path / "missing"))


def test_an_empty_dataset_still_records_its_columns(tmp_path):
    schema = _table(1).schema
    with io.ShardWriter(str(tmp_path / "none"), schema=schema) as out:
        pass
    assert out.rows == 0 and len(out.files) == 1
    assert io.parquet_num_rows(str(tmp_path / "none")) == 0
    assert io.read_parquet_schema_names(str(tmp_path / "none")) == ["id", "x", "city", "maybe"]
    assert list(io.iter_parquet_batches(str(tmp_path / "none"))) == []


def test_a_failed_write_leaves_no_shards(tmp_path):
    folder = tmp_path / "half"
    with pytest.raises(RuntimeError):
        with io.ShardWriter(str(folder), rows_per_shard=100) as out:
            out.write(_table(250))
            raise RuntimeError("the source broke")
    assert os.listdir(folder) == []


def test_batches_are_cast_to_the_first_schema_or_refused(tmp_path):
    first = _table(10)
    with io.ShardWriter(str(tmp_path / "s")) as out:
        out.write(first)
        out.write(first.set_column(3, "maybe", pa.array([None] * 10, type=pa.null())))  # all-null block
    back = io.read_parquet_arrow(str(tmp_path / "s"))
    assert back.schema.equals(first.schema) and back.num_rows == 20

    with pytest.raises(DataError, match="cannot write columns"):
        with io.ShardWriter(str(tmp_path / "t")) as out:
            out.write(first)
            out.write(first.drop_columns(["city"]))


def test_shards_of_different_types_read_alike_batch_by_batch_sampled_and_whole(tmp_path):
    """A user's folder whose shards disagree on a column's type (int64 in one, double in the next, nulls in
    a third) reads with the same unified types whichever reader is used; incompatible types are refused."""
    import pyarrow.parquet as pq

    folder = tmp_path / "mixed"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2, 3], "x": pa.array([1, 2, 3], pa.int64())}), folder / "part-0.parquet")
    pq.write_table(pa.table({"id": [4, 5], "x": pa.array([2.5, None], pa.float64())}), folder / "part-1.parquet")
    pq.write_table(pa.table({"id": [6], "x": pa.array([None], pa.null())}), folder / "part-2.parquet")
    whole = io.read_parquet_arrow(str(folder))
    assert whole.schema.field("x").type == pa.float64()
    batches = list(io.iter_parquet_batches(str(folder)))
    assert all(b.schema.field("x").type == pa.float64() for b in batches)
    assert pa.Table.from_batches(batches).column("x").to_pylist() == [1.0, 2.0, 3.0, 2.5, None, None]
    only_x = list(io.iter_parquet_batches(str(folder), columns=["x"]))
    assert [b.schema.names for b in only_x] == [["x"]] * 3
    sample = io.sample_parquet(str(folder), 4, seed=1)
    assert str(sample["x"].dtype) == "float64" and len(sample) == 4

    pq.write_table(pa.table({"id": [7], "x": pa.array(["seven"])}), folder / "part-3.parquet")
    with pytest.raises(DataError, match="disagree on column types"):
        list(io.iter_parquet_batches(str(folder)))
    with pytest.raises(DataError, match="disagree on column types"):
        io.read_parquet_arrow(str(folder))


def test_writer_memory_stays_bounded_by_one_row_group(tmp_path):
    """Streaming 40 batches holds about one row group, not the rows written so far."""
    pool = pa.default_memory_pool()
    batch_bytes = _table(20_000).nbytes
    peak = 0
    with io.ShardWriter(str(tmp_path / "big"), rows_per_shard=150_000, row_group_rows=20_000) as out:
        for i in range(40):
            out.write(_table(20_000, start=i * 20_000))
            peak = max(peak, pool.bytes_allocated())
    assert out.rows == 800_000 and len(out.files) == 6
    assert peak < 6 * batch_bytes, (peak, batch_bytes)  # 40 batches would be 40x
    total = 0
    for batch in io.iter_parquet_batches(str(tmp_path / "big"), columns=["id"], batch_rows=50_000):
        total += batch.num_rows
        peak = max(peak, pool.bytes_allocated())
    assert total == 800_000 and peak < 6 * batch_bytes


def test_shards_on_an_fsspec_filesystem(sharded):
    table, _, _, _ = sharded
    folder = "memory://b1-shards/train"
    with io.ShardWriter(folder, rows_per_shard=1000) as out:
        out.write(table)
    try:
        assert out.files == [f"{folder}/part-0000{i}.parquet" for i in range(3)]
        files = io.parquet_files(folder)
        assert len(files) == 3 and all(f.startswith("memory://") for f in files)
        assert io.parquet_num_rows(folder) == 2500
        assert io.read_parquet_arrow(folder).equals(table)
        assert len(io.sample_parquet(folder, 10, seed=1)) == 10
    finally:
        import fsspec

        fsspec.filesystem("memory").rm("/b1-shards", recursive=True)
