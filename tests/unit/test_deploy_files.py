"""Deploy core, TF Serving files only: atomic idempotent pushes, models.config, serving state."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from components._shared import io
from components._shared.errors import ConfigError, DeployError
from components._shared.serving_state import labels
from components.compare.core import Gates, decide
from components.deploy.card import (
    SECTIONS,
    load_fields,
    model_card,
    parse_fields,
    registry_limit,
    registry_text,
)
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


INGEST = {"source_uri": "gs://b/churn.csv", "content_hash": "abc123", "rows": {"train": 700, "eval": 150, "test": 150},
          "label": "churned", "positive_label": "yes", "negative_label": "no", "task": "binary"}
SPEC = {"task": "binary", "numeric": [{"name": "tenure", "kind": "numeric", "fill": 12.0, "log": True},
                                      {"name": "signup", "kind": "timestamp", "fill": 18500.0, "log": False}],
        "categorical": [{"name": "region", "vocab": ["eu", "us"]}], "excluded": ["customer_id"]}
EVALUATION = {"metrics": {"auc": 0.8012, "ece": 0.02, "threshold": 0.4, "rows": 150},
              "slices": {"region": {"slices": {"eu": {"rows": 80, "auc": 0.81, "positive_rate": 0.2,
                                                      "predicted_positive_rate": 0.25},
                                               "us": {"rows": 70, "auc": 0.76, "positive_rate": 0.3,
                                                      "predicted_positive_rate": 0.22}},
                                    "auc_gap": 0.05, "demographic_parity_ratio": 0.88}}}
# compare's own decision record: a challenger 0.0055 worse, let through by min_improvement -0.01
DECISION = decide({"auc": 0.8012, "ece": 0.02, "max_auc_gap": 0.05}, Gates(max_auc_gap=0.04, min_improvement=-0.01),
                  champion={"auc": 0.8067}, champion_version="3",
                  comparison={"auc_diff": -0.0055, "ci_low": -0.01, "ci_high": -0.001, "n_boot": 200,
                              "rows": 150}).to_dict()


def _card(**kw):
    args = dict(ingest=INGEST, spec=SPEC, evaluation=EVALUATION, decision=DECISION,
                schema={"columns": {"signup": {"kind": "timestamp", "min": 18000.0, "max": 19500.0}}},
                params={"epochs": "10", "hidden_units": "(64, 32)"},
                export={"tflite_quantization": "float16", "tflite_bytes": 23456, "tflite_max_abs_diff": 3.1e-4},
                lineage={"training_run_id": "r1", "training_run_url": "http://mlflow:5000/#/experiments/1/runs/r1",
                         "pipeline_run": "run-7", "image": "img:0.1.0", "code_version": "0.1.0"})
    return model_card("churn", "5", kw.pop("alias", "champion"), **{**args, **kw})


def test_model_card_has_every_section_as_tables_and_sentences():
    card = _card()
    assert card.startswith("# Model card: churn version 5\n")
    for heading in SECTIONS:
        assert f"\n## {heading}\n" in card, heading
    for fragment in (
        "champion: serves the model's traffic", "Source `gs://b/churn.csv`, content hash `abc123`.",
        "| train | 700 |", "| total | 1000 |", "Time range of `signup` in the train split: 2019-04-14 to 2023-05-23.",
        "| `tenure` | numeric | missing -> median 12, log1p, standardised |", "| hidden_units | 64, 32 |",
        "| AUC | 0.8012 |", "| eu | 80 | 0.8100 | 0.200 | 0.250 |",
        "Largest AUC gap: 0.0500 (by `region`); the gate allows at most 0.0400, so it fails.",
        "| quantization | float16 |", "| TFLite size | 22.9 KiB |",
        "| training run (MLflow) | [r1](http://mlflow:5000/#/experiments/1/runs/r1) |", "kfp-tf-gate 0.1.0",
        # a negative margin: the numbers, said as they are
        "challenger AUC 0.8012 vs champion 0.8067 (version 3) on the same test rows: 0.0055 worse",
        "Not filled in: intended use, limitations, ethical considerations, owners. Write them in a YAML",
    ):
        assert fragment in card, fragment
    assert "{'" not in card and "['" not in card and "vnext" not in card and "beats" not in card


@pytest.mark.parametrize("task,metrics,slices,fragments", [
    ("regression", {"rmse": 55.8, "mae": 44.1, "r2": 0.5},
     {"sex": {"slices": {"f": {"rows": 40, "rmse": 50.0}}, "rmse_gap": 3.0}},
     ["Regression of `y`; predictions are in the label's units.", "| RMSE | 55.8000 |", "| R² | 0.5000 |",
      "By `sex`: RMSE gap 3.0000.", "| f | 40 | 50.0000 |", "no gap gate applies to regression models"]),
    ("multiclass", {"accuracy": 0.9, "macro_f1": 0.85, "log_loss": 0.3}, {},
     ["Multiclass classification of `y` into 3 classes: `a`, `b`, `c`.", "| accuracy | 0.9000 |",
      "| log loss | 0.3000 |", "No slice column was evaluated"]),
])
def test_model_card_of_other_tasks_shows_their_metrics(task, metrics, slices, fragments):
    card = model_card("m", "2", "candidate", ingest={"label": "y", "task": task, "classes": ["a", "b", "c"]},
                      spec={"task": task, "numeric": [{"name": "x", "kind": "numeric"}], "categorical": []},
                      evaluation={"metrics": metrics, "slices": slices}, decision={"reasons": ["promote: ..."]})
    for fragment in fragments + ["candidate awaiting approval", "No champion was registered"]:
        assert fragment in card, fragment
    assert "auc" not in card.lower().replace("macro_auc", "")


def test_model_card_fields_from_a_yaml_file(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text("intended_use: Rank customers by churn risk.\nlimitations:\n  - EU customers only.\n"
                    "ethical_considerations: Region is an input.\nowners:\n  - name: Retention\n"
                    "    contact: r@example.com\n")
    card = _card(fields=load_fields(str(path)))
    assert "## Intended use\n\nRank customers by churn risk.\n" in card
    assert "- EU customers only." in card and "- Retention (r@example.com)" in card and "not filled in" not in card.lower()
    import fsspec  # a URI (gs://... in production) is read through fsspec: its in-memory store here

    with fsspec.open("memory://cards/card.json", "w") as fh:
        fh.write('{"owners": ["Retention"], "limitations": "EU only."}')
    assert load_fields("memory://cards/card.json") == {"owners": ["Retention"], "limitations": "EU only."}
    with pytest.raises(ConfigError, match="unknown key.*'intended_usage'"):
        parse_fields({"intended_usage": "x"})
    with pytest.raises(ConfigError, match="cannot read the model card file"):
        load_fields(str(tmp_path / "missing.yaml"))


def test_registry_text_fits_the_registry_limit():
    many = {**SPEC, "numeric": [{"name": f"feature_{i:03d}", "kind": "numeric", "fill": 1.0} for i in range(120)]}
    full, compact = _card(spec=many), _card(spec=many, compact=True)
    assert len(full) > 5000 and registry_text(full, compact) == compact and len(compact) <= 5000
    assert registry_text("short") == "short" and registry_text(full, compact, limit=None) == full  # SQLite
    assert registry_limit("sqlite:///runs/mlflow.db") is None and registry_limit("https://mlflow.example") == 5000
    cut = registry_text("x\n" * 4000)
    assert len(cut) <= 5000 and cut.rstrip().endswith("the full card is the run artifact `card/model_card.md`._")


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
