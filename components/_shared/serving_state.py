"""The TF Serving model base, read side: where versions live, what each model's state says is served.

Layout (TF Serving's)::

    <base>/models.config              --model_config_file: every model, its versions and labels
    <base>/<model>/serving.json       this model's serving state: stable, previous, canary
    <base>/<model>/<version>/         one SavedModel (saved_model.pb, variables/, assets.extra/)

The base is a local path (a folder, e.g. a mounted volume) or any fsspec URI (``gs://``; the
client follows ``STORAGE_EMULATOR_HOST``). Deploy writes it (``components.deploy.serving``);
compare and the CLI read it here, so a stage that only checks what is served needs no deploy code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

from components._shared import io

STATE_FILE = "serving.json"
CONFIG_FILE = "models.config"
LABELS = ("stable", "previous", "canary")
WARMUP_DIR = "assets.extra"  # TF Serving's warm-up requests: not part of a version's fingerprint


def empty_state() -> dict:
    return {"stable": None, "previous": None, "canary": None}


# --------------------------------------------------------------------------- paths and stores


def is_remote(path: str) -> bool:
    """An object-store URI (gs://, s3://, ...), as opposed to a local path."""
    return "://" in (path or "") and not path.startswith("file://")


def join(base: str, *parts) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(str(p).strip("/") for p in parts)])
    return os.path.join(base, *(str(p) for p in parts))


def fs_for(uri: str):
    """(fsspec filesystem, path) for an object-store URI, with no cached listings (other writers exist)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, skip_instance_cache=True, use_listings_cache=False)
    return fs, path


def remote_files(uri: str) -> dict:
    """Relative path -> full object path of every object under ``uri``."""
    fs, root = fs_for(uri)
    root = root.rstrip("/")
    return {p[len(root) + 1:]: p for p in fs.find(root) if p.startswith(root + "/") and not p.endswith("/")}


def local_files(folder: str) -> dict:
    """Relative path (``/``-separated) -> full path of every file under ``folder``."""
    return {os.path.relpath(os.path.join(r, f), folder).replace(os.sep, "/"): os.path.join(r, f)
            for r, _, fs in os.walk(folder) for f in fs}


def read_local(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _walk_key(rel: str) -> list:
    """Order of a top-down walk with sorted names: a folder's files before its sub-folders."""
    parts = rel.split("/")
    return [(1, p) for p in parts[:-1]] + [(0, parts[-1])]


def digest(files: dict, read) -> str:
    """SHA-256 over (relative name, bytes) of ``files`` (relative path -> location) in walk order,
    warm-up requests excluded; ``read(location) -> bytes``."""
    h = hashlib.sha256()
    for rel in sorted(files, key=_walk_key):
        if rel.startswith(WARMUP_DIR):
            continue
        h.update(rel.encode())
        h.update(read(files[rel]))
    return h.hexdigest()


def fingerprint(saved_model_dir: str) -> str:
    """SHA-256 over the SavedModel's files (names and bytes), warm-up requests excluded.

    The same value for a local folder and for its copy in an object store; the registry tags
    every version with it (``fingerprint``), so what is served can be matched to what is registered.
    """
    if is_remote(saved_model_dir):
        fs, _ = fs_for(saved_model_dir)
        return digest(remote_files(saved_model_dir), fs.cat_file)
    return digest(local_files(saved_model_dir), read_local)


@contextlib.contextmanager
def readable_copy(path: str):
    """A local folder holding the version as the store has it (itself when ``path`` is local)."""
    if not is_remote(path):
        yield path
        return
    fs, _ = fs_for(path)
    with tempfile.TemporaryDirectory(prefix="served-") as tmp:
        for rel, obj in remote_files(path).items():
            dest = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fs.get_file(obj, dest)
        yield tmp


def verify_pushed(path: str, verify) -> int:
    """``verify(folder)`` on the version read back from where TF Serving will read it."""
    with readable_copy(path) as folder:
        return verify(folder)


# --------------------------------------------------------------------------- versions and state


def version_dir(serving_base: str, model_name: str, version) -> str:
    return join(serving_base, model_name, str(version))


def has_version(serving_base: str, model_name: str, version) -> bool:
    pb = join(version_dir(serving_base, model_name, version), "saved_model.pb")
    if is_remote(pb):
        fs, path = fs_for(pb)
        return fs.exists(path)
    return os.path.exists(pb)


def read_state(serving_base: str, model_name: str) -> dict:
    """The model's serving state (``stable``, ``previous``, ``canary``); empty when nothing is served."""
    if not serving_base:
        return empty_state()
    path = join(serving_base, model_name, STATE_FILE)
    if is_remote(path):
        fs, p = fs_for(path)
        return json.loads(fs.cat_file(p)) if fs.exists(p) else empty_state()
    return io.read_json(path) if os.path.exists(path) else empty_state()
