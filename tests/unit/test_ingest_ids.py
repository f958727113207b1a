"""Splits by id (given, detected, none), true messages, BOM-tolerant and binary-proof reading (issue 14)."""

from __future__ import annotations

import gzip
import logging
import os

import numpy as np
import pandas as pd
import pytest

from components._shared import io
from components._shared.anomalies import check_against_schema
from components._shared.errors import DataError
from components._shared.schema import (
    ID_DETECTED_REASON,
    detect_id_column,
    feature_names,
    infer_schema,
)
from components.engineer.core import fit_transform_spec
from components.ingest.core import ingest, preflight
from components.validate.core import validate
from pipelines.data import generate_churn

LABEL = "churned"


@pytest.fixture(scope="module")
def churn():
    return generate_churn(600, seed=5)


def _run(tmp_path, uri, label=LABEL, **kwargs):
    out = tmp_path / "out"
    return ingest(uri, label, str(out / "train.parquet"), str(out / "eval.parquet"), str(out / "test.parquet"),
                  **kwargs)


def _split_of(tmp_path, column):
    """{id: split name} of an ingest run's output."""
    out = {}
    for split in ("train", "eval", "test"):
        for value in io.read_parquet(str(tmp_path / "out" / f"{split}.parquet"))[column].astype(str):
            out[value] = split
    return out


# --------------------------------------------------------------------------- id detection


def test_detection_picks_the_column_named_like_an_id_not_other_unique_columns():
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({
        "Unnamed: 0": np.arange(n),  # a pandas index written to CSV: unique, but not an id by name
        "amount": rng.normal(size=n),  # a float that happens to be unique
        "name": [f"person {i}" for i in range(n)],  # unique text, not named like an id
        "customerID": [f"C{i:05d}" for i in range(n)],
        "key": rng.integers(0, 12, n),  # named like an id but not unique (a musical key)
        "y": rng.integers(0, 2, n),
    })
    assert detect_id_column(df, "y")[0] == "customerID"
    # An integer id goes before a text one; the label is never an id.
    assert detect_id_column(df.assign(order_id=np.arange(n) * 7), "y")[0] == "order_id"
    assert detect_id_column(df.drop(columns=["customerID"]), "y") == (None, None)
    # A float id (integers with a gap read as float) and an id with a missing value do not qualify.
    assert detect_id_column(df.assign(customerID=np.arange(n) + 0.5), "y") == (None, None)
    assert detect_id_column(df.assign(customerID=[None] + list(df["customerID"][1:])), "y") == (None, None)


def test_ingest_hashes_on_the_detected_id_and_says_so(tmp_path, churn, caplog):
    path = tmp_path / "data.csv"
    churn.to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="components.ingest.core"):
        result = _run(tmp_path, str(path))
    assert (result.id_column, result.id_column_source) == ("customer_id", "detected")
    assert result.split.startswith("by a hash of the id column 'customer_id', detected (named like an identifier")
    assert result.warnings == []
    assert "split by a hash of the id column 'customer_id'" in caplog.text
    assert result.to_dict()["id_column"] == "customer_id"  # ingest_info carries it


def test_a_growing_shuffled_table_keeps_old_rows_in_their_split_with_the_detected_id(tmp_path):
    base = generate_churn(800, seed=1)
    new = generate_churn(400, seed=2).assign(customer_id=lambda d: "N" + d["customer_id"])
    grown = pd.concat([new.iloc[:200], base, new.iloc[200:]]).sample(frac=1, random_state=3)
    base.to_csv(tmp_path / "base.csv", index=False)
    grown.to_csv(tmp_path / "grown.csv", index=False)
    _run(tmp_path / "a", str(tmp_path / "base.csv"))
    second = _run(tmp_path / "b", str(tmp_path / "grown.csv"), seed=99)  # the seed plays no part
    assert second.id_column_source == "detected"
    before, after = _split_of(tmp_path / "a", "customer_id"), _split_of(tmp_path / "b", "customer_id")
    assert all(after[i] == s for i, s in before.items())


def test_without_an_id_column_the_split_warns_about_the_champion_comparison(tmp_path, churn, caplog):
    path = tmp_path / "data.csv"
    churn.drop(columns=["customer_id"]).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="components.ingest.core"):
        result = _run(tmp_path, str(path))
    assert result.id_column is None and result.id_column_source is None
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("rows are split by row position (seeded): no id column was given or found")
    assert "the champion comparison may favour the champion" in warning
    assert warning in caplog.text


def test_id_column_none_turns_detection_off_and_a_given_column_wins(tmp_path, churn):
    path = tmp_path / "data.csv"
    churn.assign(row_key=[f"K{i}" for i in range(len(churn))]).to_csv(path, index=False)
    off = _run(tmp_path / "a", str(path), id_column="none")
    assert off.id_column is None and "as id_column is 'none'" in off.warnings[0]
    given = _run(tmp_path / "b", str(path), id_column="row_key")
    assert (given.id_column, given.id_column_source, given.warnings) == ("row_key", "given", [])


def test_validate_excludes_the_detected_id_column_and_says_why(tmp_path, churn):
    path = tmp_path / "data.csv"
    churn.to_csv(path, index=False)
    info = _run(tmp_path, str(path))
    train = io.read_parquet(str(tmp_path / "out" / "train.parquet"))
    result = validate(train, {}, LABEL, "yes", id_column=info.id_column, id_detected=True)
    entry = result.schema["columns"]["customer_id"]
    assert (entry["kind"], entry["role"], entry["reason"]) == ("id", "excluded", ID_DETECTED_REASON)
    assert "customer_id" not in feature_names(result.schema)


def test_a_small_table_still_treats_an_integer_named_id_as_an_id():
    df = pd.DataFrame({"id": np.arange(40), "x": np.arange(40) % 7, "y": [0, 1] * 20})
    schema = infer_schema(df, "y")
    assert schema["columns"]["id"]["role"] == "excluded"
    assert schema["columns"]["x"]["role"] == "feature"


# --------------------------------------------------------------------------- reading


def test_a_utf8_bom_before_the_first_header_name_is_ignored(tmp_path, churn):
    body = churn[["churned"] + [c for c in churn.columns if c != "churned"]].to_csv(index=False).encode()
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + body)
    preflight(str(path), "churned")  # the label is the first name, right after the mark
    result = _run(tmp_path, str(path))
    assert result.columns[0] == "churned" and sum(result.rows.values()) == len(churn)
    # Every other read path too: gzip, and the monitor's windows (io.read_table).
    gz = tmp_path / "bom.csv.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + body))
    preflight(str(gz), "churned")
    assert io.read_table(str(gz)).columns[0] == "churned"
    assert io.read_table(str(path)).columns[0] == "churned"


@pytest.mark.parametrize("content, why", [
    (bytes(range(1, 256)) * 20, "not UTF-8 text"),
    ("caf\u00e9,churned\n1,0\n".encode("latin-1"), "text in another encoding"),
    (b"\x7fELF\x02\x01\x01\x00" + os.urandom(3000), "binary data, not text"),  # /bin/ls, say
    (gzip.compress(b"a,b\n1,2\n"), "gzip-compressed; name it .csv.gz"),
])
def test_a_binary_file_named_csv_fails_with_one_sentence(tmp_path, content, why):
    path = tmp_path / "junk.csv"
    path.write_bytes(content)
    for step in (lambda: preflight(str(path), LABEL), lambda: _run(tmp_path, str(path)), lambda: io.read_table(str(path))):
        with pytest.raises(DataError) as err:
            step()
        message = str(err.value)
        assert message.startswith(f"the file {path} is not a readable CSV or Parquet table: ")
        assert why in message and message.isprintable()


def test_a_batch_to_score_reads_like_ingest_bom_spaces_and_junk(tmp_path, churn):
    from components.predict.reader import open_table

    path = tmp_path / "batch.csv"
    path.write_bytes(b"\xef\xbb\xbf" + churn.rename(columns={"region": " region "}).to_csv(index=False).encode())
    stream = open_table(str(path), 1000)
    assert stream.columns[0] == "customer_id" and "region" in stream.columns
    assert next(iter(stream.batches())).schema.names == stream.columns
    path.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(DataError, match=r"is not a readable CSV or Parquet table: its first bytes are binary data"):
        open_table(str(path), 1000)


def test_a_parquet_file_named_csv_is_named_as_such(tmp_path, churn):
    path = tmp_path / "data.csv"
    churn.to_parquet(path)
    with pytest.raises(DataError, match=r"is not a readable CSV or Parquet table: it is a Parquet file; name it \.parquet$"):
        preflight(str(path), LABEL)


def test_the_cli_exits_non_zero_with_one_line_on_a_binary_file(tmp_path, capsys):
    from pipelines.__main__ import main

    path = tmp_path / "junk.csv"
    path.write_bytes(b"\x00\x01\x02garbage" * 100)
    code = main(["run", "--data", str(path), "--label", LABEL, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"error: the file {path} is not a readable CSV or Parquet table: its first bytes are binary data, not text"


# --------------------------------------------------------------------------- true messages


def test_an_all_missing_column_is_called_empty_not_text(churn):
    train = churn.assign(tenure_months=churn["tenure_months"].astype("float64"))
    schema = infer_schema(train, LABEL, id_column="customer_id")
    window = train.assign(tenure_months=pd.Series([None] * len(train), dtype="object"))  # all-null, read as text
    messages = [a.message for a in check_against_schema(window, schema, "window", 1, 0.1, 1.0, 1.0)]
    assert "window: column 'tenure_months' is entirely empty: every value is missing (schema: 0.0%)" in messages
    assert not any("holds text" in m for m in messages)
    # In the train split itself: excluded, and called empty rather than constant.
    result = validate(train.assign(extra=np.nan), {}, LABEL, "yes", id_column="customer_id")
    assert "train: column 'extra' is entirely empty (every value is missing); excluded from features" in [
        a.message for a in result.anomalies]


def test_excluded_from_features_only_for_columns_that_are_excluded(churn):
    train = churn.assign(seq=np.arange(len(churn)))  # an integer unique per row: looks like an id
    reference = infer_schema(train.assign(seq=np.arange(len(train)) % 5), LABEL, id_column="customer_id")
    assert reference["columns"]["seq"]["role"] == "feature"
    result = validate(train, {}, LABEL, "yes", reference_schema=reference, id_column="customer_id")
    assert result.schema["columns"]["seq"]["role"] == "feature"  # the champion's feature stays one
    excluded = [a.column for a in result.anomalies if "excluded" in a.message]
    assert "seq" not in excluded and "customer_id" in excluded


def test_engineer_lists_a_feature_with_no_value_as_excluded(churn):
    train = churn.assign(tenure_months=np.nan)
    reference = infer_schema(churn, LABEL, id_column="customer_id")
    result = validate(train, {}, LABEL, "yes", reference_schema=reference, id_column="customer_id")
    spec = fit_transform_spec(train, result.schema)
    assert "tenure_months" in spec["excluded"]
    assert "tenure_months" not in [f["name"] for f in spec["numeric"]]
