"""A TF Serving base on gs://, against the GCS emulator the rehearsal uses (its session fixture):
push, read back, idempotency, refusal to overwrite, models.config after the version, rollback/approve."""

from __future__ import annotations

import os
import uuid

import pytest

from components._shared.errors import DeployError
from components.deploy import serving
from tests.unit.test_deploy_files import _saved_model, _tree


@pytest.fixture
def gcs_base(object_store, monkeypatch):
    """A fresh gs:// serving base on the emulator; clients reach it through STORAGE_EMULATOR_HOST."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", object_store.url)
    bucket = "serving-test"
    object_store.ensure_bucket(bucket)
    return f"gs://{bucket}/models-{uuid.uuid4().hex[:8]}"


def _objects(object_store, uri):
    bucket, _, key = uri[len("gs://"):].partition("/")
    return sorted(b.name[len(key) + 1:] for b in object_store.client().list_blobs(bucket, prefix=key + "/"))


def test_push_to_gcs_reads_back_the_same_model(tmp_path, gcs_base, object_store):
    src = _saved_model(tmp_path / "export")
    target, created = serving.push_to_serving(src, gcs_base, "churn", "3")
    assert (target, created) == (f"{gcs_base}/churn/3", True)
    # Read back with the plain GCS client (not the code under test): the same files, same bytes.
    back = tmp_path / "back"
    object_store.download_tree(target, str(back))
    assert _tree(back) == _tree(src)
    for rel in _tree(src):
        assert (back / rel).read_bytes() == open(os.path.join(src, rel), "rb").read()
    # The staging copy is gone; nothing but the version is under the model.
    assert _objects(object_store, gcs_base) == [f"churn/3/{rel}" for rel in _tree(src)]
    assert serving.has_version(gcs_base, "churn", 3)
    # verify sees the copy as the store has it
    seen = []
    assert serving.verify_pushed(target, lambda folder: seen.append(_tree(folder)) or 7) == 7
    assert seen == [_tree(src)]


def test_gcs_push_is_idempotent_and_refuses_a_different_model(tmp_path, gcs_base):
    src = _saved_model(tmp_path / "a")
    serving.push_to_serving(src, gcs_base, "churn", "1")
    again = serving.push_to_serving(_saved_model(tmp_path / "b", warmup=b"other"), gcs_base, "churn", "1")
    assert again == (f"{gcs_base}/churn/1", False)
    with pytest.raises(DeployError, match=r"already holds a different model; refusing to overwrite"):
        serving.push_to_serving(_saved_model(tmp_path / "c", payload=b"graph-v2"), gcs_base, "churn", "1")


def test_an_interrupted_gcs_push_is_never_servable_and_a_retry_completes(tmp_path, gcs_base, object_store,
                                                                          monkeypatch):
    src = _saved_model(tmp_path / "a")

    fs, _ = serving._fs(gcs_base)
    cls, real_copy, copied = type(fs), type(fs).copy, []

    def failing_copy(self, path1, path2, *args, **kwargs):
        if path2.endswith("saved_model.pb"):
            raise OSError("connection reset")
        copied.append(path2.rsplit("/", 2)[-2:])
        return real_copy(self, path1, path2, *args, **kwargs)

    monkeypatch.setattr(cls, "copy", failing_copy)
    with pytest.raises(OSError, match="connection reset"):
        serving.push_to_serving(src, gcs_base, "churn", "2")
    assert copied  # the other objects were copied first, saved_model.pb was to come last
    assert not serving.has_version(gcs_base, "churn", 2)
    assert _objects(object_store, gcs_base) == []  # the partial version and the staging copy are removed
    monkeypatch.setattr(cls, "copy", real_copy)
    assert serving.push_to_serving(src, gcs_base, "churn", "2") == (f"{gcs_base}/churn/2", True)


def test_gcs_state_config_rollback_and_approve(tmp_path, gcs_base, object_store):
    """The record's changes (as transition plans them) written to gs://, and models.config after them."""
    from components._shared.serving_state import labels
    from components.deploy.state import plan

    for v in (1, 2):
        serving.push_to_serving(_saved_model(tmp_path / f"m{v}", payload=b"g%d" % v), gcs_base, "churn", str(v))
    record = serving.read_state(gcs_base, "churn")
    for kind, v in (("promote", 1), ("promote", 2)):
        record = plan(record, kind, v, f"fp{v}", [1, 2])
        config = serving.write_state(gcs_base, "churn", record)
    assert config == f"{gcs_base}/models.config"
    assert labels(serving.read_state(gcs_base, "churn")) == {"stable": 2, "previous": 1, "canary": None}
    back = tmp_path / "models.config"
    object_store.download_tree(config, str(back))
    text = back.read_text()
    assert f'base_path: "{gcs_base}/churn"' in text
    assert "versions: 2 versions: 1" in text and 'key: "stable" value: 2' in text
    serving.write_state(gcs_base, "churn", plan(record, "rollback", 1, "fp1", [1, 2]))
    assert labels(serving.read_state(gcs_base, "churn")) == {"stable": 1, "previous": None, "canary": None}
    assert serving.read_config(gcs_base) == serving.models_config_text(gcs_base)
    # Leftovers of a killed push are removed by the start-up check.
    fs, root = serving._fs(gcs_base)
    fs.pipe_file(f"{root}/.staging/churn/3-abc/saved_model.pb", b"half")
    assert serving.remove_leftovers(gcs_base, "churn") == [f"{root}/.staging/churn"]
    assert not fs.exists(f"{root}/.staging/churn")
    serving.remove_version(f"{gcs_base}/churn/1")
    assert not serving.has_version(gcs_base, "churn", 1)
