"""Batch prediction core on one small real model: equality with the served SavedModel across batches
and shards, refusals (missing feature, type change, empty table, unknown model) that leave nothing at
the output path, live metrics on a labelled table, an object-store (fsspec) output."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components._shared import io
from components._shared.errors import DataError, PipelineError, ValidationError
from components.predict.core import PredictConfig, predict
from components.predict.resolve import INFO_FILE, load
from pipelines.data import generate_churn
from tests.stage_helpers import LABEL, prepare, train_small

pytestmark = pytest.mark.slow

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A trained model in the prediction layout (model/, data/, model.json) and its SavedModel."""
    from components._shared.champion import stage_artifacts
    from components.export.core import export

    root = tmp_path_factory.mktemp("predict")
    prepared = prepare(generate_churn(1500, seed=5), str(root / "prep"))
    folder = root / "version"
    model_dir = str(folder / "model")
    train_small(prepared, model_dir, epochs=1)
    stage_artifacts(str(folder), model_dir, "", prepared.schema, prepared.train, {}, {}, {})
    io.write_json({"name": "test-model", "version": "3", "requested": "alias champion", "threshold": THRESHOLD,
                   "auc_at_training": 0.8}, str(folder / INFO_FILE))
    saved = export(model_dir, prepared.test, str(root / "saved_model"), str(root / "tflite"), "test-model",
                   threshold=THRESHOLD).saved_model_dir
    return load(str(folder)), saved


@pytest.fixture(scope="module")
def new_rows(tmp_path_factory):
    """New rows without the label, as CSV and as Parquet (the raw table a user scores)."""
    root = tmp_path_factory.mktemp("new")
    df = generate_churn(2300, seed=99).drop(columns=[LABEL])
    csv = str(root / "new.csv")
    df.to_csv(csv, index=False)
    parquet = str(root / "new.parquet")
    io.write_arrow_parquet(io.read_arrow(csv), parquet)
    return csv, parquet


def _served(saved_model_dir: str, csv: str, spec: dict) -> np.ndarray:
    """What the served SavedModel's serving_default returns for the raw rows of ``csv``: typed inputs as a
    client sends them; an input the signature takes as a string gets the file's raw text."""
    import tensorflow as tf

    from components._shared.transform import raw_features

    fn = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    typed = raw_features(io.read_table(csv), spec)
    text = pd.read_csv(csv, dtype=str, keep_default_na=False)
    by_input = {f["input_name"]: f["name"] for f in spec["numeric"] + spec["categorical"]}
    inputs = {}
    for name, tspec in fn.structured_input_signature[1].items():
        value = typed[name]
        if tspec.dtype == tf.string and value.dtype != object:
            value = text[by_input[name]].to_numpy(dtype=object).astype(str)  # e.g. raw date strings
        inputs[name] = tf.constant(value)
    # The served signature takes dates as the file's strings: the rows are sent as they are in the file.
    assert fn.structured_input_signature[1][next(f["input_name"] for f in spec["numeric"]
                                                 if f["name"] == "signup_date")].dtype == tf.string
    return fn(**inputs)["probability"].numpy().reshape(-1)


def _read_out(path: str) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def test_batches_and_shards_equal_the_served_saved_model(built, new_rows, tmp_path):
    model, saved = built
    csv, parquet = new_rows
    out = str(tmp_path / "preds")
    result = predict(parquet, model, out, id_column="customer_id",
                     config=PredictConfig(batch_rows=700, shard_rows=1000))

    files = sorted(os.listdir(out))
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    got = _read_out(out)
    src = pd.read_csv(csv)
    assert len(got) == len(src) == result.summary["rows"] == 2300
    assert got["customer_id"].tolist() == src["customer_id"].tolist()
    assert set(got["model_name"]) == {"test-model"} and set(got["model_version"]) == {"3"}
    served = _served(saved, csv, io.read_json(os.path.join(model.model_dir, "transform_spec.json")))
    assert np.max(np.abs(got["probability"].to_numpy() - served)) < 1e-4
    assert (got["class_id"].to_numpy() == (got["probability"].to_numpy() >= THRESHOLD)).all()
    assert result.summary["live_metrics"] is None and result.summary["rows_per_second"] > 0
    assert result.summary["scores"]["psi"] < 0.2 and len(result.sample) <= PredictConfig().sample_rows


def test_csv_to_one_file_and_no_id_column_numbers_rows(built, new_rows, tmp_path):
    model, _ = built
    csv, _ = new_rows
    no_id = str(tmp_path / "no_id.csv")
    pd.read_csv(csv).drop(columns=["customer_id"]).to_csv(no_id, index=False)
    out = str(tmp_path / "preds.parquet")
    predict(no_id, model, out)
    got = _read_out(out)
    assert got["row_number"].tolist() == list(range(2300))
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_labelled_table_gets_live_metrics(built, tmp_path):
    model, _ = built
    path = str(tmp_path / "labelled.csv")
    generate_churn(1200, seed=7).to_csv(path, index=False)
    summary = predict(path, model, str(tmp_path / "out")).summary
    live = summary["live_metrics"]
    assert summary["label_column"] == LABEL and live["rows"] == 1200
    assert 0.5 < live["auc"] <= 1 and live["auc_at_training"] == 0.8
    assert live["auc_decay"] == pytest.approx(0.8 - live["auc"])
    assert LABEL in _read_out(str(tmp_path / "out")).columns


@pytest.mark.parametrize("case", ["missing", "type", "empty", "id"])
def test_bad_input_is_one_sentence_and_nothing_is_written(built, new_rows, tmp_path, case):
    model, _ = built
    df = pd.read_csv(new_rows[0])
    if case == "missing":
        df = df.drop(columns=["tenure_months"])
    elif case == "type":
        df["monthly_charges"] = "n/a-" + df["monthly_charges"].astype(str)
    elif case == "empty":
        df = df.iloc[:0]
    path = str(tmp_path / "bad.csv")
    df.to_csv(path, index=False)
    out = str(tmp_path / "out")
    with pytest.raises((DataError, ValidationError)) as err:
        predict(path, model, out, id_column="nope" if case == "id" else "")
    message = str(err.value)
    assert {"missing": "'tenure_months'", "type": "'monthly_charges'", "empty": "no rows", "id": "'nope'"}[case] in message
    assert "\n" not in message
    assert os.listdir(tmp_path) == ["bad.csv"]  # no output, no temporary folder


def test_a_bad_later_shard_leaves_the_previous_output_untouched(built, new_rows, tmp_path):
    model, _ = built
    df = pd.read_csv(new_rows[0])
    folder = tmp_path / "shards"
    folder.mkdir()
    io.write_parquet(df.iloc[:1000], str(folder / "a.parquet"))
    bad = df.iloc[1000:].copy()
    bad["monthly_charges"] = bad["monthly_charges"].astype(str).where(bad.index % 2 == 0, "unknown")
    io.write_parquet(bad, str(folder / "b.parquet"))
    out = tmp_path / "preds.parquet"
    out.write_bytes(b"yesterday's predictions")
    with pytest.raises(ValidationError, match="monthly_charges"):
        predict(str(folder), model, str(out), config=PredictConfig(batch_rows=500))
    assert out.read_bytes() == b"yesterday's predictions"
    assert sorted(os.listdir(tmp_path)) == ["preds.parquet", "shards"]


def test_object_store_output_appears_only_when_complete(built, new_rows):
    import fsspec

    model, _ = built
    fs = fsspec.filesystem("memory")
    summary = predict(new_rows[1], model, "memory://bucket/preds", config=PredictConfig(shard_rows=1000)).summary
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/bucket/preds", detail=False)) == [
        "_SUCCESS", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert summary["files"][0].startswith("memory://") and summary["files"][0].endswith("/bucket/preds/part-00000.parquet")
    assert [p for p in fs.ls("/bucket", detail=False) if ".tmp-" in p] == []


def test_an_unknown_model_or_version_is_one_sentence(tracking_uri):
    from components._shared.champion import find_version

    with pytest.raises(DataError, match="has no model 'nope'"):
        find_version(tracking_uri, "nope")
    with pytest.raises(DataError, match="no registry yet"):
        find_version("sqlite:////nonexistent/mlflow.db", "test-model", "1")
    with pytest.raises(PipelineError):
        find_version(tracking_uri, "it's/bad")


def test_text_late_in_a_csv_names_the_column(built, new_rows, tmp_path, monkeypatch):
    from components.predict import reader

    model, _ = built
    monkeypatch.setattr(reader, "CSV_BLOCK_BYTES", 16 << 10)  # many blocks: the bad value is far from the first
    df = pd.read_csv(new_rows[0])
    df["monthly_charges"] = df["monthly_charges"].astype(object)
    df.loc[2200, "monthly_charges"] = "oops"
    path = str(tmp_path / "late.csv")
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="column 'monthly_charges' of .* changes type part-way"):
        predict(path, model, str(tmp_path / "out"))
    assert os.listdir(tmp_path) == ["late.csv"]


class _FakeBigQuery:
    """Stands in for google.cloud.bigquery.Client (no BigQuery here): tables as lists of Arrow tables."""

    tables: dict = {}

    def __init__(self, project=None):
        self.project = project

    class _Job:
        def result(self):
            return self

    def load_table_from_file(self, fh, table, job_config=None):
        rows = pq.read_table(fh)
        truncate = str(job_config.write_disposition).endswith("WRITE_TRUNCATE")
        self.tables[table] = ([] if truncate else self.tables.get(table, [])) + [rows]
        return self._Job()

    def copy_table(self, source, dest, job_config=None):
        self.tables[dest] = list(self.tables[source])
        return self._Job()

    def delete_table(self, table, not_found_ok=False):
        self.tables.pop(table, None)


def test_bigquery_output_replaces_the_table_through_a_staging_table(built, new_rows, monkeypatch):
    from google.cloud import bigquery

    model, _ = built
    _FakeBigQuery.tables = {"proj.ds.scores": ["yesterday"]}
    monkeypatch.setattr(bigquery, "Client", _FakeBigQuery)
    summary = predict(new_rows[1], model, "bq://proj.ds.scores", config=PredictConfig(shard_rows=1000)).summary
    assert list(_FakeBigQuery.tables) == ["proj.ds.scores"]  # staging table deleted
    loaded = _FakeBigQuery.tables["proj.ds.scores"]
    assert len(loaded) == 3 and sum(t.num_rows for t in loaded) == 2300 == summary["rows"]
    assert summary["files"] == ["bq://proj.ds.scores"]
    with pytest.raises(DataError, match="not bq://project.dataset.table"):
        predict(new_rows[1], model, "bq://proj.scores")
