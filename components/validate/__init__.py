"""Validate stage: schema inference and enforcement, anomalies, drift."""

from components._shared.exports import lazy_exports

__all__ = ["champion_reference", "validate_data", "drift_report"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
