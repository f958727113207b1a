"""Deploy core, TF Serving files only: atomic idempotent pushes, models.config, serving state."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from components._shared import io
from components._shared.errors import DeployError
from components._shared.serving_state import labels
from components.deploy.core import model_card
from components.deploy.serving import (
    CONFIG_FILE,
    STATE_FILE,
    fingerprint,
    push_to_serving,
    read_state,
    write_models_config,
    write_state,
)


def _saved_model(path, payload: bytes = b"graph-v1", warmup: bytes = b"warmup"):
    """A folder with the files TF Serving looks at (content is opaque to the file logic)."""
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as fh:
        fh.write(payload)
    with open(os.path.join(path, "variables", "variables.index"), "wb") as fh:
        fh.write(b"index" + payload)
    with open(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"), "wb") as fh:
        fh.write(warmup)
    return str(path)


def _tree(path):
    return sorted(
        os.path.relpath(os.path.join(r, f), path) for r, _, fs in os.walk(path) for f in fs
    )


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_ignores_warmup_requests(tmp_path):
    a = _saved_model(tmp_path / "a")
    b = _saved_model(tmp_path / "b", warmup=b"other requests")
    c = _saved_model(tmp_path / "c", payload=b"graph-v2")
    assert fingerprint(a) == fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(a))


def test_fingerprint_sees_renamed_files(tmp_path):
    a = _saved_model(tmp_path / "a")
    b = _saved_model(tmp_path / "b")
    os.rename(
        os.path.join(b, "variables", "variables.index"), os.path.join(b, "variables", "other.index")
    )
    assert fingerprint(a) != fingerprint(b)


# --------------------------------------------------------------------------- push


def test_push_copies_to_base_model_version(tmp_path):
    src = _saved_model(tmp_path / "export")
    base = str(tmp_path / "serving")
    target, created = push_to_serving(src, base, "churn", "3")
    assert created is True
    assert target == os.path.join(base, "churn", "3")
    assert _tree(target) == _tree(src)
    assert fingerprint(target) == fingerprint(src)
    # Nothing but the version folder is left in the model folder (no temporary copies).
    assert os.listdir(os.path.join(base, "churn")) == ["3"]


def test_push_is_idempotent(tmp_path):
    src = _saved_model(tmp_path / "export")
    base = str(tmp_path / "serving")
    first = push_to_serving(src, base, "churn", "1")
    mtime = os.path.getmtime(os.path.join(first[0], "saved_model.pb"))
    second = push_to_serving(src, base, "churn", "1")
    assert second == (first[0], False)
    assert os.path.getmtime(os.path.join(first[0], "saved_model.pb")) == mtime
    assert os.listdir(os.path.join(base, "churn")) == ["1"]


def test_push_of_the_same_model_with_other_warmup_requests_is_the_same_version(tmp_path):
    base = str(tmp_path / "serving")
    push_to_serving(_saved_model(tmp_path / "a"), base, "churn", "1")
    path, created = push_to_serving(_saved_model(tmp_path / "b", warmup=b"new"), base, "churn", "1")
    assert created is False
    with open(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"), "rb") as fh:
        assert fh.read() == b"warmup"  # the served copy is untouched


def test_push_refuses_to_overwrite_a_served_version(tmp_path):
    base = str(tmp_path / "serving")
    push_to_serving(_saved_model(tmp_path / "a"), base, "churn", "2")
    other = _saved_model(tmp_path / "b", payload=b"graph-v2")
    target = os.path.join(base, "churn", "2")
    with pytest.raises(
        DeployError,
        match=rf"^{re.escape(target)} already holds a different model; "
        r"refusing to overwrite a served version$",
    ):
        push_to_serving(other, base, "churn", "2")
    with open(os.path.join(target, "saved_model.pb"), "rb") as fh:
        assert fh.read() == b"graph-v1"


@pytest.mark.parametrize("version", ["v1", "1.0", "", "-1"])
def test_push_rejects_non_integer_versions(tmp_path, version):
    with pytest.raises(DeployError, match=r"TF Serving versions must be integers, got"):
        push_to_serving(_saved_model(tmp_path / "a"), str(tmp_path / "serving"), "churn", version)


def test_a_failed_copy_leaves_no_version_and_no_temporary_folder(tmp_path):
    src = _saved_model(tmp_path / "export")
    os.symlink(
        str(tmp_path / "missing-file"),
        os.path.join(src, "variables", "variables.data-00000-of-00001"),
    )
    base = str(tmp_path / "serving")
    with pytest.raises(shutil.Error, match="variables.data-00000-of-00001"):
        push_to_serving(src, base, "churn", "4")
    assert os.listdir(os.path.join(base, "churn")) == []
    # A retry with a good export then succeeds.
    good = _saved_model(tmp_path / "good")
    assert push_to_serving(good, base, "churn", "4") == (os.path.join(base, "churn", "4"), True)


# --------------------------------------------------------------------------- state and models.config


def test_read_state_defaults(tmp_path):
    empty = {"format": 2, "stable": None, "previous": None, "canary": None, "fingerprints": {},
             "history": [], "pending": None}
    assert read_state(str(tmp_path), "churn") == empty
    assert read_state("", "churn") == empty
    assert write_state("", "churn", {"stable": 1}) == ""


def test_write_state_round_trips_and_writes_models_config(tmp_path):
    base = str(tmp_path)
    os.makedirs(os.path.join(base, "churn"))
    state = {"stable": 2, "previous": 1, "canary": None}
    config = write_state(base, "churn", state)
    assert config == os.path.join(base, CONFIG_FILE)
    assert labels(read_state(base, "churn")) == state
    assert labels(io.read_json(os.path.join(base, "churn", STATE_FILE))) == state
    text = open(config).read()
    assert text == (
        "model_config_list {\n"
        "  config {\n"
        '    name: "churn"\n'
        f'    base_path: "{os.path.join(os.path.abspath(base), "churn")}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 2 versions: 1 } }\n"
        '    version_labels { key: "stable" value: 2 }\n'
        '    version_labels { key: "previous" value: 1 }\n'
        "  }\n"
        "}\n"
    )


def test_models_config_with_a_canary_and_several_models(tmp_path):
    base = str(tmp_path)
    write_state(base, "churn", {"stable": 3, "previous": 2, "canary": 4})
    write_state(base, "fraud", {"stable": 1, "previous": None, "canary": None})
    os.makedirs(os.path.join(base, "not-a-model"))  # no state: not served
    text = open(write_models_config(base)).read()
    assert text.count("config {") == 2
    assert text.index('name: "churn"') < text.index('name: "fraud"')
    churn = text[text.index('name: "churn"') : text.index('name: "fraud"')]
    assert "model_version_policy { specific { versions: 4 versions: 3 versions: 2 } }" in churn
    for label, v in (("stable", 3), ("canary", 4), ("previous", 2)):
        assert f'version_labels {{ key: "{label}" value: {v} }}' in churn
    fraud = text[text.index('name: "fraud"') :]
    assert "versions: 1 }" in fraud and 'key: "previous"' not in fraud
    assert "not-a-model" not in text
    # Written atomically: no temporary files left beside it.
    assert sorted(os.listdir(base)) == ["churn", "fraud", CONFIG_FILE, "not-a-model"]


def test_a_format_1_record_reads_as_one_without_history(tmp_path):
    os.makedirs(tmp_path / "churn")
    io.write_json({"stable": 2, "previous": 1, "canary": None}, str(tmp_path / "churn" / STATE_FILE))
    record = read_state(str(tmp_path), "churn")
    assert (labels(record), record["history"], record["pending"]) == (
        {"stable": 2, "previous": 1, "canary": None}, [], None)


@pytest.mark.parametrize("garbage", [b"\x00\xff not json", b"[1, 2]", b'{"stable": "two"}'])
def test_a_corrupt_record_is_one_sentence(tmp_path, garbage):
    from components._shared.serving_state import ServingStateError

    os.makedirs(tmp_path / "churn")
    (tmp_path / "churn" / STATE_FILE).write_bytes(garbage)
    with pytest.raises(ServingStateError, match=r"^the serving record .*serving.json is corrupt \("):
        read_state(str(tmp_path), "churn")
    # Another model's models.config entry is kept while this one's record is unreadable.
    write_state(str(tmp_path), "fraud", {"stable": 1})
    assert 'name: "fraud"' in open(tmp_path / CONFIG_FILE).read()


def test_models_config_quotes_names_and_paths_as_textproto(tmp_path):
    from components.deploy.serving import quote

    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    base = tmp_path / 'odd"base'
    os.makedirs(base)
    write_state(str(base), "churn", {"stable": 1})
    text = open(base / CONFIG_FILE).read()
    assert 'odd\\"base/churn"' in text


def test_models_config_skips_a_model_with_nothing_served(tmp_path):
    write_state(str(tmp_path), "churn", {"stable": None, "previous": None, "canary": None})
    assert open(os.path.join(tmp_path, CONFIG_FILE)).read() == "model_config_list {\n\n}\n"


# --------------------------------------------------------------------------- model card


def test_model_card_names_data_metrics_decision_and_lineage():
    card = model_card(
        "churn",
        "5",
        evaluation={
            "metrics": {"auc": 0.81234, "ece": 0.02, "threshold": 0.4},
            "slices": {"region": {"auc_gap": 0.05, "demographic_parity_ratio": 0.9}},
        },
        decision={"reasons": ["promote: the challenger passes every gate"]},
        ingest_meta={
            "source_uri": "gs://b/churn.csv",
            "content_hash": "abc123",
            "rows": {"train": 7},
            "label": "churned",
            "positive_label": "yes",
        },
        train_meta={
            "features": ["tenure_months", "region"],
            "params": {"epochs": 2},
            "device": "CPU",
        },
        lineage={"pipeline_run": "run-1", "data_hash": "abc123"},
    )
    assert card.startswith("# Model card: churn v5\n")
    for fragment in (
        "- Source: `gs://b/churn.csv`",
        "- Content hash: `abc123`",
        "- Label: `churned` (positive value 'yes')",
        "- Features: tenure_months, region",
        "| auc | 0.8123 |",
        "| threshold | 0.4000 |",
        "Slices by `region`: AUC gap 0.0500, demographic parity ratio 0.9000",
        "- promote: the challenger passes every gate",
        "- pipeline_run: `run-1`",
    ):
        assert fragment in card, fragment


@pytest.mark.parametrize("task,metrics,slices,fragments", [
    ("regression", {"rmse": 55.8, "mae": 44.1, "r2": 0.5}, {"sex": {"rmse": 50.0, "rows": 40}},
     ["- Task: regression", "(regression: predictions are in the label's units)", "| rmse | 55.8000 |",
      "| r2 | 0.5000 |", "Slices by `sex`: rmse 50.0000, rows 40.0000"]),
    ("multiclass", {"accuracy": 0.9, "macro_f1": 0.85, "log_loss": 0.3}, {},
     ["- Task: multiclass", "(multiclass: a, b, c)", "| accuracy | 0.9000 |", "| log_loss | 0.3000 |"]),
])
def test_model_card_of_other_tasks_shows_their_metrics(task, metrics, slices, fragments):
    from components.deploy.core import model_card

    card = model_card("m", "2", {"metrics": metrics, "slices": slices}, {"reasons": ["promote: ..."]},
                      {"label": "y", "task": task, "classes": ["a", "b", "c"]}, {"features": ["x"]}, {})
    for fragment in fragments:
        assert fragment in card, fragment
    assert "auc" not in card.lower().replace("macro_auc", "")


# --------------------------------------------------------------------------- the record's rules


def test_rollback_goes_back_through_history_and_never_forward_again():
    from components.deploy.state import HISTORY_LENGTH, plan, rollback_version

    record = None
    for v in (6, 7, 8):
        record = plan(record, "promote", v, f"fp{v}", at="t")
    assert labels(record) == {"stable": 8, "previous": 7, "canary": None}
    seen = [8]
    while True:
        try:
            v = rollback_version(record, "churn")
        except DeployError as exc:
            assert "no earlier stable version to roll back to from version 6" in str(exc)
            break
        record = plan(record, "rollback", v, f"fp{v}", available=[6, 7, 8])
        seen.append(record["stable"])
    assert seen == [8, 7, 6]  # 8 -> 7 -> 6, never 8 -> 7 -> 8
    # --to moves explicitly (forward too); what it moved away from is no automatic target.
    record = plan(record, "rollback", rollback_version(record, "churn", to=8), "fp8", available=[6, 7, 8])
    assert labels(record) == {"stable": 8, "previous": None, "canary": None}
    # A candidate waits under canary; approving it makes the old stable previous.
    record = plan(record, "candidate", 9, "fp9")
    assert labels(record) == {"stable": 8, "previous": None, "canary": 9}
    record = plan(record, "approve", 9, "fp9")
    assert labels(record) == {"stable": 9, "previous": 8, "canary": None}
    assert record["history"][-1]["why"] == "approved" and set(record["fingerprints"]) == {"6", "7", "8", "9"}
    for v in range(10, 10 + HISTORY_LENGTH):
        record = plan(record, "promote", v, f"fp{v}")
    assert len(record["history"]) == HISTORY_LENGTH and "6" not in record["fingerprints"]


@pytest.mark.parametrize("name", ['a"b', "../x", "a/b", ""])
def test_rollback_approve_and_status_refuse_an_invalid_model_name_first(tmp_path, name):
    from components._shared.errors import ConfigError
    from components.deploy.core import approve, rollback, status

    for fn in (rollback, approve, status):
        with pytest.raises(ConfigError, match=r"^invalid model name "):
            fn(name, f"sqlite:///{tmp_path}/never-created.db", str(tmp_path / "serving"))
    assert os.listdir(tmp_path) == []
