"""Model names are checked before anything runs, and paths built from names stay under their root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components._shared.errors import ConfigError
from components._shared.names import check_model_name, path_under

ROOT = Path(__file__).resolve().parents[2]
BAD = ['a"b', "a/b", "../x", "..", "a..b", "", " churn", "-x", "x" * 64, "a\nb", "a b", "a'b", "a\\b"]


@pytest.mark.parametrize("name", ["churn-model", "m", "Churn_v2.1", "a" * 63])
def test_plain_names_pass(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_names_with_quotes_slashes_or_dots_are_refused_with_one_sentence(name):
    with pytest.raises(ConfigError) as err:
        check_model_name(name)
    assert str(err.value).startswith(f"invalid model name {name!r}: ")
    assert "\n" not in str(err.value).replace(repr(name), "")


def test_the_experiment_name_is_derived_only_from_a_valid_model_name():
    from components._shared.registry import experiment_name

    assert experiment_name("churn-model") == "kfp-tf-gate/churn-model"
    with pytest.raises(ConfigError, match="invalid model name"):
        experiment_name("../x")


def test_paths_built_from_names_stay_under_their_root(tmp_path):
    root = str(tmp_path / "runs")
    assert path_under(root, "monitor", "churn-model-20260101") == os.path.join(root, "monitor", "churn-model-20260101")
    assert path_under("relative", "x") == os.path.join(os.path.abspath("relative"), "x")
    assert path_under("gs://bucket/base", "m", "3") == "gs://bucket/base/m/3"
    assert path_under(root, "a/../b") == os.path.join(root, "b")  # stays inside: allowed
    for parts in (("monitor", "../../x-1"), ("..",), ("/etc/passwd",), ("a", "..", "..", "b")):
        with pytest.raises(ConfigError, match="would leave its root"):
            path_under(root, *parts)
    with pytest.raises(ConfigError, match="would leave its root gs://bucket/base"):
        path_under("gs://bucket/base", "..", "other")
    # a sibling whose name starts like the root is outside it
    with pytest.raises(ConfigError):
        path_under(root, "../runs-other")


def _cli(*args, cwd):
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return r, time.monotonic() - started


@pytest.mark.parametrize("argv", [
    ["run", "--model-name", 'a"b'],
    ["run", "--model-name", "../../x", "--data", "missing.csv", "--label", "y"],
    ["run", "--param", "model_name=a/b", "--data", "missing.csv", "--label", "y"],
    ["rollback", "--model-name", "a..b"],
    ["approve", "--model-name", "x/y"],
    ["monitor", "--model-name", "../../x", "--current", "missing.csv"],
    ["submit", "--target", "kfp", "--model-name", 'a"b'],
    ["submit", "--target", "vertex", "--param", "model_name=../x"],
], ids=lambda a: " ".join(a[:3]))
def test_the_cli_refuses_a_bad_name_before_anything_runs_or_is_written(tmp_path, argv):
    work = tmp_path / "work"
    work.mkdir()
    runs = tmp_path / "a" / "b" / "runs"  # ../../x from here would be tmp_path/a/x
    r, seconds = _cli(*argv, "--runs-dir", str(runs), cwd=str(work)) if argv[0] != "submit" else _cli(
        *argv, cwd=str(work))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid model name "), r.stderr
    assert seconds < 30  # a run takes minutes; the check is an import and a regex
    assert not runs.exists() and os.listdir(work) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_local_run_refuses_the_name_before_reading_the_data(tmp_path):
    from pipelines.local import run_local

    with pytest.raises(ConfigError, match="invalid model name"):
        run_local(str(tmp_path / "missing.csv"), "y", runs_dir=str(tmp_path / "runs"), model_name='a"b')
    with pytest.raises(ConfigError, match="invalid model name 'x/y'"):  # a --param overrides the argument
        run_local(str(tmp_path / "missing.csv"), "y", runs_dir=str(tmp_path / "runs"), params={"model_name": "x/y"})
    with pytest.raises(ConfigError, match="would leave its root"):
        run_local(str(tmp_path / "missing.csv"), "y", runs_dir=str(tmp_path / "runs"), run_id="../escape")
    assert not (tmp_path / "runs").exists()


def test_the_training_pipelines_first_step_refuses_the_name(tmp_path):
    """champion_reference runs at the top of the DAG beside ingest: a bad name ends the run there."""
    from components.validate.component_io import fetch_reference

    dest = tmp_path / "reference"
    with pytest.raises(ConfigError, match="invalid model name 'm\"x'"):
        fetch_reference("", f"sqlite:///{tmp_path}/mlflow.db", 'm"x', str(dest))
    assert not dest.exists() and not (tmp_path / "mlflow.db").exists()


def test_the_monitors_first_step_refuses_the_name_before_reading_anything(tmp_path):
    from components.monitor.core import Outputs, monitor

    out = tmp_path / "out"
    outputs = Outputs(str(out / "summary.json"), str(out / "report.html"), str(out / "drift.html"))
    with pytest.raises(ConfigError, match=r"invalid model name '\.\./\.\./x'"):
        monitor(str(tmp_path / "missing.csv"), "../../x", f"sqlite:///{tmp_path}/mlflow.db", outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("data, expected", [
    ("runs/data/churn.csv", ("churn-model", "file")),  # the embedded dataset: unchanged
    ("/data/Sales Data 2024.CSV", ("sales-data-2024-model", "file")),
    ("data/part-0001.snappy.parquet", ("part-0001-model", "file")),
    ("gs://bucket/tables/orders.parquet", ("orders-model", "file")),
    ("gs://bucket/tables/orders/", ("orders-model", "folder")),
    ("gs://bucket/tables/orders/*.parquet", ("orders-model", "folder")),
    ("bq://project.dataset.Orders_v2", ("orders_v2-model", "table")),
    ("bq://project:dataset.orders", ("orders-model", "table")),
    ("data/a..b.csv", ("a-b-model", "file")),
    ("data/" + "x" * 80 + ".csv", ("x" * 57 + "-model", "file")),
    ("data/+++.csv", ("model", "file")),
])
def test_the_default_model_name_comes_from_the_data(data, expected):
    from components._shared.names import model_name_from_data

    assert model_name_from_data(data) == expected
    assert check_model_name(expected[0])


def test_a_local_folder_names_the_model(tmp_path):
    from components._shared.names import model_name_from_data

    (tmp_path / "Shards.v2").mkdir()
    assert model_name_from_data(str(tmp_path / "Shards.v2")) == ("shards-v2-model", "folder")


def test_run_says_which_model_name_it_derived(tmp_path):
    table = tmp_path / "sales.csv"
    table.write_text("store,sold\n1,yes\n")
    r, _ = _cli("run", "--data", str(table), "--label", "missing", "--runs-dir", str(tmp_path / "runs"),
                cwd=str(tmp_path))
    assert r.returncode == 2  # preflight refuses the label: the line comes before anything runs
    assert r.stdout.splitlines()[0] == "model name: sales-model (from the data file; --model-name sets it)"
    r, _ = _cli("run", "--data", str(table), "--label", "missing", "--model-name", "mine",
                "--runs-dir", str(tmp_path / "runs"), cwd=str(tmp_path))
    assert r.returncode == 2 and "model name" not in r.stdout
    assert not (tmp_path / "runs").exists()


def test_a_prediction_rehearsal_scores_with_the_model_of_the_newest_training_rehearsal(tmp_path):
    import json

    from pipelines.rehearsal.cli import rehearsed_model_name

    runs = tmp_path / "runs"
    assert rehearsed_model_name(str(runs)) == "churn-model"  # none yet: the table's default
    for n, (run, summary) in enumerate([("run-1", {"model_name": "old-model", "rehearsal": {}}),
                                        ("run-2", {"model_name": "sales-model", "rehearsal": {}}),
                                        ("run-3", {"model_name": "local-model"})]):  # a local run, not a rehearsal
        (runs / run).mkdir(parents=True)
        (runs / run / "summary.json").write_text(json.dumps(summary))
        os.utime(runs / run / "summary.json", (1000 + n, 1000 + n))
    assert rehearsed_model_name(str(runs)) == "sales-model"
