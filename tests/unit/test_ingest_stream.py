"""Ingest streams (issue 19): the same result whatever the batching, CSV types settled across
blocks, splits written as folders of shards, label decisions from a bounded first pass."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components._shared import io
from components._shared.errors import DataError
from components._shared.task import heavy_tail_warning
from components.ingest import core, label_scan, source
from components.ingest.core import ingest
from components.ingest.digest import ContentHash
from pipelines.data import generate_churn

LABEL = "churned"


def _run(out, uri, label=LABEL, **kwargs):
    return ingest(uri, label, str(out / "train"), str(out / "eval"), str(out / "test"), **kwargs)


def _splits(out):
    return {s: io.read_parquet_arrow(str(out / s)) for s in ("train", "eval", "test")}


@pytest.fixture(scope="module")
def churn():
    return generate_churn(3000, seed=11)


@pytest.fixture
def small_blocks(monkeypatch):
    """CSV blocks of 4 kB (about 40 rows) and row-group batches of 64 rows: many batches per file."""
    monkeypatch.setattr(source, "CSV_BLOCK_BYTES", 1 << 12)
    monkeypatch.setattr(source, "PARQUET_BATCH_ROWS", 64)


@pytest.mark.parametrize("id_column", ["customer_id", "none"])
def test_many_small_batches_give_the_same_splits_and_hash_as_one(tmp_path, churn, monkeypatch, id_column):
    path = tmp_path / "data.csv"
    churn.to_csv(path, index=False)
    one = _run(tmp_path / "one", str(path), id_column=id_column)
    monkeypatch.setattr(source, "CSV_BLOCK_BYTES", 1 << 12)
    monkeypatch.setattr(core, "SHARD_ROWS", 500)
    many = _run(tmp_path / "many", str(path), id_column=id_column)

    assert many.to_dict() == one.to_dict()
    a, b = _splits(tmp_path / "one"), _splits(tmp_path / "many")
    for split in ("train", "eval", "test"):
        assert a[split].equals(b[split])
    # Each split is a folder of shards of at most SHARD_ROWS rows.
    shards = sorted(os.listdir(tmp_path / "many" / "train"))
    assert shards[0] == "part-00000.parquet" and len(shards) == -(-many.rows["train"] // 500)
    assert all(pq.ParquetFile(tmp_path / "many" / "train" / f).metadata.num_rows <= 500 for f in shards)


def test_a_parquet_folder_input_streams_like_the_csv(tmp_path, churn, small_blocks):
    path = tmp_path / "data.csv"
    churn.to_csv(path, index=False)
    from_csv = _run(tmp_path / "csv", str(path))
    folder = tmp_path / "shards"
    io.write_parquet_shards(io.read_arrow(str(path)), str(folder), rows_per_shard=700)
    from_parquet = _run(tmp_path / "pq", str(folder))
    assert from_parquet.content_hash == from_csv.content_hash
    assert from_parquet.rows == from_csv.rows and from_parquet.id_column == "customer_id"


def test_csv_types_settle_across_blocks_as_the_whole_file_reader_infers_them(tmp_path, churn, small_blocks):
    df = churn.copy()
    n = len(df)
    df["count"] = [str(i) for i in range(n)]  # integers, then one decimal near the end
    df.loc[n - 5, "count"] = "0.5"
    df["code"] = np.arange(n).astype(object)  # integers, then text
    df.loc[n - 3, "code"] = "X-17"
    df["late"] = None  # empty in the first blocks, integers further down
    df.loc[n - 100:, "late"] = np.arange(100)
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)

    _run(tmp_path, str(path), id_column="customer_id")
    written = pa.concat_tables(_splits(tmp_path).values()).schema
    whole = io.read_arrow(str(path)).schema  # pyarrow's whole-file inference
    for column, kind in (("count", pa.float64()), ("code", pa.string()), ("late", pa.int64())):
        assert written.field(column).type == whole.field(column).type == kind


def test_text_in_a_float_column_further_down_is_kept_as_text(tmp_path, churn, small_blocks):
    df = churn.astype({"monthly_charges": object})
    df.loc[len(df) - 2, "monthly_charges"] = "unknown"
    df.to_csv(tmp_path / "data.csv", index=False)
    _run(tmp_path, str(tmp_path / "data.csv"))
    assert pa.types.is_string(_splits(tmp_path)["train"].schema.field("monthly_charges").type)


def test_label_decisions_and_checks_hold_across_batches(tmp_path, churn, small_blocks):
    df = churn.copy()
    df.loc[df.index[-40:], LABEL] = None  # missing labels only in the last blocks
    df.to_csv(tmp_path / "data.csv", index=False)
    result = _run(tmp_path, str(tmp_path / "data.csv"))
    assert result.dropped_missing_label == 40 and sum(result.rows.values()) == len(df) - 40
    assert (result.positive_label, result.task) == ("yes", "binary")

    # A third label value only in the last block is still seen.
    df = churn.copy()
    df.loc[df.index[-1], LABEL] = "maybe"
    df.to_csv(tmp_path / "three.csv", index=False)
    with pytest.raises(DataError, match=r"must have exactly two values for binary classification but has 3"):
        _run(tmp_path / "b", str(tmp_path / "three.csv"), task="binary")
    multi = _run(tmp_path / "c", str(tmp_path / "three.csv"))
    assert multi.task == "multiclass" and "maybe" in str(multi.classes) + str(multi.warnings)

    # A regression label with one bad value far down: the same sentence as a whole-column read.
    reg = churn.assign(churned=[str(i + 0.5) for i in range(len(churn))])
    reg.loc[reg.index[-3], LABEL] = "lots"
    reg.to_csv(tmp_path / "reg.csv", index=False)
    with pytest.raises(DataError, match=r"regression label 'churned' has 1 value\(s\) that are not finite.*'lots'"):
        _run(tmp_path / "d", str(tmp_path / "reg.csv"), task="regression")


def test_an_id_column_missing_a_value_after_the_first_chunk_is_not_detected(tmp_path, churn, monkeypatch):
    monkeypatch.setattr(core, "FIRST_CHUNK_ROWS", 100)
    df = churn.copy()
    df.loc[df.index[-1], "customer_id"] = None
    df.to_csv(tmp_path / "data.csv", index=False)
    result = _run(tmp_path, str(tmp_path / "data.csv"))
    assert result.id_column is None and "no id column was given or found" in result.warnings[0]
    assert _run(tmp_path / "b", _csv(tmp_path, churn)).id_column == "customer_id"


def _csv(tmp_path, df):
    path = tmp_path / "clean.csv"
    df.to_csv(path, index=False)
    return str(path)


def test_column_names_are_cleaned_and_duplicates_refused(tmp_path, churn):
    path = tmp_path / "names.csv"
    churn.rename(columns={"region": " region "}).to_csv(path, index=False)
    result = _run(tmp_path, str(path))
    assert "region" in result.columns and "region" in _splits(tmp_path)["train"].column_names
    dup = tmp_path / "dup.csv"
    churn.rename(columns={"region": "contract "}).to_csv(dup, index=False)  # two 'contract' once cleaned
    with pytest.raises(DataError, match=r"has the column 'contract' twice"):
        _run(tmp_path / "b", str(dup))


def test_many_valued_labels_are_decided_without_counting_every_value(tmp_path, churn, monkeypatch):
    monkeypatch.setattr(label_scan, "MAX_DISTINCT", 50)
    monkeypatch.setattr(core, "MAX_DISTINCT", 50)
    df = churn.assign(churned=np.arange(len(churn)) * 3)  # integers, 3000 values
    df.to_csv(tmp_path / "int.csv", index=False)
    result = _run(tmp_path, str(tmp_path / "int.csv"))
    assert result.task == "regression" and "more than 50 numeric values" in result.task_reason
    text = churn.assign(churned=[f"v{i}" for i in range(len(churn))])
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match=r"has more than 50 distinct non-numeric values, too many to infer"):
        _run(tmp_path / "b", str(tmp_path / "text.csv"))


def test_label_scan_and_moments_match_the_whole_column_rules():
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(size=5000), [60.0]])  # one value 60 sd out: heavy-tailed
    moments, scan = label_scan.Moments(), label_scan.LabelScan()
    for chunk in np.array_split(values, 13):
        moments.update(chunk)
        scan.update(pa.array(chunk))
    assert moments.heavy_tail_warning("y") == heavy_tail_warning(values, "y")
    assert moments.heavy_tail_warning("y") is not None
    assert label_scan.Moments().heavy_tail_warning("y") is None
    assert scan.rows == len(values) and not scan.integer_valued and scan.numeric
    assert sorted(scan.distinct()) == sorted(set(values))


def test_content_hash_does_not_depend_on_batching_and_sees_every_value():
    n = 1000
    table = pa.table({
        "i": pa.array([None if i % 7 == 0 else i for i in range(n)], type=pa.int64()),
        "f": pa.array(np.linspace(0, 1, n)),
        "s": pa.array([None if i % 5 == 0 else "x" * (i % 4) for i in range(n)]),
        "b": pa.array([i % 3 == 0 for i in range(n)]),
        "d": pa.array(pd.date_range("2024-01-01", periods=n, freq="h")),
        "c": pa.array([f"c{i % 3}" for i in range(n)]).dictionary_encode(),
    })

    def digest(batches):
        h = ContentHash(table.schema)
        for b in batches:
            h.update(b)
        return h.hexdigest()

    whole = digest(table.to_batches())
    assert digest(table.to_batches(max_chunksize=37)) == whole
    assert digest([table.slice(0, 1).to_batches()[0], *table.slice(1).to_batches(max_chunksize=500)]) == whole
    # Moving a character from one string to the next changes the hash (lengths are hashed too).
    s = table.column("s").to_pylist()
    s[1], s[2] = s[1] + "x", s[2][:-1]
    assert digest(table.set_column(2, "s", pa.array(s)).to_batches()) != whole
    assert digest(table.set_column(0, "i", pa.array(range(n), type=pa.int64())).to_batches()) != whole
