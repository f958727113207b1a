"""The split rule from ingest to the champion comparison: compare warns when the champion's splits
were made by another rule (or none was recorded), in a real MLflow registry (tests/conftest.py)."""

from __future__ import annotations

import pytest

from components._shared import champion, io, lineage, split
from components.compare.core import Gates, decide, decision_markdown

MODEL = "test-model"
FRACTIONS = {"eval_fraction": 0.1, "test_fraction": 0.2}  # ingest's defaults
TODAY = split.rule_of("customer_id", seed=42, **FRACTIONS)


def test_rule_names_what_the_assignment_depends_on():
    assert TODAY == "sha256-id-v2:id=customer_id,eval=0.1,test=0.2"
    assert split.rule_of(None, 42, **FRACTIONS) == "seeded-position-v1:seed=42,eval=0.1,test=0.2" \
        != split.rule_of(None, 7, **FRACTIONS)
    assert split.rule_of(None, 42, bigquery=True, **FRACTIONS) == split.ROW_HASH_RULE + ":eval=0.1,test=0.2"
    assert split.rule_of("customer_id", 7, bigquery=True, **FRACTIONS) == TODAY  # BigQuery's SQL is the same rule
    # other fractions move the cuts between splits: rows can change splits under the same hash
    assert split.rule_of("customer_id", 42, eval_fraction=0.1, test_fraction=0.3) != TODAY


def test_ingest_records_the_rule(tmp_path, churn_csv):
    from components.ingest.core import ingest

    paths = [str(tmp_path / s) for s in ("train", "eval", "test")]
    by_id = ingest(churn_csv, "churned", *paths, id_column="customer_id", seed=3)
    assert by_id.split_rule == TODAY and by_id.to_dict()["split_rule"] == TODAY
    by_row = ingest(churn_csv, "churned", *[p + "-row" for p in paths], id_column="none", seed=3)
    assert by_row.split_rule == "seeded-position-v1:seed=3,eval=0.1,test=0.2"


def _register(tracking_uri, tmp_path, *, version_tags=None, run_tags=None, ingest_info=None):
    """A version made champion the way deploy registers one: its run holds the reports and (train's)
    lineage tags."""
    import mlflow

    from components._shared import registry

    client = registry.configure(tracking_uri, MODEL)
    with mlflow.start_run() as run:
        mlflow.set_tags(run_tags or {})
        if ingest_info is not None:
            reports = tmp_path / f"reports-{run.info.run_id}"
            io.write_json(ingest_info, str(reports / champion.INGEST_FILE))
            mlflow.log_artifacts(str(reports), artifact_path=champion.REPORTS)
    try:
        client.create_registered_model(MODEL)
    except Exception:  # already exists
        pass
    mv = client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                     tags=version_tags or {})
    client.set_registered_model_alias(MODEL, registry.CHAMPION, mv.version)
    return champion.find_champion(tracking_uri, MODEL)


def _decision():
    return decide({"auc": 0.80, "ece": 0.02}, Gates(min_auc=0.7), champion={"auc": 0.82, "ece": 0.02},
                  comparison={"auc_diff": -0.02, "ci_low": -0.04, "ci_high": 0.0, "n_boot": 50, "rows": 300},
                  champion_version="1")


@pytest.mark.parametrize("where, recorded", [
    ("nowhere", None),  # a champion trained before rules were named
    ("run", "sha256-id-v1:id=customer_id"),  # train's lineage tag on the training run: another hash
    ("reports", "sha256-id-v2:id=account"),  # only ingest.json in the reports: another id column
    ("tag", "seeded-position-v1:seed=42"),  # a version tag: split by row position
])
def test_another_or_no_rule_warns_in_the_decision(tracking_uri, tmp_path, where, recorded):
    champ = _register(tracking_uri, tmp_path,
                      version_tags={champion.SPLIT_RULE_TAG: recorded} if where == "tag" else None,
                      run_tags={champion.LINEAGE_SPLIT_RULE_TAG: recorded} if where == "run" else None,
                      ingest_info={"split_rule": recorded} if where == "reports" else None)
    assert champ.split_rule(str(tmp_path / "dl")) == recorded
    d = _decision()
    before = (d.promote, list(d.reasons))
    warning = lineage.note_champion_split_rule(d, champ, TODAY, str(tmp_path / "dl2"))
    assert warning and warning.startswith(f"Warning: the champion v{champ.version} was trained on splits made by "
                                          "another rule")
    assert (recorded or "none recorded") in warning and TODAY in warning and "optimistic" in warning
    assert d.promote == before[0] and d.reasons == before[1] + [warning]  # said, not decided
    assert f"- {warning}" in decision_markdown(d) and warning in d.to_dict()["reasons"]


@pytest.mark.parametrize("where", ["run", "reports", "tag"])
def test_the_same_rule_says_nothing(tracking_uri, tmp_path, where):
    champ = _register(tracking_uri, tmp_path,
                      version_tags={champion.SPLIT_RULE_TAG: TODAY} if where == "tag" else None,
                      run_tags={champion.LINEAGE_SPLIT_RULE_TAG: TODAY} if where == "run" else None,
                      ingest_info={"split_rule": TODAY} if where == "reports" else None)
    d = _decision()
    reasons = list(d.reasons)
    assert lineage.note_champion_split_rule(d, champ, TODAY, str(tmp_path / "dl")) is None
    assert d.reasons == reasons and "another rule" not in decision_markdown(d)


def test_no_champion_or_unknown_rule_says_nothing(tracking_uri, tmp_path):
    d = _decision()
    assert lineage.note_champion_split_rule(d, None, TODAY, str(tmp_path)) is None
    champ = _register(tracking_uri, tmp_path)
    assert lineage.note_champion_split_rule(d, champ, "", str(tmp_path)) is None
    assert not any("another rule" in r for r in d.reasons)
