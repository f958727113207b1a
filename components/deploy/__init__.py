"""Deploy stage: registry alias, TF Serving push with warm-up check, Vertex AI endpoint."""

from components._shared.exports import lazy_exports

__all__ = ["deploy_model"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
