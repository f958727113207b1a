"""The traffic-target protocol a rollout drives (see :mod:`components.rollout.targets`).

Here, in the shared layer, so that targets living in a stage (``components.deploy.kserve``'s
``KServeTarget``) implement it without importing another stage; ``components.rollout.targets``
re-exports these names and holds the TF Serving and Vertex targets.

- ``set_traffic(canary_percent)``: the canary (the candidate version) gets that share of live
  traffic, the stable version the rest; ``0 < canary_percent < 100`` (a step of 100 is ``promote()``).
- ``promote()``: the canary becomes the stable version with all traffic; the registry says so.
- ``rollback(reason)``: the stable version serves all traffic again, the canary none; the canary's
  registry version is tagged ``rollout_status=rolled_back`` and ``rollout_reason=<reason>``.
- ``describe()``: what the platform serves now, read back from the platform.

Each is idempotent and raises :class:`components._shared.errors.RolloutError` (one sentence) when
the platform refuses, leaving the previous traffic split in place.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class TrafficState:
    """What a target serves now.

    Attributes:
        stable: The stable version (registry version number as text, or the platform's id of it:
            a storage URI, a deployed model id); None when nothing is served.
        canary: The canary version, None when there is no canary.
        canary_percent: The canary's share of live traffic, 0..100; None when the platform cannot
            express a share (TF Serving labels: clients choose the label they call).
        detail: One line for people, e.g. ``"stable 3 (90 %), canary 4 (10 %)"``.
    """

    stable: Optional[str]
    canary: Optional[str]
    canary_percent: Optional[float]
    detail: str = ""


@runtime_checkable
class TrafficTarget(Protocol):
    """A serving platform whose traffic a rollout moves between a stable and a canary version."""

    #: Short name for messages and ``--target``: ``tfserving``, ``vertex``, ``kserve``.
    name: str

    def set_traffic(self, canary_percent: float) -> TrafficState:
        """Give the canary ``canary_percent`` (0 < p < 100) of live traffic; returns what is served."""
        ...

    def promote(self) -> TrafficState:
        """Make the canary the stable version with all traffic; returns what is served."""
        ...

    def rollback(self, reason: str) -> TrafficState:
        """Send all traffic back to the stable version and retire the canary; returns what is served."""
        ...

    def describe(self) -> TrafficState:
        """What the platform serves now (read from the platform)."""
        ...



ROLLOUT_STATUS = "rollout_status"  # registry tag: "canary at 10 %", "promoted", "rolled_back"
ROLLOUT_REASON = "rollout_reason"  # registry tag: the one sentence that decided


def tag_version(client, model_name: str, version, status: str, reason: Optional[str] = None) -> None:
    """Tag an MLflow registry version with the rollout's status (and the reason, when given)."""
    client.set_model_version_tag(model_name, str(version), ROLLOUT_STATUS, status)
    if reason is not None:
        client.set_model_version_tag(model_name, str(version), ROLLOUT_REASON, reason[:500])
