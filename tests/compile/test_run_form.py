"""The run form of every compiled pipeline: each parameter described, lists and dicts typed."""

from __future__ import annotations

import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINES = [(t, p) for t in ("kubeflow", "vertex") for p in ("training", "monitoring", "prediction")]


def _parameters(target: str, pipeline: str) -> dict:
    with open(os.path.join(ROOT, "compiled", target, f"{pipeline}.yaml")) as fh:
        spec = next(yaml.safe_load_all(fh))  # the PipelineSpec (Kubeflow adds a platform document)
    return spec["root"]["inputDefinitions"]["parameters"]


@pytest.mark.parametrize("target, pipeline", PIPELINES)
def test_every_parameter_has_a_description(target, pipeline):
    params = _parameters(target, pipeline)
    missing = sorted(name for name, p in params.items() if not (p.get("description") or "").strip())
    assert not missing, f"compiled/{target}/{pipeline}.yaml: no description for {', '.join(missing)}"


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_lists_and_dicts_are_typed_parameters(target):
    training = _parameters(target, "training")
    lists = {"hidden_units", "exclude_columns", "bucketize_columns", "crosses", "slice_columns"}
    assert {n for n, p in training.items() if p["parameterType"] == "LIST"} == lists
    assert training["hidden_units"]["defaultValue"] == [64, 32]
    assert training["anomaly_severity"]["parameterType"] == "STRUCT"
    assert _parameters(target, "prediction")["anomaly_severity"]["parameterType"] == "STRUCT"
    assert _parameters(target, "monitoring")["training_parameters"]["parameterType"] == "STRUCT"
    # no encoded string defaults left
    for pipeline in ("training", "monitoring", "prediction"):
        for name, p in _parameters(target, pipeline).items():
            assert p.get("defaultValue") not in ("{}", "64,32"), f"{pipeline}: {name}"
