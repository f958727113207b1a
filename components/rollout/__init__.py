"""Rollout stage: traffic steps on live metrics of canary vs stable, automatic rollback."""

from components._shared.exports import lazy_exports

__all__ = ["rollout_model"]
__getattr__ = lazy_exports(__name__, "component", __all__)  # kfp is imported on first use only
