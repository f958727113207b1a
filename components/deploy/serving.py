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

Only :mod:`components.deploy.transition` changes a record; this module writes what it decides.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import uuid

from components._shared import faults, io
from components._shared.errors import DeployError
from components._shared.serving_state import (  # noqa: F401 (the read side, re-exported for deploy's callers)
    CONFIG_FILE,
    LABELS,
    STATE_FILE,
    ServingStateError,
    empty_state,
    fingerprint,
    has_version,
    is_remote,
    join,
    normalize,
    read_local,
    read_state,
    readable_copy,
    verify_pushed,
    version_dir,
)
from components._shared.serving_state import fs_for as _fs
from components._shared.serving_state import join as _join
from components._shared.serving_state import local_files as _local_files

logger = logging.getLogger(__name__)


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
        faults.point("deploy:during-push")
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
        faults.point("deploy:during-push")
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
    """Write the model's serving record atomically, then regenerate ``models.config`` from every record.

    Returns:
        The models.config path ("" without a serving base).
    """
    if not serving_base:
        return ""
    write_record(serving_base, model_name, state)
    return write_models_config(serving_base)


def write_record(serving_base: str, model_name: str, state: dict) -> None:
    """Only the serving record (atomically: a rename locally; an object appears whole)."""
    path = _join(serving_base, model_name, STATE_FILE)
    record = normalize(state)
    if is_remote(path):
        fs, p = _fs(path)
        fs.pipe_file(p, json.dumps(record, indent=2, sort_keys=True).encode())
    else:
        io.write_json(record, path)


def _model_states(serving_base: str):
    """(model name, record) of every model folder of the base that has a readable record, by name.

    A model whose record is unreadable keeps its entry from the current models.config (its own
    start-up check repairs the record; another model's deploy must not drop it from serving).
    """
    if is_remote(serving_base):
        fs, root = _fs(serving_base)
        names = sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}) if fs.exists(root) else []
        names = [n for n in names if not n.startswith(".") and fs.exists(f"{root.rstrip('/')}/{n}/{STATE_FILE}")]
    else:
        names = sorted(n for n in (os.listdir(serving_base) if os.path.isdir(serving_base) else [])
                       if os.path.exists(os.path.join(serving_base, n, STATE_FILE)))
    for name in names:
        try:
            yield name, read_state(serving_base, name)
        except ServingStateError:
            logger.warning("the serving record of %s is unreadable; its models.config entry is kept", name)
            yield name, None


def quote(text: str) -> str:
    """A textproto string literal (names are validated elsewhere; quoting never relies on it)."""
    escaped = "".join({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, c)
                      if c >= " " or c in "\n\r\t" else f"\\{ord(c):03o}" for c in str(text))
    return f'"{escaped}"'


def config_entry(serving_base: str, name: str, state: dict) -> str:
    """One model's ``config { ... }`` block of models.config ("" when the record labels nothing)."""
    labelled = {k: state[k] for k in LABELS if state.get(k)}
    versions = sorted({int(v) for v in labelled.values()}, reverse=True)
    if not versions:
        return ""
    base_path = _join(serving_base, name) if is_remote(serving_base) else os.path.abspath(os.path.join(serving_base, name))
    body = [f"    name: {quote(name)}", f"    base_path: {quote(base_path)}",
            '    model_platform: "tensorflow"',
            "    model_version_policy { specific { " + " ".join(f"versions: {v}" for v in versions) + " } }"]
    body += [f'    version_labels {{ key: "{k}" value: {int(v)} }}' for k, v in labelled.items()]
    return "  config {\n" + "\n".join(body) + "\n  }"


def read_config(serving_base: str) -> str:
    """The current models.config text ("" when there is none)."""
    path = _join(serving_base, CONFIG_FILE)
    if is_remote(path):
        fs, p = _fs(path)
        return fs.cat_file(p).decode(errors="replace") if fs.exists(p) else ""
    return read_local(path).decode(errors="replace") if os.path.exists(path) else ""


def _entry_of(text: str, name: str) -> str:
    """The config block of model ``name`` in a models.config text ("" when absent)."""
    marker = f"    name: {quote(name)}\n"
    at = text.find(marker)
    if at < 0:
        return ""
    start = text.rfind("  config {\n", 0, at)
    end = text.find("\n  }", at)
    return text[start:end + 4] if start >= 0 and end >= 0 else ""


def models_config_text(serving_base: str) -> str:
    """What ``models.config`` must say, derived from every model's record."""
    current = None
    configs = []
    for name, state in _model_states(serving_base):
        if state is None:
            current = read_config(serving_base) if current is None else current
            entry = _entry_of(current, name)
        else:
            entry = config_entry(serving_base, name, state)
        if entry:
            configs.append(entry)
    return "model_config_list {\n" + "\n".join(configs) + "\n}\n"


def write_models_config(serving_base: str) -> str:
    """Regenerate ``<base>/models.config`` (TF Serving's --model_config_file) from every model's record."""
    text = models_config_text(serving_base)
    path = _join(serving_base, CONFIG_FILE)
    if is_remote(path):
        fs, p = _fs(path)
        fs.pipe_file(p, text.encode())
        return path
    io.write_text_atomic(text, path)
    return path


# --------------------------------------------------------------------------- leftovers


def remove_leftovers(serving_base: str, model_name: str) -> list:
    """Remove what a killed push left: ``<model>/.N.tmp-*`` folders, ``.staging/<model>/`` objects.

    TF Serving ignores both (not integer folder names), so this is tidying, never a served change.
    Runs inside the deploy lock, so no push of this model is under way.

    Returns:
        The removed paths.
    """
    removed = []
    if is_remote(serving_base):
        fs, root = _fs(serving_base)
        for prefix in (f"{root.rstrip('/')}/.staging/{model_name}",):
            if fs.exists(prefix):
                fs.rm(prefix, recursive=True)
                removed.append(prefix)
        return removed
    model_base = os.path.join(serving_base, model_name)
    if os.path.isdir(serving_base):
        for name in sorted(os.listdir(serving_base)):
            if name.startswith(f".{CONFIG_FILE}.tmp-"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(serving_base, name))
                removed.append(os.path.join(serving_base, name))
    if os.path.isdir(model_base):
        for name in sorted(os.listdir(model_base)):
            if name.startswith(".") and ".tmp-" in name:
                path = os.path.join(model_base, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                removed.append(path)
    return removed
