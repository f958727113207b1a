"""The TF Serving model base: versions, labels and ``models.config``, in a folder or an object store.

Layout (TF Serving's)::

    <base>/models.config              --model_config_file: every model, its versions and labels
    <base>/<model>/serving.json       this model's labels: stable, previous, canary
    <base>/<model>/<version>/         one SavedModel (saved_model.pb, variables/, assets.extra/)

A version appears complete or not at all, and the state/config files change only after the
versions they name are complete, so a server polling the base never sees half a model.

The base is a local path (a folder, e.g. a mounted volume) or any fsspec URI (``gs://``; the
client follows ``STORAGE_EMULATOR_HOST``). An object store has no rename, so a push there goes as
TFX's Pusher does it: the version is uploaded to a staging prefix (``<base>/.staging/``, which TF
Serving ignores), then copied into ``<base>/<model>/<version>/`` object by object with
``saved_model.pb`` last (TF Serving loads a version only once that file exists), then the staging
copy is deleted. Objects themselves appear whole, so the state and config files are plain writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid

from components._shared import io
from components._shared.errors import DeployError
from components._shared.serving_state import (  # noqa: F401 (the read side, re-exported for deploy's callers)
    CONFIG_FILE,
    LABELS,
    STATE_FILE,
    empty_state,
    fingerprint,
    has_version,
    is_remote,
    read_state,
    readable_copy,
    verify_pushed,
    version_dir,
)
from components._shared.serving_state import fs_for as _fs
from components._shared.serving_state import join as _join
from components._shared.serving_state import local_files as _local_files


def _push_remote(saved_model_dir: str, model_base: str, version: str) -> tuple[str, bool]:
    target = _join(model_base, version)
    fs, target_path = _fs(target)
    local = _local_files(saved_model_dir)
    if fs.exists(f"{target_path}/saved_model.pb"):
        if fingerprint(target) == fingerprint(saved_model_dir):
            return target, False
        raise DeployError(f"{target} already holds a different model; refusing to overwrite a served version")
    if fs.exists(target_path):  # objects of an interrupted push, never servable (no saved_model.pb)
        fs.rm(target_path, recursive=True)
    base, model = model_base.rstrip("/").rsplit("/", 1)
    staging = _join(base, ".staging", model, f"{version}-{uuid.uuid4().hex[:12]}")
    _, staging_path = _fs(staging)
    # saved_model.pb last: TF Serving starts loading a version when that object appears.
    order = sorted(local, key=lambda rel: (rel == "saved_model.pb", rel))
    try:
        for rel in order:
            fs.put_file(local[rel], f"{staging_path}/{rel}")
        for rel in order:
            fs.copy(f"{staging_path}/{rel}", f"{target_path}/{rel}")
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(target_path, recursive=True)
        raise
    finally:
        with contextlib.suppress(Exception):
            fs.rm(staging_path, recursive=True)
    return target, True


def push_to_serving(saved_model_dir: str, serving_base: str, model_name: str, version: str) -> tuple[str, bool]:
    """Copy a SavedModel to ``<base>/<model>/<version>`` atomically. Returns (path, created)."""
    if not str(version).isdigit():
        raise DeployError(f"TF Serving versions must be integers, got {version!r}")
    if is_remote(serving_base):
        return _push_remote(saved_model_dir, _join(serving_base, model_name), str(version))
    model_base = os.path.join(serving_base, model_name)
    target = os.path.join(model_base, str(version))
    if os.path.exists(target):
        if fingerprint(target) == fingerprint(saved_model_dir):
            return target, False
        raise DeployError(f"{target} already holds a different model; refusing to overwrite a served version")
    os.makedirs(model_base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_base)
    try:
        shutil.copytree(saved_model_dir, tmp, dirs_exist_ok=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, True


def remove_version(path: str) -> None:
    """Take back a version this deploy pushed (it failed verification or was not promoted)."""
    if is_remote(path):
        fs, p = _fs(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(p, recursive=True)
        return
    shutil.rmtree(path, ignore_errors=True)


def write_state(serving_base: str, model_name: str, state: dict) -> str:
    if not serving_base:
        return ""
    path = _join(serving_base, model_name, STATE_FILE)
    if is_remote(path):
        fs, p = _fs(path)
        fs.pipe_file(p, json.dumps(state, indent=2, sort_keys=True).encode())  # an object appears whole
    else:
        io.write_json(state, path)
    return write_models_config(serving_base)


def _model_states(serving_base: str):
    """(model name, state) of every model folder of the base that has a state file, by name."""
    if is_remote(serving_base):
        fs, root = _fs(serving_base)
        names = sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)})
        for name in names:
            path = f"{root.rstrip('/')}/{name}/{STATE_FILE}"
            if not name.startswith(".") and fs.exists(path):
                yield name, json.loads(fs.cat_file(path))
        return
    for name in sorted(os.listdir(serving_base)):
        state_path = os.path.join(serving_base, name, STATE_FILE)
        if os.path.exists(state_path):
            yield name, io.read_json(state_path)


def write_models_config(serving_base: str) -> str:
    """Regenerate ``<base>/models.config`` (TF Serving's --model_config_file) from every model's state."""
    configs = []
    for name, state in _model_states(serving_base):
        labels = {k: state[k] for k in ("stable", "canary", "previous") if state.get(k)}
        versions = sorted({int(v) for v in labels.values()}, reverse=True)
        if not versions:
            continue
        base_path = _join(serving_base, name) if is_remote(serving_base) else os.path.abspath(
            os.path.join(serving_base, name))
        body = [f'    name: "{name}"', f'    base_path: "{base_path}"',
                '    model_platform: "tensorflow"',
                "    model_version_policy { specific { " + " ".join(f"versions: {v}" for v in versions) + " } }"]
        body += [f'    version_labels {{ key: "{k}" value: {int(v)} }}' for k, v in labels.items()]
        configs.append("  config {\n" + "\n".join(body) + "\n  }")
    text = "model_config_list {\n" + "\n".join(configs) + "\n}\n"
    path = _join(serving_base, CONFIG_FILE)
    if is_remote(path):
        fs, p = _fs(path)
        fs.pipe_file(p, text.encode())
        return path
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- label moves


def mark_canary(serving_base: str, model_name: str, version) -> str:
    """A candidate is served under ``canary`` only; ``stable`` stays on the approved champion."""
    state = read_state(serving_base, model_name)
    state["canary"] = int(version)
    return write_state(serving_base, model_name, state)


def promote(serving_base: str, model_name: str, version) -> str:
    """``stable`` moves to ``version``; the old stable becomes ``previous``; no canary."""
    state = read_state(serving_base, model_name)
    if state.get("stable") and int(state["stable"]) != int(version):
        state["previous"] = int(state["stable"])
    state["stable"], state["canary"] = int(version), None
    return write_state(serving_base, model_name, state)


def roll_back(serving_base: str, model_name: str, to_version, from_version) -> str:
    """``stable`` back to ``to_version`` (which must still be on the base), ``previous`` to ``from_version``.

    Returns:
        The served version's path.
    """
    served = version_dir(serving_base, model_name, to_version)
    if not has_version(serving_base, model_name, to_version):
        raise DeployError(f"version {to_version} of {model_name!r} is no longer on the serving path {served}")
    state = read_state(serving_base, model_name)
    state["stable"] = int(to_version)
    state["previous"] = int(from_version) if from_version else None
    state["canary"] = None
    write_state(serving_base, model_name, state)
    return served
