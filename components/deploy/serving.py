"""The TF Serving model base: versions, labels and ``models.config``, in a local folder.

Layout (TF Serving's)::

    <base>/models.config              --model_config_file: every model, its versions and labels
    <base>/<model>/serving.json       this model's labels: stable, previous, canary
    <base>/<model>/<version>/         one SavedModel (saved_model.pb, variables/, assets.extra/)

A version appears complete or not at all, and the state/config files change only after the
versions they name are complete, so a server polling the base never sees half a model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from components._shared import io
from components._shared.errors import DeployError

STATE_FILE = "serving.json"
CONFIG_FILE = "models.config"
LABELS = ("stable", "previous", "canary")


def empty_state() -> dict:
    return {"stable": None, "previous": None, "canary": None}


def fingerprint(saved_model_dir: str) -> str:
    """SHA-256 over the SavedModel's files (names and bytes), warm-up requests excluded."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(saved_model_dir):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(root, f)
            rel = os.path.relpath(path, saved_model_dir)
            if rel.startswith("assets.extra"):
                continue
            h.update(rel.encode())
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def version_dir(serving_base: str, model_name: str, version) -> str:
    return os.path.join(serving_base, model_name, str(version))


def has_version(serving_base: str, model_name: str, version) -> bool:
    return os.path.exists(os.path.join(version_dir(serving_base, model_name, version), "saved_model.pb"))


def push_to_serving(saved_model_dir: str, serving_base: str, model_name: str, version: str) -> tuple[str, bool]:
    """Copy a SavedModel to ``<base>/<model>/<version>`` atomically. Returns (path, created)."""
    if not str(version).isdigit():
        raise DeployError(f"TF Serving versions must be integers, got {version!r}")
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
    shutil.rmtree(path, ignore_errors=True)


def read_state(serving_base: str, model_name: str) -> dict:
    if not serving_base:
        return empty_state()
    path = os.path.join(serving_base, model_name, STATE_FILE)
    return io.read_json(path) if os.path.exists(path) else empty_state()


def write_state(serving_base: str, model_name: str, state: dict) -> str:
    if not serving_base:
        return ""
    io.write_json(state, os.path.join(serving_base, model_name, STATE_FILE))
    return write_models_config(serving_base)


def write_models_config(serving_base: str) -> str:
    """Regenerate ``<base>/models.config`` (TF Serving's --model_config_file) from every model's state."""
    configs = []
    for name in sorted(os.listdir(serving_base)):
        state_path = os.path.join(serving_base, name, STATE_FILE)
        if not os.path.exists(state_path):
            continue
        state = io.read_json(state_path)
        labels = {k: state[k] for k in ("stable", "canary", "previous") if state.get(k)}
        versions = sorted({int(v) for v in labels.values()}, reverse=True)
        if not versions:
            continue
        body = [f'    name: "{name}"', f'    base_path: "{os.path.abspath(os.path.join(serving_base, name))}"',
                '    model_platform: "tensorflow"',
                "    model_version_policy { specific { " + " ".join(f"versions: {v}" for v in versions) + " } }"]
        body += [f'    version_labels {{ key: "{k}" value: {int(v)} }}' for k, v in labels.items()]
        configs.append("  config {\n" + "\n".join(body) + "\n  }")
    text = "model_config_list {\n" + "\n".join(configs) + "\n}\n"
    path = os.path.join(serving_base, CONFIG_FILE)
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
