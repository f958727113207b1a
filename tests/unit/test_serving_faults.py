"""Fault injection: kill deploy and rollback at every step boundary, corrupt every served file,
lose the registry; then run the next command and check the invariants of the serving state.

Invariants (``_assert_invariants``), after the next command:
- no change is pending, no leftover of a push is on the serving path;
- the serving record, models.config and the registry aliases say the same thing;
- what is labelled stable loads as TF Serving loads it and answers its warm-up requests, its
  files match its registered fingerprint, and it is tagged ``promoted`` (never ``failed``);
- every registered version has a ``deploy_status`` (no untagged orphans);
- ``status`` reports no problem (or only the damaged previous version a test left on purpose).

The kills are real: a subprocess runs deploy or rollback with ``KFP_TF_GATE_FAULT`` naming a fault
point (``components._shared.faults``), where it ends with ``os._exit(137)``. They all start at
once and are examined one test at a time. The children's ``verify`` accepts any SavedModel (a
TensorFlow import per child would cost about 5 s each, and what they test is the steps after it):
the retry in this process loads and warms up for real, and so does ``_assert_invariants``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from components._shared import registry
from components._shared.errors import DeployError
from components._shared.serving_state import labels
from components.deploy import serving
from components.deploy.core import deploy, rollback, status
from components.deploy.transition import ALIASES, STATUS_TAG
from pipelines.data import generate_churn
from tests.stage_helpers import prepare, train_small
from tests.unit.test_deploy_registry import MODEL, registry_template  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEPLOY_KILLS = ("deploy:after-register", "deploy:during-push", "deploy:after-push", "deploy:after-verify",
                "transition:after-record", "transition:after-config", "transition:after-aliases")
ROLLBACK_KILLS = ("rollback:after-verify", "transition:after-record", "transition:after-config",
                  "transition:after-aliases")

CHILD = textwrap.dedent("""
    import sys
    from components.deploy.core import deploy, rollback
    command, uri, base, saved_model, model_dir = sys.argv[1:6]
    loaded = lambda path: 1  # noqa: E731 (the TensorFlow load is not what these kills test)
    if command == "deploy":
        deploy(saved_model, {model!r}, uri, base, artifacts={{"model": model_dir, "saved_model": saved_model}},
               card="# card\\n", tags={{"pipeline_run": "run-c"}}, verify=loaded)
    else:
        rollback({model!r}, uri, base, verify=loaded)
""").format(model=MODEL)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Three different SavedModels (a, b, c) from one export: b and c carry an extra asset file,
    which changes the fingerprint and nothing else (one export instead of three)."""
    from components.export.core import export

    root = tmp_path_factory.mktemp("fault-exports")
    prepared = prepare(generate_churn(800, seed=5), str(root / "data"))
    out = {"model": str(root / "model")}
    train_small(prepared, out["model"], epochs=1)
    out["a"] = export(out["model"], prepared.test, str(root / "a"), str(root / "tflite"), MODEL,
                      parity_rows=200).saved_model_dir
    for name in ("b", "c"):
        out[name] = str(root / name)
        shutil.copytree(out["a"], out[name])
        os.makedirs(os.path.join(out[name], "assets"), exist_ok=True)
        with open(os.path.join(out[name], "assets", "release.txt"), "w") as fh:
            fh.write(f"build {name}\n")
    return out


def _uri(world: str) -> str:
    return f"sqlite:///{os.path.join(world, 'mlflow.db')}"


def _base(world: str) -> str:
    return os.path.join(world, "serving")


def _deploy(exports, name, world, **kwargs):  # noqa: F811
    return deploy(exports[name], MODEL, _uri(world), _base(world),
                  artifacts={"model": exports["model"], "saved_model": exports[name]},
                  card=f"# card {name}\n", tags={"pipeline_run": f"run-{name}"}, **kwargs)


@pytest.fixture(scope="module")
def template(exports, registry_template, tmp_path_factory):  # noqa: F811
    """Versions 1 (a) and 2 (b) deployed: stable 2, previous 1."""
    world = str(tmp_path_factory.mktemp("faults-template"))
    shutil.copy(registry_template, os.path.join(world, "mlflow.db"))
    os.makedirs(_base(world))
    registry.configure(_uri(world), MODEL)
    _deploy(exports, "a", world)
    _deploy(exports, "b", world)
    assert labels(serving.read_state(_base(world), MODEL)) == {"stable": 2, "previous": 1, "canary": None}
    return world


def _copy(template: str, dest) -> str:
    shutil.copytree(template, str(dest))
    serving.write_models_config(_base(str(dest)))  # its base_path names the copy, as if deployed there
    return str(dest)


@pytest.fixture(scope="module")
def killed(template, exports, tmp_path_factory):  # noqa: F811
    """(command, fault point) -> (world folder, exit status, stderr) of a killed run."""
    root = tmp_path_factory.mktemp("faults-killed")
    cases = [("deploy", p) for p in DEPLOY_KILLS] + [("rollback", p) for p in ROLLBACK_KILLS]
    running = {}
    for command, point in cases:
        world = _copy(template, root / f"{command}-{point.replace(':', '-')}")
        env = dict(os.environ, KFP_TF_GATE_FAULT=point, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
        running[(command, point)] = (world, subprocess.Popen(
            [sys.executable, "-c", CHILD, command, _uri(world), _base(world), exports["c"], exports["model"]],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    out = {}
    for key, (world, proc) in running.items():
        _, err = proc.communicate(timeout=300)
        out[key] = (world, proc.returncode, err)
    return out


def _config_labels(text: str) -> dict:
    entry = serving._entry_of(text, MODEL)
    found = dict(re.findall(r'version_labels \{ key: "(\w+)" value: (\d+) \}', entry))
    return {k: int(found[k]) if k in found else None for k in ("stable", "previous", "canary")}


def _assert_invariants(world: str, damaged_previous: bool = False) -> dict:
    from components._shared.warmup import replay_warmup

    base, uri = _base(world), _uri(world)
    record = serving.read_state(base, MODEL)
    assert record["pending"] is None
    assert not [n for n in os.listdir(os.path.join(base, MODEL)) if ".tmp-" in n]
    assert not os.path.exists(os.path.join(base, ".staging"))
    config = serving.read_config(base)
    assert config == serving.models_config_text(base)
    assert _config_labels(config) == labels(record)
    client = registry.configure(uri)
    for label, alias in ALIASES.items():
        ref = registry.get_alias(client, MODEL, alias)
        assert (int(ref.version) if ref else None) == record[label], (label, record)
    versions = {int(mv.version): dict(mv.tags) for mv in client.search_model_versions(f"name = '{MODEL}'")}
    assert all(tags.get(STATUS_TAG) for tags in versions.values()), versions
    stable = record["stable"]
    path = serving.version_dir(base, MODEL, stable)
    assert versions[stable][STATUS_TAG] == "promoted"
    assert serving.fingerprint(path) == versions[stable]["fingerprint"] == record["fingerprints"][str(stable)]
    assert replay_warmup(path) > 0
    problems = status(MODEL, uri, base)["problems"]
    if damaged_previous:  # reported, not hidden; a rollback to it would refuse
        assert problems == [f"the previous version {record['previous']} is missing or its files differ from its fingerprint"]
    else:
        assert problems == []
    return record


# --------------------------------------------------------------------------- kills


@pytest.mark.parametrize("point", DEPLOY_KILLS)
def test_a_deploy_killed_at_any_step_is_finished_by_its_retry(killed, exports, point):  # noqa: F811
    world, code, err = killed[("deploy", point)]
    assert code == 137 and f"fault injected at {point}" in err, err[-2000:]
    seen = status(MODEL, _uri(world), _base(world))
    assert seen["agree"] is False, seen  # the kill left something visible, and status says what

    result = _deploy(exports, "c", world)  # the retry (KFP's, or the next run of the same model)

    assert (result.version, result.alias, result.previous_version) == ("3", "champion", "2")
    record = _assert_invariants(world)
    assert labels(record) == {"stable": 3, "previous": 2, "canary": None}
    assert [e["version"] for e in record["history"]] == [1, 2, 3]


@pytest.mark.parametrize("point", ROLLBACK_KILLS)
def test_a_rollback_killed_at_any_step_rolls_back_once(killed, point):
    world, code, err = killed[("rollback", point)]
    assert code == 137 and f"fault injected at {point}" in err, err[-2000:]

    out = rollback(MODEL, _uri(world), _base(world))  # the user runs it again

    assert (out["champion"], out["rolled_back_from"]) == ("1", "2")
    record = _assert_invariants(world)
    assert labels(record) == {"stable": 1, "previous": None, "canary": None}  # once, not twice
    assert [(e["version"], e["why"]) for e in record["history"]][-1] == (1, "rolled back")


# --------------------------------------------------------------------------- corrupted files


def _corrupt(path: str) -> None:
    if os.path.isdir(path):  # variables/: truncate every shard
        for name in os.listdir(path):
            with open(os.path.join(path, name), "r+b") as fh:
                fh.truncate(max(1, os.path.getsize(fh.name) // 3))
        return
    with open(path, "wb") as fh:
        fh.write(b"\x00garbage\xff")


@pytest.mark.parametrize("label,version", [("stable", 2), ("previous", 1)])
@pytest.mark.parametrize("part", ["saved_model.pb", "variables"])
def test_a_corrupted_version_is_never_made_stable(template, tmp_path, label, version, part):
    world = _copy(template, tmp_path / "w")
    _corrupt(os.path.join(_base(world), MODEL, str(version), part))
    assert status(MODEL, _uri(world), _base(world))["agree"] is False

    if label == "stable":  # rolling back is the remedy: to the intact previous version
        assert rollback(MODEL, _uri(world), _base(world))["champion"] == "1"
        assert labels(_assert_invariants(world))["stable"] == 1
        return
    config = serving.read_config(_base(world))
    with pytest.raises(DeployError, match=rf"^the files of version 1 of '{MODEL}' at \S+ differ from its registered "
                                          r"fingerprint \(corrupted or replaced\); it is not put into service$"):
        rollback(MODEL, _uri(world), _base(world))
    assert labels(serving.read_state(_base(world), MODEL))["stable"] == 2
    assert serving.read_config(_base(world)) == config


def test_a_corrupted_serving_record_is_rebuilt_from_the_registry(template, exports, tmp_path):  # noqa: F811
    world = _copy(template, tmp_path / "w")
    record_path = os.path.join(_base(world), MODEL, serving.STATE_FILE)
    with open(record_path, "wb") as fh:
        fh.write(b'{"stable": 2, "previ')
    assert status(MODEL, _uri(world), _base(world))["agree"] is False

    result = _deploy(exports, "c", world)

    assert (result.version, result.previous_version) == ("3", "2")
    assert labels(_assert_invariants(world)) == {"stable": 3, "previous": 2, "canary": None}
    assert open(record_path + ".corrupt", "rb").read() == b'{"stable": 2, "previ'


def test_a_corrupted_models_config_is_re_derived(template, tmp_path):
    world = _copy(template, tmp_path / "w")
    with open(os.path.join(_base(world), serving.CONFIG_FILE), "w") as fh:
        fh.write('model_config_list { config { name: "x" version_labels { key: "stable" value: 9 } } }')
    seen = status(MODEL, _uri(world), _base(world), fix=True)
    assert seen["agree"] is True and seen["repaired"] == ["re-derived models.config from the serving records"]
    assert labels(_assert_invariants(world)) == {"stable": 2, "previous": 1, "canary": None}


def test_a_lost_registry_stops_deploy_and_rollback_before_anything_changes(template, exports, tmp_path):  # noqa: F811
    world = _copy(template, tmp_path / "w")
    os.remove(os.path.join(world, "mlflow.db"))
    base, uri = _base(world), _uri(world)
    record, config = serving.read_state(base, MODEL), serving.read_config(base)
    lost = rf"^the serving record of '{MODEL}' says version 2 is stable, but the registry has no version 2 "

    with pytest.raises(DeployError, match=lost):
        _deploy(exports, "c", world)
    with pytest.raises(DeployError, match=lost):
        rollback(MODEL, uri, base)

    assert serving.read_state(base, MODEL) == record and serving.read_config(base) == config
    assert sorted(os.listdir(os.path.join(base, MODEL))) == ["1", "2", serving.STATE_FILE]
    client = registry.configure(uri)
    assert client.search_model_versions(f"name = '{MODEL}'") == []  # nothing registered, nothing untagged
    seen = status(MODEL, uri, base)
    assert seen["agree"] is False and any("registry has no version 2" in p for p in seen["problems"])
    from components._shared.warmup import replay_warmup

    assert replay_warmup(serving.version_dir(base, MODEL, 2)) > 0  # what is served still serves


def test_a_pending_change_whose_version_is_no_longer_intact_is_undone(template, tmp_path):
    """A rollback to 1 was committed (record written) and then version 1's files were damaged
    before anyone finished it: the start-up check goes back to what was served before."""
    from components.deploy.state import plan

    world = _copy(template, tmp_path / "w")
    base = _base(world)
    record = serving.read_state(base, MODEL)
    half = plan(record, "rollback", 1, record["fingerprints"]["1"], [1, 2])
    half["pending"] = {"change": "rollback", "version": 1, "before": labels(record), "at": half["history"][-1]["at"]}
    serving.write_record(base, MODEL, half)
    _corrupt(os.path.join(base, MODEL, "1", "saved_model.pb"))

    seen = status(MODEL, _uri(world), base, fix=True)

    assert seen["repaired"][0] == "undid the pending rollback of version 1 (its files are no longer intact)"
    after = serving.read_state(base, MODEL)
    assert labels(after) == labels(record) and after["history"] == record["history"]
    assert labels(_assert_invariants(world, damaged_previous=True)) == {"stable": 2, "previous": 1, "canary": None}
