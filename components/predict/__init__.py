"""Predict stage: score a table with a registered version, after checking it against its training schema."""

from components._shared.exports import lazy_exports

__all__ = ["resolve_model", "predict_table", "prediction_drift_report"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
