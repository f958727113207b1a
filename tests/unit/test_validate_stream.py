"""Validate and engineer stream (issue 19): one batch or many small ones give the same schema,
anomalies, drift and transform spec; sampled statistics stay within their documented error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from components._shared import io
from components._shared.schema import infer_schema
from components._shared.sketches import DistinctInts, NumericStream, ValueCounts
from components.engineer.core import fit_transform_spec
from components.validate.core import result_to_json, validate

LABEL = "churned"


def _batches(df, rows):
    """A re-iterable split of ``df`` as Arrow RecordBatches of ``rows`` rows (what a Parquet read yields)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    return lambda: iter(table.to_batches(max_chunksize=rows))


def _same(a, b, path=""):
    """Equal structures, floats to 1e-9 (moments merged over batches differ in the last bits)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not (isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def data(train):
    """The train fixture with a few missing values, a string timestamp and a boolean with gaps."""
    df = train.copy()
    df.loc[df.index[::37], "monthly_charges"] = np.nan
    df["seen_at"] = pd.Series(pd.date_range("2024-01-01", periods=len(df), freq="h").astype(str))
    flag = pd.Series(np.arange(len(df)) % 3 == 0, dtype=object)
    flag[1500:1510] = None  # only some batches hold a missing value: bool in some, object in others
    df["flag"] = flag
    return df


def test_schema_and_spec_do_not_depend_on_the_batching(data, tmp_path):
    one = infer_schema(_batches(data, len(data)), LABEL, "yes", id_column="customer_id")
    many = infer_schema(_batches(data, 97), LABEL, "yes", id_column="customer_id")
    _same(one, many)
    assert one["columns"]["seen_at"]["kind"] == "timestamp" and one["columns"]["flag"]["kind"] == "categorical"
    # The same rows as one Parquet file and as a folder of shards, read through io.iter_parquet_batches.
    table = pa.Table.from_pandas(data, preserve_index=False)
    io.write_arrow_parquet(table, str(tmp_path / "train.parquet"))
    with io.ShardWriter(str(tmp_path / "train"), rows_per_shard=300) as out:
        out.write(table)
    assert len(io.parquet_files(str(tmp_path / "train"))) == 7
    from_file = infer_schema(str(tmp_path / "train.parquet"), LABEL, "yes", id_column="customer_id")
    _same(from_file, infer_schema(str(tmp_path / "train"), LABEL, "yes", id_column="customer_id"))
    spec_args = dict(bucketize=["*"], crosses=[["contract", "tenure_months"]])
    spec = fit_transform_spec(_batches(data, len(data)), one, **spec_args)
    _same(spec, fit_transform_spec(_batches(data, 97), one, **spec_args))
    _same(fit_transform_spec(str(tmp_path / "train.parquet"), one, **spec_args),
          fit_transform_spec(str(tmp_path / "train"), one, **spec_args))
    assert spec["buckets"] and spec["crosses"]


def test_validation_does_not_depend_on_the_batching(splits_by_ingest):
    tr, ev, te = splits_by_ingest
    whole = {name: _batches(df, len(df)) for name, df in (("train", tr), ("eval", ev), ("test", te))}
    first = validate(whole["train"], {"eval": whole["eval"], "test": whole["test"]}, LABEL, "yes",
                     id_column="customer_id")
    streamed = validate(_batches(tr, 101), {"eval": _batches(ev, 53), "test": _batches(te, 53)}, LABEL, "yes",
                        id_column="customer_id")
    _same(result_to_json(first), result_to_json(streamed))
    _same(first.schema, streamed.schema)
    # Against a reference: a shifted feature drifts and runs out of range the same way.
    shifted = tr.assign(monthly_charges=tr["monthly_charges"] * 3, contract="weekly")
    one = validate(_batches(shifted, len(shifted)), {"test": whole["test"]}, LABEL, "yes", reference_schema=first.schema, id_column="customer_id")
    many = validate(_batches(shifted, 64), {"test": _batches(te, 64)}, LABEL, "yes",
                    reference_schema=first.schema, id_column="customer_id")
    _same(result_to_json(one), result_to_json(many))
    kinds = {a["kind"] for a in result_to_json(many)["anomalies"]}
    assert {"out_of_range", "unseen_categories"} <= kinds
    assert many.drift["psi"]["monthly_charges"] > 0.2


@pytest.fixture(scope="module")
def splits_by_ingest(data):
    rng = np.random.default_rng(0)
    part = rng.choice(3, len(data), p=[0.7, 0.15, 0.15])
    return tuple(data[part == i].drop(columns=["seen_at", "flag"]).reset_index(drop=True) for i in range(3))


def test_quantile_bins_beyond_the_sample_are_the_same_for_any_batching_and_within_the_error():
    values = np.random.default_rng(1).lognormal(size=60_000)
    values[::50] = np.nan
    sample = 2_000
    one, many = NumericStream(sample), NumericStream(sample)
    one.update(values)
    for part in np.array_split(values, 37):
        many.update(part)
    a, b = one.stats(), many.stats()
    assert a["bins"] == b["bins"] and a["bin_freq"] == b["bin_freq"]
    finite = np.sort(values[np.isfinite(values)])
    assert a["mean"] == pytest.approx(finite.mean()) and a["std"] == pytest.approx(finite.std())
    assert a["min"] == finite[0] and a["max"] == finite[-1]
    # Each edge sits at the rank it stands for, within 3 standard deviations of a sampled
    # quantile's rank (the documented error, QUANTILE_RANK_ERROR at the real sample size).
    ranks = np.searchsorted(finite, a["bins"]) / len(finite)
    assert np.abs(ranks - np.arange(1, 10) / 10).max() < 3 * 0.5 / sample ** 0.5


def test_counts_beyond_the_cap_keep_the_frequent_values_and_estimate_the_rest():
    rng = np.random.default_rng(2)
    common = rng.choice(["a", "b", "c"], 30_000)
    rare = np.array([f"id{i}" for i in range(30_000)])
    values = pd.Series(rng.permutation(np.concatenate([common, rare])))
    counts = ValueCounts(cap=1_000)
    for start in range(0, len(values), 3_000):
        counts.update(values[start:start + 3_000].astype("category"))
    top = counts.series()
    assert list(top.index[:3]) == sorted(top.index[:3], key=lambda k: -top[k]) and set(top.index[:3]) == {"a", "b", "c"}
    true = pd.Series(common).value_counts()
    for key in "abc":  # Misra-Gries: low by at most the recorded error
        assert true[key] - counts.error <= top[key] <= true[key]
    assert counts.distinct() == pytest.approx(30_003, rel=0.05)  # the sketch: about 0.8% error


def test_integer_ids_are_told_apart_from_repeated_integers_beyond_the_exact_set():
    rng = np.random.default_rng(3)
    unique, repeated = DistinctInts(cap=10_000), DistinctInts(cap=10_000)
    for i, part in enumerate(np.array_split(rng.permutation(300_000), 30)):
        unique.update(part)
        # No repeat inside a batch, and the exact set is gone by the time a batch repeats another:
        # the distinct-count sketch sees 150,000 values in 300,000 rows.
        repeated.update((i % 15) * 10_000 + rng.permutation(10_000))
    assert unique.all_distinct() and not unique.increasing and unique.seen is None
    assert not repeated.all_distinct() and not repeated.dup
