"""The split definition shared by the file path and BigQuery (components/_shared/split.py).

That BigQuery SQL computes the same codes is checked against the BigQuery emulator in
tests/unit/test_ingest_bigquery.py; here, the Python side against an independent spelling of the rule.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from components._shared import split
from components._shared.errors import DataError


def _bucket_by_hand(text: str) -> int:
    """The rule in the module docstring, written out once more without numpy or Arrow."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16) % 1_000_000


def test_buckets_follow_the_written_rule_for_text_integer_and_missing_ids():
    texts = ["C00001", "123", "-7", "", "é✓ unicode", "0"]
    assert split.id_buckets(pa.array(texts)).tolist() == [_bucket_by_hand(t) for t in texts]
    # An integer id is hashed as its decimal text, so an INT64 and a STRING column of the same ids agree.
    assert split.id_buckets(pa.array([123, -7, 0])).tolist() == [_bucket_by_hand(t) for t in ("123", "-7", "0")]
    # A missing id is the empty string (COALESCE(..., '') in SQL).
    assert split.id_buckets(pa.array(["a", None])).tolist() == [_bucket_by_hand("a"), _bucket_by_hand("")]
    # pandas inputs: integers with a gap read as float, and categoricals, hash as their text.
    assert split.id_buckets(pd.Series([5.0, np.nan])).tolist() == [_bucket_by_hand("5"), _bucket_by_hand("")]
    assert split.id_buckets(pd.Series(["x", "y"], dtype="category")).tolist() == [_bucket_by_hand("x"),
                                                                                  _bucket_by_hand("y")]


def test_a_golden_value_pins_the_definition():
    # Changing the hash, digit count or modulus moves rows between splits for every user: this must fail then.
    assert split.id_buckets(pa.array(["customer-42"])).tolist() == [_bucket_by_hand("customer-42")]
    assert _bucket_by_hand("customer-42") == int(hashlib.sha256(b"customer-42").hexdigest()[:15], 16) % 10**6
    assert split.cuts(0.15, 0.15) == (700_000, 850_000)
    assert split.assign_by_id(pa.array(["123", "abc"]), 0.15, 0.15).tolist() == [
        0 if b < 700_000 else 1 if b < 850_000 else 2 for b in (_bucket_by_hand("123"), _bucket_by_hand("abc"))]


def test_fractions_are_honoured_and_a_record_keeps_its_split_as_the_table_grows():
    ids = pa.array([f"id-{i}" for i in range(60_000)])
    codes = split.assign_by_id(ids, 0.2, 0.1)
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert np.allclose(shares, [0.7, 0.2, 0.1], atol=0.01)
    grown = split.assign_by_id(pa.concat_arrays([pa.array(["new-1", "new-2"]), ids]), 0.2, 0.1)
    assert np.array_equal(grown[2:], codes)


def test_the_splitter_by_id_does_not_depend_on_batching_and_reads_tables_and_frames():
    table = pa.table({"uid": list(range(1000)), "x": np.arange(1000.0)})
    s = split.Splitter("uid", 0.15, 0.15, seed=1)
    whole = s.assign(table)
    parts = np.concatenate([s.assign(b) for b in table.to_batches(max_chunksize=77)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(whole, s.assign(table.to_pandas()))
    assert np.array_equal(whole, split.assign_by_id(pa.array([str(i) for i in range(1000)]), 0.15, 0.15))
    with pytest.raises(DataError, match="the id column 'nope' is not in the data"):
        split.Splitter("nope", 0.15, 0.15, seed=1).assign(table)


def test_the_splitter_by_position_continues_one_random_stream_across_batches():
    n = 10_000
    one = split.Splitter(None, 0.15, 0.15, seed=7).assign(pa.table({"x": np.zeros(n)}))
    s = split.Splitter(None, 0.15, 0.15, seed=7)
    table = pa.table({"x": np.zeros(n)})
    batched = np.concatenate([s.assign(b) for b in table.to_batches(max_chunksize=999)])
    assert np.array_equal(one, batched)
    u = np.random.default_rng(7).random(n)  # the draw the single-table split always made
    assert np.array_equal(one, np.where(u >= 0.85, 2, np.where(u >= 0.70, 1, 0)))
    assert not np.array_equal(one, split.Splitter(None, 0.15, 0.15, seed=8).assign(table))


@pytest.mark.parametrize("eval_fraction,test_fraction", [(0, 0.2), (0.2, 0), (0.5, 0.5), (1.2, 0.1)])
def test_bad_fractions_are_a_data_error(eval_fraction, test_fraction):
    with pytest.raises(DataError, match="must be in \\(0, 1\\) and sum to less than 1"):
        split.Splitter(None, eval_fraction, test_fraction, seed=0)


def test_sql_names_the_column_and_the_cuts():
    sql = split.sql_split_code("customer_id", 0.15, 0.15)
    assert "SHA256(COALESCE(CAST(`customer_id` AS STRING), ''))" in sql
    assert "< 700000 THEN 0" in sql and "< 850000 THEN 1 ELSE 2" in sql
    with pytest.raises(DataError, match="backquote"):
        split.sql_bucket("bad`name")
