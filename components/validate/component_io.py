"""What validate enforces: a user schema file, else the champion's schema and reference sample.

:func:`fetch_reference` runs in its own step (``champion_reference``), so the validate step
itself never imports MLflow (about 2 s) and, on Kubeflow, the registry lookup runs while
ingest reads the data. It writes a folder: ``reference.json`` (where it came from),
``schema.json`` when there is a schema to enforce, ``reference.parquet`` when there is a
reference sample for the drift report. :func:`read_reference` reads that folder back.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Optional

from components._shared import io

logger = logging.getLogger(__name__)

INFO_FILE = "reference.json"
SCHEMA_FILE = "schema.json"
SAMPLE_FILE = "reference.parquet"


def _write(dest: str, source: str, schema: Optional[dict] = None, sample_path: Optional[str] = None,
           version: Optional[str] = None) -> dict:
    os.makedirs(dest, exist_ok=True)
    if schema is not None:
        io.write_json(schema, os.path.join(dest, SCHEMA_FILE))
    if sample_path is not None:
        shutil.copyfile(sample_path, os.path.join(dest, SAMPLE_FILE))
    info = {"source": source, "version": version, "schema": schema is not None, "sample": sample_path is not None}
    io.write_json(info, os.path.join(dest, INFO_FILE))
    return info


def fetch_reference(schema_uri: str, tracking_uri: str, model_name: str, dest: str) -> dict:
    """Write the reference folder ``dest``; return its ``reference.json`` content.

    A user-supplied ``schema_uri`` (local path or any fsspec URI such as gs://) wins over the
    registry. With neither, or no champion yet, the folder holds only ``reference.json``
    and validate infers the schema from this run's training split.
    """
    if schema_uri:
        try:
            if "://" in schema_uri:
                import json

                import fsspec

                with fsspec.open(schema_uri) as fh:
                    schema = json.load(fh)
            else:
                schema = io.read_json(schema_uri)
        except FileNotFoundError as exc:
            from components._shared.errors import DataError

            raise DataError(f"the schema file {schema_uri} does not exist") from exc
        return _write(dest, f"schema file {schema_uri}", schema=schema)
    if not tracking_uri:
        return _write(dest, "none (no registry configured: schema inferred)")
    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri[len("sqlite:///"):]):
        # A local store that does not exist yet has no champion: skip MLflow's import (~2 s).
        return _write(dest, "none (no registry yet: schema inferred)")
    from components._shared import registry

    client = registry.configure(tracking_uri)
    ref = registry.get_alias(client, model_name, registry.CHAMPION)
    if ref is None:
        return _write(dest, "none (no champion yet: schema inferred)")
    tmp = tempfile.mkdtemp(prefix="reference-")
    try:
        local = registry.download(client, ref, tmp, "data")
        sample = os.path.join(local, SAMPLE_FILE)
        logger.info("validating against the schema of %s version %s", model_name, ref.version)
        return _write(dest, f"champion {model_name} v{ref.version}", schema=io.read_json(os.path.join(local, SCHEMA_FILE)),
                      sample_path=sample if os.path.exists(sample) else None, version=ref.version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_reference(path: str) -> tuple[Optional[dict], Optional[str], str]:
    """(schema or None, path of the reference sample or None, description of the source)."""
    info = io.read_json(os.path.join(path, INFO_FILE))
    schema = io.read_json(os.path.join(path, SCHEMA_FILE)) if info.get("schema") else None
    sample = os.path.join(path, SAMPLE_FILE) if info.get("sample") else None
    return schema, sample, info["source"]
