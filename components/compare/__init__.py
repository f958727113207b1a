"""Compare stage: the promotion rule (gates, champion re-scoring, bootstrap)."""

from components._shared.exports import lazy_exports

__all__ = ["compare_models"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
