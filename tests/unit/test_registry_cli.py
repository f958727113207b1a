"""rollback / approve / status: the registry options of `run`, a default model name, a quiet console,
and no store created where there was none. Real SQLite MLflow stores; no pipeline runs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components._shared import registry
from components._shared.errors import ConfigError
from components._shared.serving_state import STATE_FILE, empty_state

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, cwd, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An empty SQLite registry, built once: creating its tables takes seconds, copying the file none."""
    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    registry.configure(f"sqlite:///{db}")
    return db


@pytest.fixture
def store(template, tmp_path):
    """A copy of the template holding two registered models (no versions: nothing here loads a model)."""
    db = tmp_path / "elsewhere.db"
    shutil.copyfile(template, db)
    uri = f"sqlite:///{db}"
    client = registry.configure(uri)
    for name in ("sales-model", "churn-model"):
        client.create_registered_model(name)
    return uri


def _serve(base: Path, name: str) -> None:
    (base / name).mkdir(parents=True)
    (base / name / STATE_FILE).write_text(json.dumps(empty_state()))


@pytest.mark.parametrize("command", ["status", "rollback", "approve"])
def test_no_store_is_created_where_there_was_none(tmp_path, command):
    runs = tmp_path / "runs"
    r = _cli(command, "--runs-dir", str(runs), cwd=str(tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.splitlines() == [
        f"error: there is no MLflow registry at sqlite:///{runs / 'mlflow.db'} ({runs / 'mlflow.db'} does not "
        "exist; a run creates it, and --mlflow-tracking-uri or $MLFLOW_TRACKING_URI names another)"]
    assert os.listdir(tmp_path) == []  # neither the runs dir nor an mlflow.db
    # the option and the variable name the store the same way
    other = f"sqlite:///{tmp_path / 'other.db'}"
    for r in (_cli(command, "--runs-dir", str(runs), "--mlflow-tracking-uri", other, cwd=str(tmp_path)),
              _cli(command, "--runs-dir", str(runs), cwd=str(tmp_path), env={"MLFLOW_TRACKING_URI": other})):
        assert r.returncode == 2 and r.stderr.startswith(f"error: there is no MLflow registry at {other} ")
    assert os.listdir(tmp_path) == []


def test_the_default_model_is_the_only_one_served_else_the_only_one_registered(store, template, tmp_path):
    from pipelines.local import registry_model_name

    base = tmp_path / "serving"
    assert registry_model_name("given", str(base), store) == "given"
    with pytest.raises(ConfigError) as err:  # nothing served: the registry has two
        registry_model_name(None, str(base), store)
    assert str(err.value) == (f"the registry at {store} holds several models (churn-model, sales-model): "
                              "say which with --model-name")
    _serve(base, "sales-model")
    assert registry_model_name(None, str(base), store) == "sales-model"
    _serve(base, "churn-model")
    with pytest.raises(ConfigError, match=r"^the serving base .* holds several models \(churn-model, sales-model\)"):
        registry_model_name(None, str(base), store)

    shutil.copyfile(template, tmp_path / "empty.db")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(ConfigError, match=r"^no model is served from .* or registered at .*: name one with --model-name$"):
        registry_model_name(None, str(tmp_path / "nothing"), empty)


def test_status_takes_the_tracking_uri_option_and_creates_no_runs_dir(store, tmp_path):
    base = tmp_path / "serving"
    _serve(base, "sales-model")
    r = _cli("status", "--runs-dir", str(tmp_path / "runs"), "--mlflow-tracking-uri", store,
             "--serving-base", str(base), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["model"] == "sales-model" and result["agree"] is True
    assert r.stderr == ""
    assert not (tmp_path / "runs").exists()


def test_registry_commands_keep_mlflow_info_lines_off_the_console(monkeypatch):
    # What MLflow logs at INFO when it builds or migrates a store's tables ("Creating initial MLflow
    # database tables...") goes through these loggers, which MLflow sets to INFO when imported.
    import mlflow  # noqa: F401

    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic.runtime.migration")]
    saved = {name: logging.getLogger(name).level for name in ("mlflow", "alembic")}
    try:
        logging.getLogger("mlflow").setLevel(logging.INFO)  # as MLflow leaves it
        monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "INFO")  # asked for: kept
        registry.quiet_mlflow_logs()
        assert loggers[0].isEnabledFor(logging.INFO)
        monkeypatch.delenv("MLFLOW_LOGGING_LEVEL")
        registry.quiet_mlflow_logs()
        assert not any(lg.isEnabledFor(logging.INFO) for lg in loggers)
        assert all(lg.isEnabledFor(logging.WARNING) for lg in loggers)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_predict_scores_with_the_only_registered_model_and_asks_when_there_are_several(store, tmp_path, capsys,
                                                                                       monkeypatch):
    from pipelines.__main__ import main
    from pipelines.predict import only_registered_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copyfile(store[len("sqlite:///"):], runs / "mlflow.db")
    argv = ["predict", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "out"), "--runs-dir", str(runs)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"error: the registry at sqlite:///{runs / 'mlflow.db'} holds several models "
                                       "(churn-model, sales-model): say which with --model-name\n")
    registry.configure(f"sqlite:///{runs / 'mlflow.db'}").delete_registered_model("churn-model")
    assert only_registered_model(str(runs)) == "sales-model"
    assert main([*argv[:-1], str(tmp_path / "none")]) == 2  # no store: refused, not created
    assert capsys.readouterr().err.startswith(f"error: there is no MLflow registry at sqlite:///{tmp_path / 'none'}")
    assert not (tmp_path / "none").exists() and not (tmp_path / "out").exists()
