"""Evaluate, compare and the threshold choice score their split batch by batch: every number equals
the whole-split computation (io.read_parquet of every column, one scorer call, the same metric
functions), for a folder of several shards and for one file of several row groups."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from components._shared import io, scoring
from pipelines.data import generate_churn
from tests.stage_helpers import prepare, train_small

pytestmark = pytest.mark.slow

BATCH = 8192  # scoring batch in these tests (SCORE_ROWS is 131072): several batches per split
SLICES = ["contract", "region", "tier"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A challenger trained on a small table, a champion, and a ~24k-row split (its train split's
    rows repeated, plus an integer column ``tier`` whose missing values are all in the last shard)
    written as a folder of 5000-row shards and as one file of 3000-row row groups."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from components._shared.model import SCORER_FILE

    root = tmp_path_factory.mktemp("stream")
    small = prepare(generate_churn(3000, seed=5), str(root / "small"))
    challenger = str(root / "challenger")
    train_small(small, challenger, epochs=1)
    # The champion: the same model without its TFLite scorer, so it scores through Keras (other
    # outputs, in chunks of 8192 rows) where the challenger scores through TFLite (4096).
    champion = str(root / "champion")
    shutil.copytree(challenger, champion)
    os.remove(os.path.join(champion, SCORER_FILE))
    table = io.read_parquet_arrow(small.train)
    table = pa.concat_tables([table] * (3 * BATCH // table.num_rows))  # several batches, cheaply
    n = table.num_rows
    tier = [None if i >= n - 1500 and i % 4 == 0 else i % 3 for i in range(n)]
    table = table.append_column("tier", pa.array(tier, type=pa.int64()))
    folder, single = str(root / "test_shards"), str(root / "test.parquet")
    io.write_parquet_shards(table, folder, rows_per_shard=5000)
    pq.write_table(table, single, row_group_size=3000)
    empty = str(root / "empty")
    io.write_parquet_shards(table.slice(0, 0), empty)
    assert len(io.parquet_files(folder)) > 2 and n > 2 * BATCH
    return {"small": small, "challenger": challenger, "champion": champion, "splits": (folder, single),
            "empty": empty, "rows": n}


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setattr(scoring, "SCORE_ROWS", BATCH)


def whole_split(model_dir: str, path: str):
    """The whole-split reference: every column in one DataFrame, scored at once."""
    from components._shared.labels import labels
    from components._shared.model import load_scorer
    from components._shared.transform import encode

    spec = scoring.model_spec(model_dir)
    df = io.read_parquet(path)
    return df, labels(df, spec), scoring.as_task_output(load_scorer(model_dir)(encode(df, spec)), spec)


def test_batches_are_typed_as_the_whole_split(setup):
    from components._shared.scoring import _split_batches

    for path in setup["splits"]:
        whole = io.read_parquet(path)
        frames = [df for _, df in _split_batches(path, list(whole.columns), BATCH)]
        assert [len(f) for f in frames][:2] == [BATCH, BATCH] and sum(map(len, frames)) == setup["rows"]
        got = pd.concat(frames, ignore_index=True)
        assert whole["tier"].dtype == np.float64 and frames[0]["tier"].dtype == np.float64  # nulls only later
        for c in whole.columns:
            if isinstance(whole[c].dtype, pd.CategoricalDtype):
                assert isinstance(frames[0][c].dtype, pd.CategoricalDtype), c
                pd.testing.assert_series_equal(got[c].astype(object), whole[c].astype(object), check_names=False)
            else:
                pd.testing.assert_series_equal(got[c], whole[c], check_names=False)


def test_evaluate_equals_the_whole_split(setup):
    from components._shared.threshold import read_threshold
    from components.evaluate.core import evaluate, evaluate_predictions

    model_dir = setup["challenger"]
    spec = scoring.model_spec(model_dir)
    for path in setup["splits"]:
        ev = evaluate(model_dir, path, setup["small"].eval, slice_columns=SLICES, min_slice_rows=30)
        df, y, p = whole_split(model_dir, path)
        ref = evaluate_predictions(y, p, None, None, df, spec, SLICES, 30, threshold=read_threshold(model_dir))
        assert ev.to_dict() == ref.to_dict()
        assert ev.confusion == ref.confusion and ev.metrics["rows"] == setup["rows"]
        assert np.array_equal(np.asarray(ev.roc, dtype=object), np.asarray(ref.roc, dtype=object))
        assert "1.0" in ev.slices["tier"]["slices"]  # the integer column with missing values, as pandas types it


def test_threshold_equals_the_whole_split(setup):
    from components._shared.metrics import best_threshold
    from components._shared.threshold import choose_threshold

    model_dir = setup["challenger"]
    for path in setup["splits"]:
        _, y, p = whole_split(model_dir, path)
        assert choose_threshold(model_dir, path) == (best_threshold(y, p), setup["rows"])
    assert choose_threshold(model_dir, setup["empty"]) == (0.5, 0)


def test_compare_equals_the_whole_split(setup, tmp_path):
    from components.compare.core import Gates, champion_scorer, compare, compare_with_champion
    from components.evaluate.core import evaluate

    model_dir, champion = setup["challenger"], setup["champion"]
    spec = scoring.model_spec(model_dir)
    no_model = str(tmp_path / "no_model")
    os.makedirs(no_model)
    for path in setup["splits"]:
        ev = evaluate(model_dir, path, setup["small"].eval).to_dict()
        df, y, p = whole_split(model_dir, path)
        for champ in (champion, no_model) if path == setup["splits"][0] else (champion,):
            got = compare(model_dir, path, ev, Gates(), champion_dir=champ, champion_version="4", n_boot=50)
            ref = compare_with_champion(dict(ev["metrics"]), y, p, df, Gates(), champion_scorer(champ, spec), "4",
                                        threshold=ev["threshold"], n_boot=50, spec=spec)
            assert got.to_dict() == ref.to_dict()
            if champ == no_model:
                assert got.champion is None and "could not be re-scored" in " ".join(got.reasons)
            else:
                assert got.comparison["rows"] == setup["rows"] and got.champion["auc"] > 0.5


def test_a_bad_label_is_reported_for_the_whole_split(tmp_path):
    """A multiclass label outside the model's classes in two batches: the error counts both rows,
    as the whole-split path did, not the first batch's one."""
    import pyarrow as pa

    from components._shared.errors import DataError

    n = 3 * BATCH
    label = ["a" if i % 2 else "b" for i in range(n)]
    label[100] = label[n - 5] = "z"
    path = str(tmp_path / "split")
    io.write_parquet_shards(pa.table({"x": np.arange(n, dtype=np.float64), "y": label}), path, rows_per_shard=7000)
    spec = {"task": "multiclass", "classes": ["a", "b"], "label": "y", "categorical": [],
            "numeric": [{"name": "x", "kind": "float"}]}
    with pytest.raises(DataError, match=r"has 2 row\(s\) whose class 'z'"):
        scoring.score_split(path, spec, {"m": lambda df: np.zeros((len(df), 2))})
