"""compare's first check: the served ``stable`` version is the registered champion, byte for byte,
and loads and answers its warm-up requests; every disagreement is one sentence, never a decision.

Real SavedModels (a two-line tf.Module with a ``serving_default`` that returns ``probability``) and
real warm-up files, replayed by the same code deploy uses; no training.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from components._shared import io
from components._shared.errors import ServingStateError
from components._shared.served_check import check_served_champion
from components._shared.serving_state import STATE_FILE, fingerprint

MODEL = "m"


def _saved_model(dest: str, bias: float) -> str:
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from components._shared.warmup import write_warmup

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.b = tf.Variable(bias)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"probability": tf.sigmoid(x + self.b)}

    module = Tiny()
    tf.saved_model.save(module, dest, signatures={"serving_default": module.serve})
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=MODEL, signature_name="serving_default"))
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([0.5], dtype=np.float32)))
    write_warmup(dest, [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))])
    return dest


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-check")
    return {name: _saved_model(str(root / name), bias) for name, bias in (("v1", 0.1), ("v2", 0.2))}


def _serve(base, versions: dict, stable) -> str:
    """A serving base holding ``versions`` (number -> SavedModel folder) with ``stable`` labelled."""
    for number, folder in versions.items():
        shutil.copytree(folder, os.path.join(base, MODEL, str(number)))
    io.write_json({"stable": stable, "previous": None, "canary": None}, os.path.join(base, MODEL, STATE_FILE))
    return str(base)


def test_the_served_champion_passes(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"], 2: models["v2"]}, 2)
    assert check_served_champion(base, MODEL, "2", fingerprint(models["v2"])) == os.path.join(base, MODEL, "2")


def test_nothing_served_and_nothing_registered_is_a_first_run(tmp_path):
    assert check_served_champion(str(tmp_path), MODEL, None, None) is None
    assert check_served_champion("", MODEL, "3", "abc") is None  # registry-only deploys: nothing to check


def test_a_lost_registry_while_a_version_is_served_stops_the_run(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"]}, 1)
    with pytest.raises(ServingStateError, match=r"version 1 of m is served from .* but the registry at sqlite:///x.db "
                                                 r"has no champion"):
        check_served_champion(base, MODEL, None, None, "sqlite:///x.db")


def test_a_champion_that_nothing_serves_stops_the_run(tmp_path):
    with pytest.raises(ServingStateError, match="version 4 of m is the registry's champion but .* serves nothing"):
        check_served_champion(str(tmp_path), MODEL, "4", "abc")


def test_serving_another_version_than_the_champion_stops_the_run(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"], 2: models["v2"]}, 1)
    with pytest.raises(ServingStateError, match="serves version 1 of m as stable but the registry's champion is version 2"):
        check_served_champion(base, MODEL, "2", fingerprint(models["v2"]))


def test_a_missing_served_saved_model_stops_the_run(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"]}, 1)
    os.remove(os.path.join(base, MODEL, "1", "saved_model.pb"))
    with pytest.raises(ServingStateError, match="has no saved_model.pb"):
        check_served_champion(base, MODEL, "1", fingerprint(models["v1"]))


def test_changed_served_bytes_stop_the_run(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"]}, 1)
    variables = os.path.join(base, MODEL, "1", "variables")
    data = [f for f in os.listdir(variables) if f.startswith("variables.data")][0]
    with open(os.path.join(variables, data), "r+b") as fh:
        fh.seek(0)
        fh.write(b"\xff\xff\xff\xff")
    with pytest.raises(ServingStateError, match="are not the SavedModel the registry holds for that version"):
        check_served_champion(base, MODEL, "1", fingerprint(models["v1"]))


def test_a_served_champion_that_does_not_load_stops_the_run(tmp_path, models):
    """Without a fingerprint to compare (an old registry entry), loading is what catches it."""
    base = _serve(tmp_path, {1: models["v1"]}, 1)
    with open(os.path.join(base, MODEL, "1", "saved_model.pb"), "wb") as fh:
        fh.write(b"garbage")
    with pytest.raises(ServingStateError, match=r"\(version 1 at .*\) does not load and answer its warm-up requests"):
        check_served_champion(base, MODEL, "1", None)


def test_an_unreadable_serving_state_stops_the_run(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"]}, 1)
    with open(os.path.join(base, MODEL, STATE_FILE), "w") as fh:
        fh.write("{not json")
    with pytest.raises(ServingStateError, match="the serving state of m under .* cannot be read"):
        check_served_champion(base, MODEL, "1", fingerprint(models["v1"]))


def test_an_interrupted_change_stops_the_run_and_names_the_repair(tmp_path, models):
    base = _serve(tmp_path, {1: models["v1"], 2: models["v2"]}, 2)
    record = io.read_json(os.path.join(base, MODEL, STATE_FILE))
    record["pending"] = {"change": "promote", "version": 2, "before": {"stable": 1, "previous": None, "canary": None}}
    io.write_json(record, os.path.join(base, MODEL, STATE_FILE))
    with pytest.raises(ServingStateError, match=r"a promote of m to version 2 under .* was interrupted .*"
                                                 r"`python -m pipelines status --repair"):
        check_served_champion(base, MODEL, "1", fingerprint(models["v1"]))
