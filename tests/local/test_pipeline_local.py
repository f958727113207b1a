"""The whole training pipeline under kfp.local: promote, reject a worse model, fail cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow
STEPS = ("ingest", "champion-reference", "validate", "drift-report", "engineer", "train", "evaluate", "export",
         "compare", "deploy")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs on one runs dir: a weak model (promoted on absolute gates), shuffled labels
    (rejected), then a stronger model (promoted over the champion)."""
    from pipelines.data import generate_churn

    base = tmp_path_factory.mktemp("pipeline")
    generate_churn(2500, seed=3).to_csv(base / "small.csv", index=False)
    shuffled = generate_churn(4000, seed=4)
    shuffled["churned"] = shuffled["churned"].sample(frac=1.0, random_state=0).to_numpy()
    shuffled.to_csv(base / "shuffled.csv", index=False)
    generate_churn(8000, seed=5).to_csv(base / "large.csv", index=False)
    runs_dir = str(base / "runs")
    # One model fed three different files (the default name would follow each file's name).
    common = ["--runs-dir", runs_dir, "--label", "churned", "--id-column", "customer_id", "--json",
              "--model-name", "churn-model"]
    first = _cli("run", "--data", str(base / "small.csv"), "--epochs", "2", *common)
    second = _cli("run", "--data", str(base / "shuffled.csv"), "--epochs", "3", *common)
    after_second = _state(runs_dir)
    third = _cli("run", "--data", str(base / "large.csv"), "--epochs", "8", *common)
    second.state = after_second
    return base, runs_dir, first, second, third


def _state(runs_dir: str) -> dict:
    """The champion alias and the served versions, as a user would inspect them."""
    from components._shared import registry
    from pipelines.local import default_tracking_uri

    client = registry.configure(default_tracking_uri(runs_dir))
    champion = registry.get_alias(client, "churn-model", "champion")
    return {"champion": champion.version if champion else None,
            "served": sorted(os.listdir(os.path.join(runs_dir, "serving", "churn-model"))),
            "config": open(os.path.join(runs_dir, "serving", "models.config")).read()}


def test_first_run_promotes_on_absolute_gates(runs):
    _, runs_dir, first, _, _ = runs
    assert first.returncode == 0, first.stderr[-3000:]
    s = json.loads(first.stdout)
    assert s["promoted"] is True and s["champion"] is None, s["reasons"]
    assert s["challenger"]["auc"] > 0.6
    assert s["model_version"] == "1"
    for key in ("run_id", "challenger", "champion", "saved_model_dir", "tflite_path", "tflite_max_abs_diff",
                "serving_dir", "reasons"):
        assert key in s
    assert os.path.exists(os.path.join(s["saved_model_dir"], "saved_model.pb"))
    assert os.path.exists(os.path.join(s["saved_model_dir"], "assets.extra", "tf_serving_warmup_requests"))
    assert os.path.getsize(s["tflite_path"]) > 0 and s["tflite_max_abs_diff"] < 1e-3
    assert s["serving_dir"] == os.path.join(runs_dir, "serving", "churn-model", "1")
    assert os.path.exists(os.path.join(s["serving_dir"], "saved_model.pb"))
    with open(os.path.join(runs_dir, s["run_id"], "summary.json")) as fh:
        assert json.load(fh)["run_id"] == s["run_id"]
    assert os.path.exists(os.path.join(runs_dir, "serving", "models.config"))
    # every step, its time and status; the parameters as run (defaults filled in); the versions
    names = [st["name"] for st in s["steps"]]
    assert sorted(names) == sorted(STEPS), s["steps"]
    assert all(st["status"] == "ok" and st["seconds"] > 0 for st in s["steps"]), s["steps"]
    from pipelines.training import CompileOptions, build_pipeline

    assert set(s["parameters"]) == set(build_pipeline(CompileOptions(target="local")).component_spec.inputs)
    assert s["parameters"]["epochs"] == 2 and s["parameters"]["label"] == "churned"
    assert s["versions"]["kfp"] == "2.17.0" and s["versions"]["tensorflow"] and s["versions"]["python"]
    # a line per step as it ended, on stderr (with --json stdout is the JSON alone)
    lines = [ln.split() for ln in first.stderr.splitlines() if ln.startswith("  ")]
    assert sorted(ln[0] for ln in lines if ln[0] in STEPS) == sorted(STEPS), first.stderr[-3000:]
    assert all(ln[1] == "ok" for ln in lines if ln[0] in STEPS)


def test_shuffled_labels_are_rejected_and_champion_stays(runs):
    _, runs_dir, _, second, _ = runs
    assert second.returncode == 0, second.stderr[-3000:]
    s = json.loads(second.stdout)
    assert s["promoted"] is False
    assert s["champion"] is not None and s["champion_version"] == "1"
    assert any("fails: AUC" in r for r in s["reasons"]), s["reasons"]
    assert s["serving_dir"] == os.path.join(runs_dir, "serving", "churn-model", "1")
    assert second.state["served"] == ["1", "serving.json"]
    assert second.state["champion"] == "1"
    assert 'key: "stable" value: 1' in second.state["config"]
    assert [st["status"] for st in s["steps"] if st["name"] == "deploy"] == ["skipped"]  # the dsl.If not taken


def test_better_model_is_promoted_and_rollback_restores_the_old_one(runs):
    _, runs_dir, _, _, third = runs
    assert third.returncode == 0, third.stderr[-3000:]
    s = json.loads(third.stdout)
    assert s["promoted"] is True, s["reasons"]
    assert s["champion_version"] == "1" and s["model_version"] == "2"
    assert s["comparison"]["ci_low"] > 0
    assert s["challenger"]["auc"] > s["champion"]["auc"]
    assert any("beats the champion" in r for r in s["reasons"])
    from components._shared import registry
    from pipelines.local import default_tracking_uri

    client = registry.configure(default_tracking_uri(runs_dir))
    assert registry.get_alias(client, "churn-model", "champion").version == "2"
    assert registry.get_alias(client, "churn-model", "previous").version == "1"
    config = open(os.path.join(runs_dir, "serving", "models.config")).read()
    assert 'key: "stable" value: 2' in config and 'key: "previous" value: 1' in config

    r = _cli("rollback", "--runs-dir", runs_dir)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["champion"], out["rolled_back_from"]) == ("1", "2")
    assert registry.get_alias(client, "churn-model", "champion").version == "1"
    # A version rolled back from is never an automatic target again, and 1 had no stable before it.
    assert registry.get_alias(client, "churn-model", "previous") is None
    config = open(os.path.join(runs_dir, "serving", "models.config")).read()
    assert 'key: "stable" value: 1' in config and 'key: "previous"' not in config
    again = _cli("rollback", "--runs-dir", runs_dir)
    assert again.returncode == 2 and "rollback --to N" in again.stderr.strip().splitlines()[-1]


_PYFUNC_SCRIPT = """
import json, sys
import mlflow
import pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/churn-model@champion")
rows = pd.read_csv(sys.argv[2]).head(200)
print(json.dumps([float(p) for p in model.predict(rows)]))
"""


def test_champion_is_an_mlflow_model_of_its_training_run(runs, tmp_path):
    import numpy as np
    import pandas as pd

    from components._shared import registry
    from components._shared.champion import find_champion
    from components._shared.scoring import score
    from pipelines.local import default_tracking_uri

    base, runs_dir, *_ = runs
    uri = default_tracking_uri(runs_dir)
    # a fresh process in another directory: nothing but the installed package and the registry
    r = subprocess.run([sys.executable, "-c", _PYFUNC_SCRIPT, uri, str(base / "small.csv")], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    probs = np.asarray(json.loads(r.stdout.strip().splitlines()[-1]))
    assert probs.shape == (200,) and np.all((probs >= 0) & (probs <= 1))

    champ = find_champion(uri, "churn-model")
    expected = score(champ.model_dir(str(tmp_path / "champion")), pd.read_csv(base / "small.csv").head(200))
    assert np.max(np.abs(probs - expected)) < 1e-4

    # the version's run is the training run: training params, evaluation and decision metrics,
    # and the one artifact layout beside the model
    client = registry.configure(uri)
    run = client.get_run(champ.ref.run_id)
    assert run.data.params["epochs"] and "final_eval_auc" in run.data.metrics
    assert 0.5 < run.data.metrics["test_auc"] <= 1 and run.data.metrics["decision_promote"] == 1.0
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "data", "saved_model", "reports", "card"} <= top
    # the card in the registry names the version MLflow gave it, with export's TFLite figures
    card = client.get_model_version("churn-model", champ.ref.version).description
    assert card.startswith(f"# Model card: churn-model version {champ.ref.version}\n") and "vnext" not in card
    assert f"`{run.info.run_id}`" in card and "| quantization | not recorded |" not in card and "{'" not in card


def test_failed_step_exits_nonzero_with_one_sentence_and_keeps_champion(runs):
    base, runs_dir, _, _, _ = runs
    from pipelines.data import generate_churn

    bad = generate_churn(1500, seed=5).astype({"monthly_charges": object})
    bad.loc[bad.index[:40], "monthly_charges"] = "n/a-yet"
    bad.to_csv(base / "corrupt.csv", index=False)
    r = _cli("run", "--data", str(base / "corrupt.csv"), "--label", "churned", "--runs-dir", runs_dir,
             "--model-name", "churn-model")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "monthly_charges" in lines[0]
    from components._shared import registry
    from pipelines.local import default_tracking_uri

    client = registry.configure(default_tracking_uri(runs_dir))
    champion = registry.get_alias(client, "churn-model", "champion").version
    assert champion in ("1", "2")
    assert sorted(os.listdir(os.path.join(runs_dir, "serving", "churn-model"))) == ["1", "2", "serving.json"]


def test_a_file_whose_header_differs_from_the_champions_is_blocked(runs):
    base, runs_dir, _, _, _ = runs
    from pipelines.data import generate_churn

    generate_churn(1500, seed=6).rename(columns={"monthly_charges": "monthly_fee"}).to_csv(
        base / "renamed.csv", index=False)
    r = _cli("run", "--data", str(base / "renamed.csv"), "--label", "churned", "--runs-dir", runs_dir,
             "--model-name", "churn-model")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: validation found")
    assert "column 'monthly_charges' of the schema is missing" in lines[0]
    assert sorted(os.listdir(os.path.join(runs_dir, "serving", "churn-model"))) == ["1", "2", "serving.json"]


@pytest.mark.parametrize("case,expect", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("nolabel", "label column 'churned' is not in the data"),
    ("header", "has a header but no rows"),
    ("three", "the label column 'churned' must have exactly two values for binary classification but has 3"),
    ("bigquery", "cannot read bq://no-project.ds.table: no Google Cloud credentials found"),
])
def test_bad_input_is_one_sentence_and_nonzero(tmp_path, case, expect, monkeypatch):
    path = tmp_path / "data.csv"
    if case == "empty":
        path.write_text("")
    elif case == "nolabel":
        path.write_text("a,b\n1,2\n3,4\n")
    elif case == "header":
        path.write_text("a,churned\n")
    elif case == "three":
        from pipelines.data import generate_churn

        df = generate_churn(300, seed=1)
        df.loc[df.index[:5], "churned"] = "maybe"
        df.to_csv(path, index=False)
    elif case == "bigquery":
        path = "bq://no-project.ds.table"
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server to fall back to
    # A third label value would be a multiclass task under --task auto: the binary check is asked for.
    task = ["--task", "binary"] if case == "three" else []
    r = _cli("run", "--data", str(path), "--label", "churned", "--runs-dir", str(tmp_path / "runs"), *task)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert expect in lines[0]
