"""The layers of the README's Architecture section, checked on the source: imports point down only."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STAGES = ("ingest", "validate", "engineer", "train", "evaluate", "compare", "export", "deploy", "monitor", "predict",
          "rollout")
# The one stage that drives another: a rollout moves traffic through deploy's serving record (its only writer).
USES = {"rollout": {"deploy"}}
MAX_LINES = 500


def _sources(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _imports(path: pathlib.Path) -> set:
    """Every module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _stage_of(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "components" and parts[1] in STAGES else None


@pytest.mark.parametrize("path", list(_sources("components")), ids=lambda p: str(p.relative_to(ROOT)))
def test_components_import_down_only(path):
    rel = path.relative_to(ROOT)
    own = rel.parts[1] if rel.parts[1] in STAGES else None
    for module in _imports(path):
        assert module.split(".")[0] != "pipelines", f"{rel} imports {module}: components never import pipelines"
        other = _stage_of(module)
        if own is None:
            assert other is None, f"{rel} (shared) imports the stage module {module}"
        else:
            assert other in (None, own, *USES.get(own, ())), f"{rel} (stage {own}) imports another stage: {module}"


def test_no_source_file_keeps_several_jobs():
    long = {str(p.relative_to(ROOT)): n for p in _sources("components", "pipelines")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_defaults_come_from_the_parameter_table():
    from components._shared.params import PARAMS
    from components.compare.core import Gates
    from components.train.core import TrainConfig
    from pipelines.training import build_pipeline

    assert TrainConfig().epochs == PARAMS.epochs
    assert Gates().min_auc == PARAMS.min_auc
    spec = build_pipeline().pipeline_spec
    inputs = spec.root.input_definitions.parameters
    assert inputs["epochs"].default_value.number_value == PARAMS.epochs
    assert inputs["min_auc"].default_value.number_value == PARAMS.min_auc
