"""Evaluate stage: metrics, ROC, confusion matrix, slices and fairness gaps."""

from components._shared.exports import lazy_exports

__all__ = ["evaluate_model"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
