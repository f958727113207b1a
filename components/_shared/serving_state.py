"""The TF Serving model base, read side: where versions live, what each model's state says is served.

Layout (TF Serving's)::

    <base>/models.config              --model_config_file: every model, its versions and labels
    <base>/<model>/serving.json       this model's serving record (below)
    <base>/<model>/<version>/         one SavedModel (saved_model.pb, variables/, assets.extra/)

The serving record is the truth about what is served; models.config and the registry aliases
(champion = stable, previous = previous, candidate = canary) are derived from it::

    {"format": 2,
     "stable": 8, "previous": 7, "canary": null,         TF Serving's version labels
     "fingerprints": {"7": "<sha256>", "8": "<sha256>"}, of the versions named here
     "history": [{"version": 8, "why": "promoted", "from": 7, "fingerprint": "...", "at": "<UTC>"}, ...],
     "pending": null | {"change": "promote", "version": 8, "before": {labels}, "at": "<UTC>"}}

``history`` lists what became stable and why (promoted, approved, rolled back), newest last;
``pending`` is the journal of a change whose record is written but whose derived files and aliases
may not be (see ``components.deploy.transition``). A format-1 record (labels only) reads as one
with an empty history.

The base is a local path (a folder, e.g. a mounted volume) or an object-store URI: ``gs://`` (the
client follows ``STORAGE_EMULATOR_HOST``), ``s3://`` (AWS_* settings) or ``minio://`` (Kubeflow's
MinIO), as ``components/_shared/object_store.py`` opens them. Deploy writes it
(``components.deploy.serving``); compare and the CLI read it here, so a stage that only checks
what is served needs no deploy code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

from components._shared.errors import ServingStateError

STATE_FILE = "serving.json"
CONFIG_FILE = "models.config"
LABELS = ("stable", "previous", "canary")
WARMUP_DIR = "assets.extra"  # TF Serving's warm-up requests: not part of a version's fingerprint
FORMAT = 2


def empty_state() -> dict:
    return {"format": FORMAT, "stable": None, "previous": None, "canary": None, "fingerprints": {},
            "history": [], "pending": None}


def labels(record: dict) -> dict:
    """The TF Serving labels of a record: ``{"stable": 8, "previous": 7, "canary": None}``."""
    return {k: record.get(k) for k in LABELS}


def normalize(record) -> dict:
    """A record of either format with every field present and versions as ints.

    Raises:
        ValueError: ``record`` is not a serving record.
    """
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    out = empty_state()
    for k in LABELS:
        v = record.get(k)
        out[k] = int(v) if v not in (None, "") else None
    out["fingerprints"] = {str(int(k)): str(v) for k, v in (record.get("fingerprints") or {}).items()}
    history = record.get("history") or []
    if not isinstance(history, list):
        raise ValueError("history is not a list")
    out["history"] = [dict(e, version=int(e["version"])) for e in history]
    pending = record.get("pending")
    if pending is not None and not isinstance(pending, dict):
        raise ValueError("pending is not an object")
    out["pending"] = pending
    return out


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
    from components._shared.object_store import filesystem

    return filesystem(uri, skip_instance_cache=True, use_listings_cache=False)


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
    """The model's serving record (see the module docstring); empty when nothing is served.

    Raises:
        ServingStateError: The record exists but is not a serving record (one sentence).
    """
    if not serving_base:
        return empty_state()
    path = join(serving_base, model_name, STATE_FILE)
    if is_remote(path):
        fs, p = fs_for(path)
        if not fs.exists(p):
            return empty_state()
        raw = fs.cat_file(p)
    else:
        if not os.path.exists(path):
            return empty_state()
        raw = read_local(path)
    try:
        return normalize(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ServingStateError(f"the serving record {path} is corrupt ({exc})") from exc


def served_models(serving_base: str) -> list:
    """Names of the models that have a serving record under ``serving_base``, sorted (none when the
    base does not exist; nothing is created)."""
    if not serving_base:
        return []
    if is_remote(serving_base):
        fs, root = fs_for(serving_base)
        if not fs.exists(root):
            return []
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
        return sorted(n for n in names if not n.startswith(".") and fs.exists(f"{root.rstrip('/')}/{n}/{STATE_FILE}"))
    if not os.path.isdir(serving_base):
        return []
    return sorted(n for n in os.listdir(serving_base)
                  if not n.startswith(".") and os.path.exists(os.path.join(serving_base, n, STATE_FILE)))
