"""What validate enforces: the champion's schema and reference sample, and a user schema file.

:func:`fetch_reference` runs in its own step (``champion_reference``), so the validate step
itself never imports MLflow (about 2 s) and, on Kubeflow, the registry lookup runs while
ingest reads the data. It writes a folder: ``reference.json`` (where it came from),
``schema.json`` (the champion's) when there is a champion, ``user_schema.json`` when a schema
file was given, ``reference.parquet`` (the champion's reference sample) for the drift report.
:func:`read_reference` reads it back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from typing import Optional

from components._shared import io
from components._shared.champion import absent_reason, find_champion
from components._shared.errors import DataError
from components._shared.registry import experiment_name

logger = logging.getLogger(__name__)

INFO_FILE = "reference.json"
SCHEMA_FILE = "schema.json"
USER_SCHEMA_FILE = "user_schema.json"
SAMPLE_FILE = "reference.parquet"


@dataclasses.dataclass
class Reference:
    """What validate enforces (see :func:`read_reference`)."""

    schema: Optional[dict]  # the champion's schema, if there is a champion
    sample_path: Optional[str]  # the champion's reference sample (Parquet), if any
    source: str
    user_schema: Optional[dict] = None  # the schema file, if one was given


def _write(dest: str, source: str, schema: Optional[dict] = None, sample_path: Optional[str] = None,
           version: Optional[str] = None, user_schema: Optional[dict] = None) -> dict:
    os.makedirs(dest, exist_ok=True)
    if schema is not None:
        io.write_json(schema, os.path.join(dest, SCHEMA_FILE))
    if user_schema is not None:
        io.write_json(user_schema, os.path.join(dest, USER_SCHEMA_FILE))
    if sample_path is not None:
        shutil.copyfile(sample_path, os.path.join(dest, SAMPLE_FILE))
    info = {"source": source, "version": version, "schema": schema is not None,
            "user_schema": user_schema is not None, "sample": sample_path is not None}
    io.write_json(info, os.path.join(dest, INFO_FILE))
    return info


def _read_schema_file(schema_uri: str) -> dict:
    import json

    try:
        if "://" in schema_uri:
            from components._shared.object_store import open_file  # gs://, s3://, minio://

            with open_file(schema_uri) as fh:
                schema = json.load(fh)
        else:
            schema = io.read_json(schema_uri)
    except FileNotFoundError as exc:
        raise DataError(f"the schema file {schema_uri} does not exist") from exc
    except ValueError as exc:
        raise DataError(f"the schema file {schema_uri} is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict) or not isinstance(schema.get("columns"), dict):
        raise DataError(f"the schema file {schema_uri} has no \"columns\" object (write it like validate's schema artifact)")
    bad = [name for name, e in schema["columns"].items() if not isinstance(e, dict) or "kind" not in e]
    if bad:
        raise DataError(f"the schema file {schema_uri} gives column {bad[0]!r} no \"kind\"")
    for name, entry in schema["columns"].items():  # a hand-written entry is a feature unless it says otherwise
        entry.setdefault("role", "label" if name == schema.get("label") or entry["kind"] == "label" else "feature")
    return schema


def fetch_reference(schema_uri: str, tracking_uri: str, model_name: str, dest: str) -> dict:
    """Write the reference folder ``dest``; return its ``reference.json`` content.

    The champion's schema (and reference sample) come from the registry; a user-supplied
    ``schema_uri`` (validate's schema artifact, possibly edited, or a hand-written one whose
    columns need only a ``kind``; local path or any fsspec URI such as gs://) is enforced as
    well, and is how a column the champion did not have becomes a feature. With neither, the
    folder holds only ``reference.json`` and validate infers the schema from the training split.

    Checks the model name first (``ConfigError``): this runs at the top of the training pipeline,
    beside ingest, so an invalid name (and so experiment name) fails the run before anything trains.
    """
    logger.info("model %s, experiment %s", model_name, experiment_name(model_name))
    user = _read_schema_file(schema_uri) if schema_uri else None
    file_source = f"schema file {schema_uri}"
    champion = find_champion(tracking_uri, model_name)
    why = absent_reason(tracking_uri) or "no champion yet"
    if champion is None:
        if user is not None:
            return _write(dest, f"{file_source} (schema inferred; {why})", user_schema=user)
        return _write(dest, f"none ({why}: schema inferred)")
    tmp = tempfile.mkdtemp(prefix="reference-")
    try:
        data = champion.data(tmp)
        logger.info("validating against the schema of %s version %s", model_name, champion.version)
        source = f"champion {model_name} v{champion.version}" + (f" + {file_source}" if user is not None else "")
        return _write(dest, source, schema=io.read_json(os.path.join(data.folder, SCHEMA_FILE)),
                      sample_path=data.sample_path, version=champion.version, user_schema=user)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_reference(path: str) -> Reference:
    """The reference folder written by :func:`fetch_reference`."""
    info = io.read_json(os.path.join(path, INFO_FILE))
    return Reference(
        schema=io.read_json(os.path.join(path, SCHEMA_FILE)) if info.get("schema") else None,
        sample_path=os.path.join(path, SAMPLE_FILE) if info.get("sample") else None,
        source=info["source"],
        user_schema=io.read_json(os.path.join(path, USER_SCHEMA_FILE)) if info.get("user_schema") else None,
    )
