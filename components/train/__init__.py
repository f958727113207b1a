"""Train stage: Keras model from the transform spec, GPU-aware, checkpointed."""

from components._shared.exports import lazy_exports

__all__ = ["train_model", "train_model_multiworker"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
