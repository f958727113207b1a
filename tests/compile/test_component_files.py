"""Reuse: each stage package exports its components without importing kfp eagerly, and a user's own
pipeline built from compiled/components/<component>.yaml runs under kfp.local."""

import importlib
import os
import subprocess
import sys

import pytest
import yaml

from pipelines.compile import COMPONENTS_DIR, STAGES, components_to_compile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_package_exports_its_components(stage):
    package = importlib.import_module(f"components.{stage}")
    wrapper = importlib.import_module(f"components.{stage}.component")
    assert package.__all__, f"components.{stage} exports nothing"
    for name in package.__all__:
        exported = getattr(package, name)
        assert exported is getattr(wrapper, name)
        assert exported.name == name.replace("_", "-")  # a KFP component, not a module of that name
    with pytest.raises(ImportError):
        exec(f"from components.{stage} import no_such_component", {})


def test_the_cores_import_without_kfp():
    # The cores run inside containers and tests; importing one runs its package's __init__ first.
    code = ("import importlib, sys\n"
            f"for stage in {STAGES!r}:\n"
            "    importlib.import_module(f'components.{stage}.core')\n"
            "print('kfp' in sys.modules)\n"
            "from components.train import train_model\n"
            "print('kfp' in sys.modules, train_model.name)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "train-model"]


def test_compiled_components_are_exactly_the_exported_ones():
    # Freshness is compile_all's check (tests/compile/test_compile.py); this catches a leftover file.
    folder = os.path.join(ROOT, "compiled", COMPONENTS_DIR)
    assert sorted(os.listdir(folder)) == sorted(f"{name}.yaml" for name in components_to_compile())


def test_a_user_pipeline_runs_the_compiled_ingest_component(tmp_path, monkeypatch):
    import pandas as pd
    from kfp import components, dsl, local

    from components._shared.params import PARAMS

    path = os.path.join(ROOT, "compiled", COMPONENTS_DIR, "ingest_data.yaml")
    container = yaml.safe_load(open(path))["deploymentSpec"]["executors"]["exec-ingest-data"]["container"]
    # How the project ships its code: the YAML holds only the wrapper's text, which imports the core
    # from the kfp-tf-gate package installed in the image (here: this venv's install), no pip at run time.
    assert container["image"].endswith("/kfp-tf-gate-data:0.1.0")
    assert "pip install" not in " ".join(container["command"])
    assert "from components.ingest.core import ingest" in container["command"][-1]

    ingest_data = components.load_component_from_file(path)
    table = tmp_path / "sales.csv"
    n = 200
    pd.DataFrame({"store_id": range(n), "price": [i % 17 * 1.5 for i in range(n)],
                  "sold": [i % 3 == 0 for i in range(n)]}).to_csv(table, index=False)

    @dsl.pipeline(name="my-pipeline")
    def my_pipeline(data_uri: str) -> dsl.Dataset:
        task = ingest_data(data_uri=data_uri, label="sold", id_column="store_id", positive_label="",
                           eval_fraction=PARAMS.eval_fraction, test_fraction=PARAMS.test_fraction,
                           seed=0, min_rows=PARAMS.min_rows, task="auto")
        return task.outputs["train_data"]

    monkeypatch.chdir(tmp_path)  # the tasks run here: the package must come from the install, not from ROOT
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    train = my_pipeline(data_uri=str(table)).output
    frame = pd.read_parquet(train.path)
    assert 0.6 * n <= len(frame) <= 0.8 * n
    assert {"store_id", "price", "sold"} <= set(frame.columns)
    assert train.metadata["rows"] == len(frame)
