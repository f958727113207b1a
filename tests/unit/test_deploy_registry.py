"""Deploy core against a real MLflow (SQLite) registry and real SavedModels: champion moves,
idempotent retries, a version failing its warm-up is never promoted, rollback, approval."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from components._shared import registry
from components._shared.errors import DeployError
from components._shared.serving_state import labels
from components.deploy.card import SECTIONS
from components.deploy.core import approve, deploy, deploy_run, rollback
from components.deploy.serving import CONFIG_FILE, read_state
from pipelines.data import generate_churn
from tests.stage_helpers import prepare, train_small

pytestmark = pytest.mark.slow

MODEL = "test-model"  # the experiment the tracking_uri fixture creates


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One trained model exported twice with different thresholds (two different SavedModels),
    plus a third SavedModel that loads but whose warm-up request does not fit its signature."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from components._shared.warmup import write_warmup
    from components.export.core import export

    root = tmp_path_factory.mktemp("deploy-exports")
    prepared = prepare(generate_churn(1500, seed=4), str(root / "data"))
    model_dir = str(root / "model")
    train_small(prepared, model_dir, epochs=1)
    out = {"model": model_dir, "prepared": prepared}
    for name, threshold in (("a", 0.5), ("b", 0.45), ("c", 0.4)):
        result = export(
            model_dir,
            prepared.test,
            str(root / name / "saved_model"),
            str(root / name / "tflite"),
            MODEL,
            threshold=threshold,
        )
        out[name], out[f"{name}_metrics"] = result.saved_model_dir, result.metrics
    # A copy of "b" with an extra asset (so a different fingerprint) and a bad warm-up request.
    out["broken"] = str(root / "broken" / "saved_model")
    shutil.copytree(out["b"], out["broken"])
    os.makedirs(os.path.join(out["broken"], "assets"), exist_ok=True)
    with open(os.path.join(out["broken"], "assets", "release-notes.txt"), "w") as fh:
        fh.write("broken build\n")
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=MODEL))
    req.inputs["tenure"].CopyFrom(tf.make_tensor_proto(np.array(["not a number"])))
    write_warmup(
        out["broken"],
        [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))],
    )
    return out


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory):
    """An empty MLflow SQLite store with the test-model experiment, created once: building the
    tables takes seconds, copying the file takes milliseconds."""
    d = tmp_path_factory.mktemp("mlflow-template")
    registry.configure(
        f"sqlite:///{d / 'mlflow.db'}", MODEL, artifact_location=str(d / "mlartifacts")
    )
    return d / "mlflow.db"


@pytest.fixture
def tracking_uri(registry_template, tmp_path):
    """Like the shared fixture (a fresh registry per test whose artifacts stay under tmp), but
    copied from the template."""
    db = tmp_path / "mlflow.db"
    shutil.copy(registry_template, db)
    uri = f"sqlite:///{db}"
    registry.configure(uri, MODEL)
    return uri


@pytest.fixture
def serving(tmp_path):
    path = tmp_path / "serving"
    path.mkdir()
    return str(path)


def _deploy(exports, name, tracking_uri, serving, **kwargs):
    return deploy(
        exports[name],
        MODEL,
        tracking_uri,
        serving,
        artifacts={"model": exports["model"], "saved_model": exports[name]},
        card=kwargs.pop("card", f"# Model card: {MODEL} ({name})\n"),
        tags={"pipeline_run": f"run-{name}"},
        **kwargs,
    )


def _client(tracking_uri):
    return registry.configure(tracking_uri)


def _alias(tracking_uri, alias):
    ref = registry.get_alias(_client(tracking_uri), MODEL, alias)
    return ref.version if ref else None


def _versions(tracking_uri):
    return sorted(
        int(mv.version) for mv in _client(tracking_uri).search_model_versions(f"name = '{MODEL}'")
    )


def _served(serving):
    return sorted(os.listdir(os.path.join(serving, MODEL)))


def _config(serving):
    with open(os.path.join(serving, CONFIG_FILE)) as fh:
        return fh.read()


def test_first_deploy_makes_the_champion(exports, tracking_uri, serving):
    result = _deploy(exports, "a", tracking_uri, serving)

    assert (result.version, result.alias, result.previous_version, result.reused) == (
        "1",
        "champion",
        None,
        False,
    )
    assert result.serving_dir == os.path.join(serving, MODEL, "1")
    assert os.path.exists(os.path.join(result.serving_dir, "saved_model.pb"))
    assert os.path.exists(
        os.path.join(result.serving_dir, "assets.extra", "tf_serving_warmup_requests")
    )
    assert _alias(tracking_uri, "champion") == "1"
    assert _alias(tracking_uri, "previous") is None
    assert labels(read_state(serving, MODEL)) == {"stable": 1, "previous": None, "canary": None}
    assert result.models_config == os.path.join(serving, CONFIG_FILE)
    assert "versions: 1 }" in _config(
        serving
    ) and 'version_labels { key: "stable" value: 1 }' in _config(serving)
    assert _served(serving) == ["1", "serving.json"]

    # The registered version carries what compare needs to re-score it, and the card.
    client = _client(tracking_uri)
    ref = registry.get_alias(client, MODEL, "champion")
    assert ref.tags["fingerprint"] and ref.tags["pipeline_run"] == "run-a"
    local = registry.download(client, ref, str(os.path.dirname(serving) + "/dl"), "model")
    assert {"model.keras", "transform_spec.json"} <= set(os.listdir(local))
    assert client.get_model_version(MODEL, "1").description.startswith(f"# Model card: {MODEL}")


def test_the_card_in_the_registry_names_the_registered_version(exports, tracking_uri, serving, tmp_path):
    """deploy_run writes the card once MLflow has numbered the version: the description, the run's
    card/model_card.md and the returned text are the same, with version 2 in them; a retry keeps it."""
    import mlflow

    _deploy(exports, "a", tracking_uri, serving)  # version 1: the champion compared against
    client = _client(tracking_uri)
    with mlflow.start_run(run_name="train") as training:  # the run train would have logged
        mlflow.log_params({"epochs": "1", "hidden_units": "(64, 32)", "learning_rate": "0.001"})
    fields = tmp_path / "card.json"
    fields.write_text('{"intended_use": "Rank customers by churn risk.", "owners": ["Retention team"]}')
    from components.deploy.card import load_fields

    p = exports["prepared"]
    from components.compare.core import Gates, decide

    decision = decide({"auc": 0.8012, "ece": 0.03, "max_auc_gap": 0.0}, Gates(min_improvement=-0.01,
                      require_significance=False), champion={"auc": 0.8067}, champion_version="1",
                      comparison={"auc_diff": -0.0055, "ci_low": -0.01, "ci_high": 0.001, "n_boot": 50,
                                  "rows": 300}).to_dict()
    assert decision["promote"]

    def deploy_b():
        return deploy_run(exports["b"], exports["model"], p.train, p.schema,
                          {"metrics": {"auc": 0.8012, "ece": 0.03}, "slices": {}}, decision, p.info, MODEL,
                          tracking_uri, serving, model_metadata={"mlflow_run_id": training.info.run_id, "device": "CPU"},
                          pipeline_run="run-b", image="img:test", export_metrics={"tflite_bytes": 2048.0},
                          card_fields=load_fields(str(fields)))

    result, card = deploy_b()
    assert result.version == "2"
    mv = client.get_model_version(MODEL, "2")
    assert mv.description == card
    assert card.startswith(f"# Model card: {MODEL} version 2\n")
    for heading in SECTIONS:
        assert f"\n## {heading}\n" in card, heading
    assert "{'" not in card and "vnext" not in card and "next" not in card.split("\n", 1)[0]
    assert "| hidden_units | 64, 32 |" in card and f"`{training.info.run_id}`" in card
    assert "0.0055 worse" in card and "beats" not in card and "Rank customers by churn risk." in card
    stored = client.download_artifacts(mv.run_id, "card/model_card.md", str(tmp_path / "dl"))
    assert open(stored).read() == card
    again, same = deploy_b()  # deploy is safe to repeat: the same version, the same card
    assert (again.version, again.reused, same) == ("2", True, card)
    assert client.get_model_version(MODEL, "2").description == card


def test_a_second_model_becomes_champion_and_the_first_is_kept_as_previous(
    exports, tracking_uri, serving
):
    _deploy(exports, "a", tracking_uri, serving)
    result = _deploy(exports, "b", tracking_uri, serving)

    assert (result.version, result.alias, result.previous_version, result.reused) == (
        "2",
        "champion",
        "1",
        False,
    )
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "previous")) == ("2", "1")
    assert labels(read_state(serving, MODEL)) == {"stable": 2, "previous": 1, "canary": None}
    config = _config(serving)
    assert "model_version_policy { specific { versions: 2 versions: 1 } }" in config
    assert 'version_labels { key: "stable" value: 2 }' in config
    assert 'version_labels { key: "previous" value: 1 }' in config
    assert _served(serving) == ["1", "2", "serving.json"]


def test_redeploying_the_same_saved_model_changes_nothing(exports, tracking_uri, serving):
    _deploy(exports, "a", tracking_uri, serving)
    first = _deploy(exports, "b", tracking_uri, serving)
    client = _client(tracking_uri)
    runs_before = len(
        client.search_runs(
            [client.get_experiment_by_name(registry.experiment_name(MODEL)).experiment_id]
        )
    )
    config_before = _config(serving)
    mtime = os.path.getmtime(os.path.join(serving, MODEL, "2", "saved_model.pb"))

    again = _deploy(exports, "b", tracking_uri, serving)

    assert again.version == first.version == "2"
    assert again.reused is True and again.previous_version == "1"
    assert _versions(tracking_uri) == [1, 2]
    runs_after = len(
        client.search_runs(
            [client.get_experiment_by_name(registry.experiment_name(MODEL)).experiment_id]
        )
    )
    assert runs_after == runs_before  # no second registration run
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "previous")) == ("2", "1")
    assert _config(serving) == config_before
    assert labels(read_state(serving, MODEL)) == {"stable": 2, "previous": 1, "canary": None}
    assert os.path.getmtime(os.path.join(serving, MODEL, "2", "saved_model.pb")) == mtime
    assert _served(serving) == ["1", "2", "serving.json"]


def test_a_version_failing_its_warmup_is_not_promoted(exports, tracking_uri, serving):
    _deploy(exports, "a", tracking_uri, serving)
    config_before = _config(serving)

    with pytest.raises(
        DeployError,
        match=rf"^version 2 of '{MODEL}' failed its warm-up requests and was not promoted: "
        r"a warm-up request to .*/2 failed: ",
    ):
        _deploy(exports, "broken", tracking_uri, serving)

    assert _alias(tracking_uri, "champion") == "1"
    assert _alias(tracking_uri, "previous") is None
    assert labels(read_state(serving, MODEL)) == {"stable": 1, "previous": None, "canary": None}
    assert _config(serving) == config_before
    assert _served(serving) == [
        "1",
        "serving.json",
    ]  # the failed copy and any temporary folder are gone

    # A retry fails the same way and still changes nothing.
    with pytest.raises(DeployError, match=r"failed its warm-up requests and was not promoted"):
        _deploy(exports, "broken", tracking_uri, serving)
    assert _alias(tracking_uri, "champion") == "1" and _served(serving) == ["1", "serving.json"]


def test_a_champion_that_moved_after_compare_is_not_replaced(exports, tracking_uri, serving):
    """Run A compared its challenger with 'no champion'; meanwhile run B promoted version 1.
    A's deploy must not replace B's champion: A never beat it."""
    _deploy(exports, "a", tracking_uri, serving, expected_champion="")
    config_before = _config(serving)

    with pytest.raises(
        DeployError,
        match=rf"^the champion of {MODEL} changed after compare ran \(compared with no champion, now version 1\), "
        r"so version 2 was not compared with it and is not promoted; run the pipeline again$",
    ):
        _deploy(exports, "b", tracking_uri, serving, expected_champion="")

    assert _alias(tracking_uri, "champion") == "1" and _alias(tracking_uri, "previous") is None
    assert _config(serving) == config_before and _served(serving) == ["1", "serving.json"]
    tags = _client(tracking_uri).get_model_version(MODEL, "2").tags
    assert tags["deploy_status"].startswith("failed: the champion of")

    # Compared with the current champion: promoted. A retry of that same deploy (the alias
    # already moved to its own version) is still fine.
    assert _deploy(exports, "b", tracking_uri, serving, expected_champion="1").version == "2"
    assert _deploy(exports, "b", tracking_uri, serving, expected_champion="1").reused is True
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "previous")) == ("2", "1")
    assert _client(tracking_uri).get_model_version(MODEL, "2").tags["deploy_status"] == "promoted"


def test_rollback_goes_back_and_never_forward_again(exports, tracking_uri, serving):
    for name in ("a", "b", "c"):
        _deploy(exports, name, tracking_uri, serving)
    assert labels(read_state(serving, MODEL)) == {"stable": 3, "previous": 2, "canary": None}

    out = rollback(MODEL, tracking_uri, serving)

    assert out == {"model": MODEL, "champion": "2", "previous": "1", "rolled_back_from": "3",
                   "serving_dir": os.path.join(serving, MODEL, "2")}
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "previous")) == ("2", "1")
    assert labels(read_state(serving, MODEL)) == {"stable": 2, "previous": 1, "canary": None}
    assert 'version_labels { key: "stable" value: 2 }' in _config(serving)
    assert _client(tracking_uri).get_model_version(MODEL, "3").tags["deploy_status"] == "rolled back"

    # The second rollback goes to the stable before 2, not forward to 3; the third has nowhere to go.
    assert rollback(MODEL, tracking_uri, serving)["champion"] == "1"
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "previous")) == ("1", None)
    with pytest.raises(DeployError, match=rf"^model '{MODEL}' has no earlier stable version to roll back to "
                                          r"from version 1 \(.*use rollback --to N to choose one\)$"):
        rollback(MODEL, tracking_uri, serving)
    assert _alias(tracking_uri, "champion") == "1"

    # Forward again only when asked for, and only after the same checks.
    out = rollback(MODEL, tracking_uri, serving, to=3)
    assert (out["champion"], _alias(tracking_uri, "champion")) == ("3", "3")
    record = read_state(serving, MODEL)
    assert [(e["version"], e["why"], e["from"]) for e in record["history"]] == [
        (1, "promoted", None), (2, "promoted", 1), (3, "promoted", 2), (2, "rolled back", 3),
        (1, "rolled back", 2), (3, "rolled back", 1)]
    assert record["pending"] is None and set(record["fingerprints"]) == {"1", "2", "3"}
    with pytest.raises(DeployError, match=rf"^version 3 of '{MODEL}' is already stable"):
        rollback(MODEL, tracking_uri, serving, to=3)


def test_rollback_and_approve_refuse_a_version_that_fails_its_checks(exports, tracking_uri, serving):
    _deploy(exports, "a", tracking_uri, serving)
    _deploy(exports, "b", tracking_uri, serving)
    config_before = _config(serving)
    pb = os.path.join(serving, MODEL, "1", "saved_model.pb")
    with open(pb, "wb") as fh:
        fh.write(b"garbage")
    with pytest.raises(DeployError, match=rf"^the files of version 1 of '{MODEL}' at .* differ from its registered "
                                          r"fingerprint \(corrupted or replaced\); it is not put into service$"):
        rollback(MODEL, tracking_uri, serving)
    assert _alias(tracking_uri, "champion") == "2" and _config(serving) == config_before

    # A version that failed at deploy is never served by rollback --to.
    with pytest.raises(DeployError):
        _deploy(exports, "broken", tracking_uri, serving)
    with pytest.raises(DeployError, match=rf"^version 3 of '{MODEL}' is not on the serving path"):
        rollback(MODEL, tracking_uri, serving, to=3)

    # approve loads the candidate first: one whose warm-up fails stays a candidate, nothing moves.
    _deploy(exports, "c", tracking_uri, serving, require_approval=True)
    with pytest.raises(DeployError, match=rf"^version 4 of '{MODEL}' failed its warm-up requests and is not put "
                                          r"into service: "):
        approve(MODEL, tracking_uri, serving, verify=lambda path: 1 / 0)
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "candidate")) == ("2", "4")
    assert labels(read_state(serving, MODEL)) == {"stable": 2, "previous": 1, "canary": 4}


def test_rollback_needs_a_previous_version_that_is_still_served(exports, tracking_uri, serving):
    _deploy(exports, "a", tracking_uri, serving)
    with pytest.raises(
        DeployError, match=rf"^model '{MODEL}' has no 'previous' version to roll back to$"
    ):
        rollback(MODEL, tracking_uri, serving)

    _deploy(exports, "b", tracking_uri, serving)
    shutil.rmtree(os.path.join(serving, MODEL, "1"))
    with pytest.raises(
        DeployError, match=rf"^version 1 of '{MODEL}' is not on the serving path "
    ):
        rollback(MODEL, tracking_uri, serving)
    assert _alias(tracking_uri, "champion") == "2"


def test_approval_flow(exports, tracking_uri, serving):
    _deploy(exports, "a", tracking_uri, serving)

    from components.deploy.card import model_card

    def card(version):  # the real card of a candidate (deploy_run's form: called once numbered)
        text = model_card(MODEL, version, "candidate", ingest={"label": "churned", "task": "binary"})
        return text, text

    pending = _deploy(exports, "b", tracking_uri, serving, require_approval=True, card=card)

    assert (pending.version, pending.alias, pending.previous_version) == ("2", "candidate", "1")
    assert (_alias(tracking_uri, "candidate"), _alias(tracking_uri, "champion")) == ("2", "1")
    assert labels(read_state(serving, MODEL)) == {"stable": 1, "previous": None, "canary": 2}
    assert 'version_labels { key: "canary" value: 2 }' in _config(serving)
    assert 'version_labels { key: "stable" value: 1 }' in _config(serving)

    out = approve(MODEL, tracking_uri, serving)

    assert out == {"model": MODEL, "champion": "2", "previous": "1"}
    # The card in the registry and the run's copy now say champion, not "awaiting approval".
    mv = _client(tracking_uri).get_model_version(MODEL, "2")
    stored = _client(tracking_uri).download_artifacts(mv.run_id, "card/model_card.md", str(serving) + "-dl")
    for text in (mv.description, open(stored).read()):
        assert "awaiting approval" not in text and "champion: serves the model's traffic" in text
        assert "approved 20" in text and text.startswith(f"# Model card: {MODEL} version 2\n")
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "previous")) == ("2", "1")
    assert _alias(tracking_uri, "candidate") is None
    assert labels(read_state(serving, MODEL)) == {"stable": 2, "previous": 1, "canary": None}
    assert 'key: "canary"' not in _config(serving)
    with pytest.raises(
        DeployError, match=rf"^model '{MODEL}' has no 'candidate' version awaiting approval$"
    ):
        approve(MODEL, tracking_uri, serving)


def test_deploy_refuses_a_folder_that_is_not_a_saved_model(tracking_uri, serving, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployError, match=r"empty is not a SavedModel \(no saved_model.pb\)$"):
        deploy(str(tmp_path / "empty"), MODEL, tracking_uri, serving, artifacts={}, card="")
    assert _versions(tracking_uri) == []


def test_warmup_child_verifies_a_pushed_copy_and_reports_failures(exports, tmp_path):
    """deploy's verify in a child process (TensorFlow imported while deploy registers)."""
    import shutil

    from components._shared.errors import ModelError
    from components.deploy.warmup import WarmupJob

    job = WarmupJob()
    assert job.verify(exports["a"]) > 0
    with pytest.raises(ModelError, match=r"already used"):
        job.verify(exports["a"])

    broken = tmp_path / "broken"
    shutil.copytree(exports["a"], broken)
    os.remove(broken / "saved_model.pb")
    with pytest.raises(ModelError, match=rf"^the SavedModel at {broken} does not load"):
        WarmupJob().verify(str(broken))

    idle = WarmupJob()
    idle.cancel()
    idle.cancel()  # twice is fine
    with pytest.raises(ModelError, match=r"already used or stopped"):
        idle.verify(exports["a"])


def test_deploy_skips_the_warmup_replay_only_for_the_bytes_export_verified(exports, tmp_path):
    """Export replayed the warm-up requests of its SavedModel and recorded the digest of those bytes:
    deploy starts no TensorFlow child for them, and loads and replays any copy that differs."""
    from components._shared.errors import ModelError
    from components.deploy.warmup import ExportVerified, WarmupJob, start_warmup

    job = start_warmup(exports["a"], exports["a_metrics"])
    assert isinstance(job, ExportVerified)
    pushed = tmp_path / "pushed"
    shutil.copytree(exports["a"], pushed)
    assert job.verify(str(pushed)) == exports["a_metrics"]["warmup_requests"] == 3

    # Another SavedModel's figures, or none: the warm-up child starts as before.
    for metrics in (exports["b_metrics"], None, {"display_name": "metrics"}):
        child = start_warmup(exports["a"], metrics)
        assert isinstance(child, WarmupJob)
        child.cancel()

    # A copy that differs in any byte is loaded and replayed, so a corrupt or changed one is refused.
    corrupt = tmp_path / "corrupt"
    shutil.copytree(exports["a"], corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(ModelError, match=rf"^the SavedModel at {corrupt} does not load"):
        job.verify(str(corrupt))
    changed = tmp_path / "changed-warmup"
    shutil.copytree(exports["a"], changed)
    shutil.copy(os.path.join(exports["broken"], "assets.extra", "tf_serving_warmup_requests"),
                changed / "assets.extra" / "tf_serving_warmup_requests")
    with pytest.raises(ModelError, match=rf"^a warm-up request to {changed} failed"):
        job.verify(str(changed))


def test_the_champion_lookup_and_the_deployment_read_back_what_deploy_wrote(exports, tracking_uri, serving, tmp_path):
    from components._shared.champion import find_champion
    from components._shared.scoring import has_model
    from components.deploy.core import find_deployment

    assert find_champion(tracking_uri, MODEL) is None
    assert find_deployment(tracking_uri, MODEL, exports["a"], serving) is None
    _deploy(exports, "a", tracking_uri, serving)
    champ = find_champion(tracking_uri, MODEL)
    assert champ.version == "1" and champ.tags["pipeline_run"] == "run-a"
    assert has_model(champ.model_dir(str(tmp_path / "model")))
    assert find_deployment(tracking_uri, MODEL, exports["a"], serving) == {
        "version": "1", "alias": "champion", "serving_dir": os.path.join(serving, MODEL, "1")}
    assert find_deployment(tracking_uri, MODEL, exports["b"], serving) is None
    _deploy(exports, "b", tracking_uri, serving, require_approval=True)
    assert find_deployment(tracking_uri, MODEL, exports["b"], serving)["alias"] == "candidate"


def test_cli_status_and_rollback_to(exports, tracking_uri, serving, tmp_path, capsys, monkeypatch):
    import json

    from pipelines.__main__ import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}" and serving == str(tmp_path / "serving")
    _deploy(exports, "a", tracking_uri, serving)
    _deploy(exports, "b", tracking_uri, serving)
    capsys.readouterr()
    assert main(["status", "--runs-dir", str(tmp_path), "--model-name", MODEL]) == 0
    seen = json.loads(capsys.readouterr().out)
    assert seen["agree"] is True and seen["aliases"] == {"stable": 2, "previous": 1, "canary": None}
    assert 'version_labels { key: "stable" value: 2 }' in seen["models_config"]

    assert main(["rollback", "--runs-dir", str(tmp_path), "--model-name", MODEL]) == 0
    assert json.loads(capsys.readouterr().out)["champion"] == "1"
    assert main(["rollback", "--runs-dir", str(tmp_path), "--model-name", MODEL]) == 2
    assert "no earlier stable version to roll back to from version 1" in capsys.readouterr().err
    assert main(["rollback", "--runs-dir", str(tmp_path), "--model-name", MODEL, "--to", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["champion"] == "2"

    os.remove(os.path.join(serving, CONFIG_FILE))  # derived, so status says so and --repair rewrites it
    assert main(["status", "--runs-dir", str(tmp_path), "--model-name", MODEL]) == 1
    capsys.readouterr()
    assert main(["status", "--runs-dir", str(tmp_path), "--model-name", MODEL, "--repair"]) == 0
    assert json.loads(capsys.readouterr().out)["repaired"] == ["re-derived models.config from the serving records"]
