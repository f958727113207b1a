"""Export stage: TF Serving SavedModel and TFLite with measured parity."""

from components._shared.exports import lazy_exports

__all__ = ["export_model"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
