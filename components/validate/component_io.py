"""Where validate's reference comes from: a user schema file, else the champion in the registry."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Optional

from components._shared import io

logger = logging.getLogger(__name__)


def load_reference(schema_uri: str, tracking_uri: str, model_name: str) -> tuple[Optional[dict], Optional[object], str]:
    """Return (schema or None, reference sample DataFrame or None, description of the source)."""
    if schema_uri:
        if "://" in schema_uri:
            import fsspec

            with fsspec.open(schema_uri) as fh:
                import json

                return json.load(fh), None, f"schema file {schema_uri}"
        return io.read_json(schema_uri), None, f"schema file {schema_uri}"
    if not tracking_uri:
        return None, None, "none (first run: schema inferred)"
    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri[len("sqlite:///"):]):
        # A local store that does not exist yet has no champion: skip MLflow's import (~2 s).
        return None, None, "none (no registry yet: schema inferred)"
    from components._shared import registry

    client = registry.configure(tracking_uri)
    ref = registry.get_alias(client, model_name, registry.CHAMPION)
    if ref is None:
        return None, None, "none (no champion yet: schema inferred)"
    dest = tempfile.mkdtemp(prefix="reference-")
    local = registry.download(client, ref, dest, "data")
    schema = io.read_json(os.path.join(local, "schema.json"))
    sample_path = os.path.join(local, "reference.parquet")
    sample = io.read_parquet(sample_path) if os.path.exists(sample_path) else None
    logger.info("validating against the schema of %s version %s", model_name, ref.version)
    return schema, sample, f"champion {model_name} v{ref.version}"
