"""The parameter table is the one source of defaults: the pipeline, the cores and the CLI read it."""

from __future__ import annotations

import inspect

from components._shared.params import PARAMS, TABLE, pipeline_params, with_defaults


def test_pipeline_parameters_are_the_table_with_its_defaults():
    from pipelines.training import build_pipeline

    fn = build_pipeline().pipeline_func
    sig = inspect.signature(fn).parameters
    assert set(sig) == {p.name for p in pipeline_params()}
    for p in pipeline_params():
        expected = inspect.Parameter.empty if p.default is None else p.default
        assert sig[p.name].default == expected, p.name
    assert all(f"{p.name}: {p.help}" in fn.__doc__ for p in pipeline_params())


def test_wrappers_declare_no_default_the_table_owns():
    from components.compare.component import compare_models
    from components.deploy.component import deploy_model
    from components.engineer.component import engineer_features
    from components.evaluate.component import evaluate_model
    from components.export.component import export_model
    from components.ingest.component import ingest_data
    from components.train.component import train_model

    for comp in (ingest_data, engineer_features, train_model, evaluate_model, export_model, compare_models,
                 deploy_model):
        for name, param in inspect.signature(comp.python_func).parameters.items():
            if name in TABLE:
                assert param.default is inspect.Parameter.empty, f"{comp.name}: {name} has its own default"


def test_cores_take_their_defaults_from_the_table():
    from components.compare.core import Gates
    from components.train.core import TrainConfig

    cfg = TrainConfig()
    assert cfg.epochs == PARAMS.epochs == 10
    assert cfg.hidden_units == (64, 32) and cfg.learning_rate == PARAMS.learning_rate
    assert Gates().min_auc == PARAMS.min_auc == 0.6


def test_cli_run_defaults_and_help_come_from_the_table():
    from pipelines.__main__ import build_parser

    from components._shared.names import model_name_from_data

    args = build_parser().parse_args(["run"])
    # Not given: named after the data (the embedded churn.csv keeps the table's default name).
    assert args.model_name is None
    assert model_name_from_data("runs/data/churn.csv")[0] == PARAMS.model_name == "churn-model"
    assert args.epochs is None  # unset: the pipeline's default (the table's) applies


def test_with_defaults_fills_what_is_not_given():
    def wrapper(model_name: str, epochs: int, other: int = 3):
        return model_name, epochs, other

    assert with_defaults(wrapper, epochs=2) == {"model_name": "churn-model", "epochs": 2}


def test_the_two_drift_shares_have_two_names():
    assert "psi_drift_share" in TABLE and "drift_share_threshold" not in TABLE
