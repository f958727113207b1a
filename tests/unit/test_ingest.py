"""Ingest core: reading, label encoding, deterministic splits, and every bad-input sentence."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from components._shared import io
from components._shared.errors import DataError
from components._shared.labels import encode_label
from components.ingest.core import ingest, preflight, split_assignments
from pipelines.data import generate_churn


@pytest.fixture(scope="module")
def small_df():
    return generate_churn(600, seed=5)


def _run(tmp_path, uri, label="churned", **kwargs):
    out = tmp_path / "out"
    return ingest(
        uri,
        label,
        str(out / "train.parquet"),
        str(out / "eval.parquet"),
        str(out / "test.parquet"),
        **kwargs,
    )


def _csv(tmp_path, df, name="data.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return str(path)


# --------------------------------------------------------------------------- happy path


def test_ingest_splits_all_rows_and_encodes_label(tmp_path, churn_csv, churn_df):
    result = _run(tmp_path, churn_csv, id_column="customer_id")

    assert sum(result.rows.values()) == len(churn_df)
    assert result.positive_label == "yes" and result.negative_label == "no"
    assert result.dropped_missing_label == 0
    parts = {
        s: io.read_parquet(str(tmp_path / "out" / f"{s}.parquet"))
        for s in ("train", "eval", "test")
    }
    assert {s: len(p) for s, p in parts.items()} == result.rows
    # Roughly 70/10/20 and no record in two splits.
    assert 0.6 < result.rows["train"] / len(churn_df) < 0.8
    ids = [set(p["customer_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # Label is 0/1 and matches the raw "yes" values.
    everything = pd.concat(parts.values())
    assert set(everything["churned"].unique()) == {0, 1}
    raw = churn_df.set_index("customer_id")["churned"]
    joined = everything.set_index("customer_id")["churned"]
    assert ((raw.loc[joined.index] == "yes").astype(int) == joined).all()


def _sharded(tmp_path, df, cut=250):
    shards = tmp_path / "shards"
    shards.mkdir()
    df.iloc[:cut].to_csv(shards / "part-0.csv", index=False)
    df.iloc[cut:].to_csv(shards / "part-1.csv", index=False)
    (shards / "_SUCCESS").write_text("")  # marker files are ignored
    return str(shards)


def test_a_folder_of_shards_reads_as_one_table(tmp_path, small_df):
    single = _run(tmp_path / "a", _csv(tmp_path, small_df), id_column="customer_id")
    sharded = _run(tmp_path / "b", _sharded(tmp_path, small_df), id_column="customer_id")
    assert sharded.rows == single.rows
    for split in ("train", "eval", "test"):
        a = io.read_parquet(str(tmp_path / f"a/out/{split}.parquet"))
        b = io.read_parquet(str(tmp_path / f"b/out/{split}.parquet"))
        assert sorted(a["customer_id"].astype(str)) == sorted(b["customer_id"].astype(str))


def test_content_hash_is_independent_of_shard_layout(tmp_path, small_df):
    single = _run(tmp_path / "a", _csv(tmp_path, small_df))
    sharded = _run(tmp_path / "b", _sharded(tmp_path, small_df))
    assert sharded.content_hash == single.content_hash


def test_content_hash_changes_with_content(tmp_path, small_df):
    a = _run(tmp_path / "a", _csv(tmp_path, small_df, "a.csv"))
    changed = small_df.copy()
    changed.loc[0, "tenure_months"] += 1
    b = _run(tmp_path / "b", _csv(tmp_path, changed, "b.csv"))
    assert a.content_hash != b.content_hash
    assert len(a.content_hash) == 64


def test_same_input_gives_same_splits(tmp_path, small_df):
    path = _csv(tmp_path, small_df)
    a = _run(tmp_path / "a", path, seed=3)
    b = _run(tmp_path / "b", path, seed=3)
    assert a.rows == b.rows and a.content_hash == b.content_hash
    pd.testing.assert_frame_equal(
        io.read_parquet(str(tmp_path / "a/out/test.parquet")),
        io.read_parquet(str(tmp_path / "b/out/test.parquet")),
    )


def test_hash_split_keeps_a_record_in_its_split_when_rows_are_appended(tmp_path):
    base = generate_churn(800, seed=1)
    grown = pd.concat(
        [base, generate_churn(400, seed=2).assign(customer_id=lambda d: "N" + d["customer_id"])]
    )
    before = split_assignments(base, "customer_id", 0.1, 0.2, seed=0)
    after = split_assignments(grown, "customer_id", 0.1, 0.2, seed=123)  # the seed plays no part

    assert (after[: len(base)] == before).all()
    # Through ingest as well: every old id lands in the same split file.
    first = _run(tmp_path / "a", _csv(tmp_path, base, "base.csv"), id_column="customer_id")
    second = _run(tmp_path / "b", _csv(tmp_path, grown, "grown.csv"), id_column="customer_id")
    assert second.rows["test"] > first.rows["test"]
    for split in ("train", "eval", "test"):
        old = set(io.read_parquet(str(tmp_path / f"a/out/{split}.parquet"))["customer_id"])
        new = io.read_parquet(str(tmp_path / f"b/out/{split}.parquet"))["customer_id"]
        assert old <= set(new)


def test_random_split_without_id_column_depends_on_seed(small_df):
    a = split_assignments(small_df, None, 0.1, 0.2, seed=1)
    b = split_assignments(small_df, None, 0.1, 0.2, seed=1)
    c = split_assignments(small_df, None, 0.1, 0.2, seed=2)
    assert (a == b).all() and not (a == c).all()
    assert set(a) == {0, 1, 2}


def test_positive_label_override(tmp_path, small_df):
    result = _run(tmp_path, _csv(tmp_path, small_df), positive_label="no")
    assert (result.positive_label, result.negative_label) == ("no", "yes")
    train = io.read_parquet(str(tmp_path / "out/train.parquet"))
    # "no" is the majority class, so the positives are now the majority.
    assert train["churned"].mean() > 0.5


@pytest.mark.parametrize(
    "values, positive, negative, first_two",
    [
        (["yes", "no"], "yes", "no", [1, 0]),
        ([1, 0], "1", "0", [1, 0]),
        ([1.0, 0.0], "1", "0", [1, 0]),
        ([True, False], "True", "False", [1, 0]),
        (["churn", "stay"], "stay", "churn", [0, 1]),  # no known token: the larger value
    ],
)
def test_encode_label_infers_the_positive_value(values, positive, negative, first_two):
    y, pos, neg = encode_label(pd.Series(values * 5), "label")
    assert (pos, neg) == (positive, negative)
    assert y.tolist() == first_two * 5


def test_rows_without_label_are_dropped_and_counted(tmp_path, small_df):
    df = small_df.copy()
    df.loc[:9, "churned"] = None
    result = _run(tmp_path, _csv(tmp_path, df))
    assert result.dropped_missing_label == 10
    assert sum(result.rows.values()) == len(df) - 10


# --------------------------------------------------------------------------- bad input


def test_missing_label_column(tmp_path, small_df):
    path = _csv(tmp_path, small_df.drop(columns="churned"))
    with pytest.raises(
        DataError,
        match=r"the label column 'churned' is not in the data .*data\.csv \(columns: customer_id, ",
    ):
        _run(tmp_path, path)


def test_no_label_given(tmp_path, churn_csv):
    with pytest.raises(DataError, match=r"^no label column was given \(set --label\)$"):
        _run(tmp_path, churn_csv, label="")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"the data file .*empty\.csv is empty"):
        _run(tmp_path, str(path))


def test_header_only_csv(tmp_path, small_df):
    path = _csv(tmp_path, small_df.head(0), "header.csv")
    with pytest.raises(DataError, match=r"the data .*header\.csv has no rows"):
        _run(tmp_path, path)


def test_path_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "nowhere.csv")
    with pytest.raises(DataError, match=rf"^the data path {missing} does not exist$"):
        _run(tmp_path, missing)


def test_not_a_table(tmp_path, small_df):
    path = _csv(tmp_path, small_df, "data.txt")
    with pytest.raises(DataError, match=r"data\.txt is neither CSV nor Parquet"):
        _run(tmp_path, path)


def test_folder_without_tables(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"the folder .*folder holds no CSV or Parquet files"):
        _run(tmp_path, str(tmp_path / "folder"))


def test_label_with_three_values(tmp_path, small_df):
    df = small_df.copy()
    df.loc[:20, "churned"] = "maybe"
    with pytest.raises(
        DataError,
        match=r"the label column 'churned' must have exactly two values for "
        r"binary classification but has 3: 'maybe', 'no', 'yes'",
    ):
        _run(tmp_path, _csv(tmp_path, df), task="binary")
    # Without --task, three string values are classes.
    result = _run(tmp_path, _csv(tmp_path, df))
    assert result.task == "multiclass" and result.classes == ["maybe", "no", "yes"]
    assert result.positive_label is None


def test_integer_label_with_a_few_values_asks_for_the_task(tmp_path, small_df):
    df = small_df.assign(churned=[i % 4 for i in range(len(small_df))])
    with pytest.raises(DataError, match=r"4 integer values \(0 to 3\).*set --task multiclass or --task regression"):
        _run(tmp_path, _csv(tmp_path, df))
    result = _run(tmp_path, _csv(tmp_path, df), task="regression")
    assert result.task == "regression" and "given" in result.task_reason


def test_regression_label_must_be_finite(tmp_path, small_df):
    df = small_df.assign(churned=["lots" if i == 3 else str(i + 0.5) for i in range(len(small_df))])
    with pytest.raises(DataError, match=r"regression label 'churned' has 1 value\(s\) that are not finite.*'lots'"):
        _run(tmp_path, _csv(tmp_path, df), task="regression")


def test_label_with_one_value(tmp_path, small_df):
    df = small_df.assign(churned="no")
    with pytest.raises(DataError, match=r"must have exactly two values .* but has 1: 'no'"):
        _run(tmp_path, _csv(tmp_path, df))


def test_positive_label_that_is_not_a_label_value(tmp_path, small_df):
    with pytest.raises(
        DataError, match=r"positive_label 'maybe' is not a value of the label column 'churned'"
    ):
        _run(tmp_path, _csv(tmp_path, small_df), positive_label="maybe")


def test_only_the_label_column(tmp_path, small_df):
    with pytest.raises(DataError, match=r"has only the label column; there are no features"):
        _run(tmp_path, _csv(tmp_path, small_df[["churned"]]))


def test_too_few_rows(tmp_path, small_df):
    with pytest.raises(DataError, match=r"has 20 labelled rows; at least 50 are needed"):
        _run(tmp_path, _csv(tmp_path, small_df.head(20)))


def test_shards_with_different_headers(tmp_path, small_df):
    shards = tmp_path / "shards"
    shards.mkdir()
    small_df.iloc[:300].to_csv(shards / "a.csv", index=False)
    small_df.iloc[300:].drop(columns="region").to_csv(shards / "b.csv", index=False)
    with pytest.raises(
        DataError, match=r"the shard .*b\.csv has columns \[.*\] but .*a\.csv has \[.*'region'.*\]"
    ):
        _run(tmp_path, str(shards))


def test_shards_mixing_csv_and_parquet(tmp_path, small_df):
    shards = tmp_path / "shards"
    shards.mkdir()
    small_df.iloc[:300].to_csv(shards / "a.csv", index=False)
    small_df.iloc[300:].to_parquet(shards / "b.parquet")
    with pytest.raises(DataError, match=r"mixes CSV and Parquet files; use one format"):
        _run(tmp_path, str(shards))


def test_empty_split(tmp_path, small_df):
    with pytest.raises(
        DataError, match=r"the eval split of .* is empty \(600 rows in all\); use more data"
    ):
        _run(tmp_path, _csv(tmp_path, small_df), eval_fraction=0.0001, test_fraction=0.2)


def test_empty_split_by_an_id_column_with_one_value_names_the_column(tmp_path, small_df):
    df = small_df.assign(customer_id="C1")
    with pytest.raises(
        DataError,
        match=r"split of .* is empty: rows are split by the id column 'customer_id', "
        r"which has 1 distinct value in 600 rows$",
    ):
        _run(tmp_path, _csv(tmp_path, df), id_column="customer_id")


def test_invalid_split_fractions(tmp_path, small_df):
    with pytest.raises(
        DataError, match=r"eval_fraction \(0\.5\) and test_fraction \(0\.6\) must be in \(0, 1\)"
    ):
        _run(tmp_path, _csv(tmp_path, small_df), eval_fraction=0.5, test_fraction=0.6)


def test_unknown_id_column(tmp_path, small_df):
    with pytest.raises(DataError, match=r"the id column 'cust' is not in the data"):
        _run(tmp_path, _csv(tmp_path, small_df), id_column="cust")


def test_text_in_a_numeric_column_is_kept_as_text_for_validation(tmp_path, small_df):
    df = small_df.astype({"monthly_charges": object})
    df.loc[:5, "monthly_charges"] = "unknown"
    _run(tmp_path, _csv(tmp_path, df))
    train = io.read_parquet(str(tmp_path / "out/train.parquet"))
    # Not coerced to NaN silently: validation sees (and flags) the text.
    assert not pd.api.types.is_numeric_dtype(train["monthly_charges"])


def test_parquet_input(tmp_path, small_df):
    path = str(tmp_path / "data.parquet")
    small_df.to_parquet(path)
    result = _run(tmp_path, path)
    assert sum(result.rows.values()) == len(small_df)


# --------------------------------------------------------------------------- preflight


def test_preflight_accepts_good_csv_parquet_and_folders(tmp_path, small_df):
    preflight(_csv(tmp_path, small_df), "churned")
    small_df.to_parquet(tmp_path / "data.parquet")
    preflight(str(tmp_path / "data.parquet"), "churned")
    (tmp_path / "shards").mkdir()
    small_df.to_csv(tmp_path / "shards" / "a.csv", index=False)
    preflight(str(tmp_path / "shards"), "churned")
    preflight("gs://bucket/data.csv", "churned")  # remote sources are left to the ingest task


def test_preflight_missing_label(tmp_path, small_df):
    with pytest.raises(
        DataError,
        match=r"the label column 'target' is not in the data .* \(columns: customer_id, signup_date",
    ):
        preflight(_csv(tmp_path, small_df), "target")


def test_preflight_missing_label_in_parquet(tmp_path, small_df):
    small_df.to_parquet(tmp_path / "data.parquet")
    with pytest.raises(DataError, match=r"the label column 'target' is not in the data"):
        preflight(str(tmp_path / "data.parquet"), "target")


def test_preflight_no_label_given(tmp_path, small_df):
    with pytest.raises(DataError, match=r"no label column was given"):
        preflight(_csv(tmp_path, small_df), "")


def test_preflight_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"the data file .*empty\.csv is empty"):
        preflight(str(tmp_path / "empty.csv"), "churned")


def test_preflight_header_only(tmp_path, small_df):
    with pytest.raises(DataError, match=r"the data file .*header\.csv has a header but no rows"):
        preflight(_csv(tmp_path, small_df.head(0), "header.csv"), "churned")


def test_preflight_blank_header(tmp_path):
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(DataError, match=r"the data file .*blank\.csv has no header line"):
        preflight(str(tmp_path / "blank.csv"), "churned")


def test_preflight_empty_parquet(tmp_path, small_df):
    small_df.head(0).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(DataError, match=r"the data file .*empty\.parquet has no rows"):
        preflight(str(tmp_path / "empty.parquet"), "churned")


def test_preflight_path_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r"the data path .*nowhere\.csv does not exist"):
        preflight(str(tmp_path / "nowhere.csv"), "churned")


def test_preflight_gzip_csv(tmp_path, small_df):
    path = tmp_path / "data.csv.gz"
    small_df.to_csv(path, index=False, compression="gzip")
    preflight(str(path), "churned")
    assert os.path.getsize(path) > 0
    with pytest.raises(DataError, match=r"the label column 'target'"):
        preflight(str(path), "target")
