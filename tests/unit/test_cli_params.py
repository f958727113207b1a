"""`run --param NAME=VALUE` reads the value as the training pipeline declares NAME (no pipeline run)."""

from __future__ import annotations

import typing

import pytest

from components._shared.errors import ConfigError
from components._shared.params import TABLE, pipeline_params
from pipelines.__main__ import build_parser, main, run_arguments


def params_of(*argv: str, tmp_path) -> dict:
    args = build_parser().parse_args(["run", "--runs-dir", str(tmp_path), *argv])
    return run_arguments(args)[2]


def test_values_take_the_declared_types(tmp_path):
    got = params_of("--param", "hidden_units=32", "--param", "positive_label=1", "--param", "epochs=3",
                    "--param", "learning_rate=1", "--param", "require_significance=false",
                    "--param", 'anomaly_severity={"unseen_categories": "blocking"}',
                    "--param", "slice_columns=gender, region", "--param", "max_rmse=none",
                    "--param", "min_auc=", "--exclude", "notes,signup_date", tmp_path=tmp_path)
    assert got["hidden_units"] == [32]
    assert got["positive_label"] == "1"  # a str parameter: never the integer 1
    assert got["epochs"] == 3 and type(got["epochs"]) is int
    assert got["learning_rate"] == 1.0 and type(got["learning_rate"]) is float
    assert got["require_significance"] is False
    assert got["anomaly_severity"] == {"unseen_categories": "blocking"}
    assert got["slice_columns"] == ["gender", "region"]
    assert got["exclude_columns"] == ["notes", "signup_date"]
    assert got["max_rmse"] == got["min_auc"] == -1.0  # a gate's "none": the pipeline's disabled form


@pytest.mark.parametrize("value", ["64,32", "[64, 32]", " 64, 32 "])
def test_a_list_is_comma_separated_or_json(value, tmp_path):
    assert params_of("--param", f"hidden_units={value}", tmp_path=tmp_path)["hidden_units"] == [64, 32]


@pytest.mark.parametrize("item, says", [
    ("epoch=3", "--param 'epoch' is not a parameter of the training pipeline"),
    ("hidden_units=wide", "--param hidden_units expects a list of whole numbers (comma-separated or a JSON "
                          "list), got 'wide'"),
    ("anomaly_severity=blocking", "--param anomaly_severity expects a JSON object, got 'blocking'"),
    ("epochs=2.5", "--param epochs expects a whole number, got '2.5'"),
    ("min_auc=high", "--param min_auc expects a number or none, got 'high'"),
    ("require_approval=maybe", "--param require_approval expects true or false, got 'maybe'"),
])
def test_a_wrong_name_or_type_says_which_parameter_and_what_it_expects(item, says, tmp_path, capsys):
    with pytest.raises(ConfigError, match="^" + says.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        params_of("--param", item, tmp_path=tmp_path)
    # through the CLI: that one sentence, exit status 2, before anything runs
    assert main(["run", "--runs-dir", str(tmp_path / "cli"), "--param", item]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {says}") and len(err.splitlines()) == 1
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").glob("run-*"))


def test_the_table_types_are_the_types_the_pipeline_declares():
    """--param reads the table's types: they must be what the compiled pipeline declares."""
    from pipelines.training import build_pipeline

    kfp_name = {str: "String", int: "Integer", float: "Float", bool: "Boolean"}
    inputs = build_pipeline().component_spec.inputs
    for row in pipeline_params():
        declared = inputs[row.name].type
        origin = typing.get_origin(row.type)
        if origin in (list, dict):  # kfp keeps the annotation: typing.List[int], typing.Dict[str, str]
            assert declared == str(row.type), row.name
        else:
            assert declared == kfp_name[row.type], row.name
    assert TABLE["hidden_units"].type == typing.List[int]
