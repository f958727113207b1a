"""Engineer stage: transform spec fitted on the train split."""

from components._shared.exports import lazy_exports

__all__ = ["engineer_features"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
