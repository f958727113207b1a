"""The champion's artifact layout and the registry lookup's short cuts (no registry needed)."""

from __future__ import annotations

import os

import pandas as pd

from components._shared import champion, io


def test_stage_artifacts_writes_the_layout(tmp_path):
    train = tmp_path / "train.parquet"
    io.write_parquet(pd.DataFrame({"a": range(30), "churned": [0, 1] * 15}), str(train))
    arts = champion.stage_artifacts(str(tmp_path / "v"), "/m", "/sm", {"columns": {}}, str(train),
                                    {"metrics": {}}, {"promote": True}, {"rows": {}})
    assert set(arts) == {champion.MODEL, champion.SAVED_MODEL, champion.DATA, champion.REPORTS}
    assert sorted(os.listdir(arts[champion.DATA])) == [champion.REFERENCE_FILE, champion.SCHEMA_FILE]
    assert sorted(os.listdir(arts[champion.REPORTS])) == sorted(
        [champion.EVALUATION_FILE, champion.DECISION_FILE, champion.INGEST_FILE])
    assert len(io.read_parquet(os.path.join(arts[champion.DATA], champion.REFERENCE_FILE))) == 30


def test_no_registry_means_no_champion_without_touching_it(tmp_path):
    db = tmp_path / "mlflow.db"
    assert champion.absent_reason("") == "no registry configured"
    assert champion.absent_reason(f"sqlite:///{db}") == "no registry yet"
    assert champion.find_champion(f"sqlite:///{db}", "m") is None and not db.exists()
    assert champion.find_champion("", "m") is None
