"""bq:// ingest against the BigQuery emulator (tests/fakes/bigquery_server.py) with the real clients:
the split is computed in BigQuery SQL, rows come through the Storage Read API in parallel streams,
and the split equals the file path's for the same rows and id column (issue 19)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

pytest.importorskip("bqemulator")
pytest.importorskip("google.cloud.bigquery_storage_v1")

from components._shared import io  # noqa: E402
from components._shared import split as splits  # noqa: E402
from components._shared.errors import DataError  # noqa: E402
from components._shared.params import PARAMS  # noqa: E402
from components.ingest.core import ingest  # noqa: E402
from tests.fakes.bigquery_server import BigQueryEmulator  # noqa: E402

LABEL = "churned"


@pytest.fixture(scope="module")
def bq():
    with BigQueryEmulator() as emulator:
        yield emulator


@pytest.fixture
def on_emulator(bq, monkeypatch):
    for key, value in bq.env().items():
        monkeypatch.setenv(key, value)
    return bq


def _ingest(tmp_path, uri, **kwargs):
    out = tmp_path / ("bq" if uri.startswith("bq://") else "file")
    return ingest(uri, LABEL, str(out / "train"), str(out / "eval"), str(out / "test"), **kwargs), out


def _ids_per_split(out, column):
    return {name: sorted(io.read_parquet(str(out / name))[column].astype(str)) for name in ("train", "eval", "test")}


def test_the_emulator_computes_split_py_s_hash_in_sql(bq):
    ids = [str(i) for i in range(0, 3000, 7)] + ["C00042", "é✓-id", "", "x" * 40]
    table = pa.table({"text_id": ids + [None], "int_id": list(range(-5, len(ids) - 5)) + [None]})
    bq.load_arrow(table, f"{bq.project}.hash.ids")
    client = bq.client()
    for column in ("text_id", "int_id"):
        sql = (f"SELECT {column} AS id, {splits.sql_bucket(column)} AS bucket, "
               f"{splits.sql_split_code(column, 0.2, 0.1)} AS code FROM `{bq.project}.hash.ids`")
        rows = [dict(r.items()) for r in client.query(sql).result()]
        got = pa.array([r["id"] for r in rows], type=table.schema.field(column).type)
        assert [r["bucket"] for r in rows] == splits.id_buckets(got).tolist(), column
        assert [r["code"] for r in rows] == splits.assign_by_id(got, 0.2, 0.1).tolist(), column


def test_a_table_is_split_in_sql_read_in_parallel_streams_and_split_as_the_file_is(tmp_path, on_emulator):
    from pipelines.data import generate_churn

    csv = tmp_path / "churn.csv"
    generate_churn(20_000, seed=4).to_csv(csv, index=False)
    rows = pacsv.read_csv(csv)  # the very rows the file path reads
    table_id = on_emulator.load_arrow(rows, f"{on_emulator.project}.shop.churn")

    by_file, file_out = _ingest(tmp_path, str(csv))
    by_bq, bq_out = _ingest(tmp_path, f"bq://{table_id}")

    # The same split, the same label encoding, the same decisions.
    assert _ids_per_split(bq_out, "customer_id") == _ids_per_split(file_out, "customer_id")
    for name in ("train", "test"):
        a, b = (io.read_parquet(str(out / name)).astype({"customer_id": str}).sort_values("customer_id")
                .reset_index(drop=True) for out in (file_out, bq_out))
        assert b[LABEL].dtype == np.int8 and np.array_equal(a[LABEL].to_numpy(), b[LABEL].to_numpy())
        assert np.allclose(a["monthly_charges"], b["monthly_charges"])
    assert (by_bq.id_column, by_bq.id_column_source) == ("customer_id", "detected") == (by_file.id_column,
                                                                                         by_file.id_column_source)
    assert (by_bq.task, by_bq.positive_label, by_bq.rows) == (by_file.task, by_file.positive_label, by_file.rows)
    assert by_bq.columns == by_file.columns

    # The split was computed by BigQuery: the statement the emulator ran holds split.py's expression.
    statements = [job.query for job in on_emulator.client().list_jobs() if getattr(job, "query", None)]
    split_statement = next(s for s in statements if s.startswith("CREATE TABLE"))
    assert splits.sql_split_code("customer_id", PARAMS.eval_fraction, PARAMS.test_fraction) in split_statement
    assert "WHERE `churned` IS NOT NULL" in split_statement
    # Rows came through the Storage Read API: one session per split, restricted to it; >= 2 streams.
    sessions = by_bq.read_sessions
    assert [sessions[n]["row_restriction"] for n in ("train", "eval", "test")] == [f"_ingest_split = {c}"
                                                                                 for c in (0, 1, 2)]
    assert sessions["train"]["streams"] >= 2
    # Each split is a folder of Parquet shards; the temporary table is gone.
    assert io.parquet_files(str(bq_out / "train"))[0].endswith("part-00000.parquet")
    assert not list(on_emulator.client().list_tables(f"{on_emulator.project}.kfp_tf_gate_tmp"))


def test_a_query_with_missing_labels_and_no_id_column(tmp_path, on_emulator):
    rng = np.random.default_rng(0)
    n = 400
    label = rng.choice(["a", "b", "c"], n).astype(object)
    label[:25] = None
    table = pa.table({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n), LABEL: label})
    on_emulator.load_arrow(table, f"{on_emulator.project}.q.t")
    query = f"SELECT x, colour, {LABEL} FROM `{on_emulator.project}.q.t` WHERE x > -10"
    result, out = _ingest(tmp_path, f"bq://{on_emulator.project}?query={query}", min_rows=50)
    assert result.dropped_missing_label == 25  # counted in SQL, filtered in SQL
    assert sum(result.rows.values()) == n - 25
    assert result.task == "multiclass" and result.classes == ["a", "b", "c"]
    assert result.id_column is None and result.split.startswith("by a hash of each row's values")
    assert any("set id_column" in w for w in result.warnings)
    assert set(io.read_parquet(str(out / "eval"))[LABEL]) <= {"a", "b", "c"}


def test_bad_sources_are_one_sentence_data_errors(tmp_path, on_emulator):
    on_emulator.load_arrow(pa.table({"x": [1.0, 2.0], "y": [0, 1]}), f"{on_emulator.project}.bad.t")
    with pytest.raises(DataError, match="cannot read bq://.*nope"):
        _ingest(tmp_path, f"bq://{on_emulator.project}.bad.nope")
    with pytest.raises(DataError, match="the label column 'churned' is not in the data"):
        _ingest(tmp_path, f"bq://{on_emulator.project}.bad.t")
    with pytest.raises(DataError, match="is not bq://project.dataset.table"):
        _ingest(tmp_path, "bq://just-a-project")


def test_a_regression_label_and_a_given_integer_id_split_as_the_file_does(tmp_path, on_emulator):
    rng = np.random.default_rng(3)
    n = 600
    rows = pa.table({"row_id": rng.permutation(n) * 13 - 400, "x": rng.normal(size=n), LABEL: rng.gamma(2.0, size=n)})
    csv = tmp_path / "reg.csv"
    pacsv.write_csv(rows, csv)
    table_id = on_emulator.load_arrow(pacsv.read_csv(csv), f"{on_emulator.project}.reg.t")
    by_file, file_out = _ingest(tmp_path, str(csv), id_column="row_id", task="regression")
    by_bq, bq_out = _ingest(tmp_path, f"bq://{table_id}", id_column="row_id", task="regression")
    assert _ids_per_split(bq_out, "row_id") == _ids_per_split(file_out, "row_id")  # negative ids too
    assert (by_bq.task, by_bq.id_column_source, by_bq.rows) == ("regression", "given", by_file.rows)
    train = io.read_parquet(str(bq_out / "train"))
    assert train[LABEL].dtype == np.float64 and train[LABEL].min() > 0
