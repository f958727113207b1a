"""Monitor stage: drift, data quality and performance decay of recent data; the retraining trigger."""

from components._shared.exports import lazy_exports

__all__ = ["monitor_data"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
