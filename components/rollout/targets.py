"""Where a rollout moves traffic: one protocol, one implementation per serving platform.

A rollout (:mod:`components.rollout.core` decides, :mod:`components.rollout.run` walks) only ever
calls the four methods of :class:`TrafficTarget`:

- ``set_traffic(canary_percent)``: the canary (the candidate version) gets that share of live
  traffic, the stable version the rest. ``0 < canary_percent < 100``; a step of 100 is
  ``promote()``, never ``set_traffic(100)``.
- ``promote()``: the canary becomes the stable version and serves all traffic; the registry says
  so (alias ``champion``).
- ``rollback(reason)``: the stable version serves all traffic again, the canary gets none; the
  registry version of the canary is tagged ``rollout_status=rolled_back`` with ``reason`` (one
  sentence) by the caller or the target, never left saying ``candidate``.
- ``describe()``: what the platform serves now (:class:`TrafficState`), read back from the
  platform, not from what this process last asked for.

Each method is idempotent (a repeated call after a crash changes nothing more) and raises
:class:`components._shared.errors.RolloutError` (one sentence) when the platform refuses; a
method that raises has left the previous traffic split in place.

Implementations: :class:`TFServingTarget` here (the serving record on the serving base),
:class:`VertexEndpointTarget` here (a Vertex AI endpoint's traffic split) and
``components.deploy.kserve.KServeTarget`` (an InferenceService's ``canaryTrafficPercent``).
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
