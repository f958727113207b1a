"""Ingest stage: read, check the label, split deterministically."""

from components._shared.exports import lazy_exports

__all__ = ["ingest_data"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
