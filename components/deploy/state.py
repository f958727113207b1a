"""The serving record's rules, as pure functions: what each change makes of a record.

A change is one of:

- ``promote``   (deploy): ``stable`` moves to the version, the old stable becomes ``previous``;
- ``approve``   (approve): the same, for the ``canary`` awaiting approval;
- ``candidate`` (deploy with approval required): ``canary`` moves to the version, stable stays;
- ``rollback``  (rollback, ``rollback --to N``): ``stable`` moves back; ``previous`` becomes the
  stable before it in the history, never the version just rolled back from.
- ``reject``    (a rollout's automatic rollback): the ``canary`` is cleared; stable and previous stay.

No I/O here: :mod:`components.deploy.transition` reads, checks, writes and derives.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable
from typing import Optional

from components._shared.errors import DeployError
from components._shared.serving_state import LABELS, empty_state, labels

HISTORY_LENGTH = 20
KINDS = ("promote", "approve", "candidate", "rollback", "reject")
WHY = {"promote": "promoted", "approve": "approved", "rollback": "rolled back"}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rolled_back_from(history: list) -> set:
    """Versions whose latest event is being rolled back from: never an automatic rollback target."""
    role: dict = {}
    for e in history:  # the latest event of each version wins
        role[int(e["version"])] = "stable"
        if e.get("from") is not None:
            role[int(e["from"])] = "rolled back from" if e["why"].startswith("rolled back") else "replaced"
    return {v for v, r in role.items() if r == "rolled back from"}


def rollback_target(history: list, stable: Optional[int], available: Iterable[int]) -> Optional[int]:
    """The most recent earlier stable that a rollback from ``stable`` may go to, or None."""
    excluded = rolled_back_from(history) | {stable}
    present = {int(v) for v in available}
    for e in reversed(history):
        v = int(e["version"])
        if v not in excluded and v in present:
            return v
    return None


def plan(record: dict, kind: str, version: int, fingerprint: str, available: Iterable[int] = (),
         at: Optional[str] = None) -> dict:
    """The record after ``kind`` of ``version`` (``available``: versions on the serving path).

    Raises:
        DeployError: The change makes no sense for this record (one sentence).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown change {kind!r}")
    new = copy.deepcopy(record or empty_state())
    v, old = int(version), new.get("stable")
    at = at or now()
    new["fingerprints"][str(v)] = fingerprint
    if kind == "candidate":
        new["canary"] = v if v != old else None
    elif kind == "reject":
        if new.get("canary") != v:
            raise DeployError(f"version {v} is not the canary ({describe(new)}); nothing to reject")
        new["canary"] = None
    else:
        if kind in ("promote", "approve"):
            if old and old != v:
                new["previous"] = old
        new["stable"] = v
        if new.get("canary") == v or kind == "promote":
            new["canary"] = None
        if old != v:
            new["history"].append({"version": v, "why": WHY[kind], "from": old, "fingerprint": fingerprint, "at": at})
            new["history"] = new["history"][-HISTORY_LENGTH:]
        if kind == "rollback":
            new["previous"] = rollback_target(new["history"], v, available)
    keep = {str(x) for x in labels(new).values() if x} | {str(e["version"]) for e in new["history"]}
    new["fingerprints"] = {k: f for k, f in new["fingerprints"].items() if k in keep}
    return new


def describe(record: dict) -> str:
    parts = [f"{k} {record[k]}" for k in LABELS if record.get(k)]
    return ", ".join(parts) or "nothing served"


def rollback_version(record: dict, model_name: str, to: Optional[int] = None) -> int:
    """The version ``rollback`` (or ``rollback --to``) moves ``stable`` to.

    Raises:
        DeployError: There is nowhere to roll back to (one sentence).
    """
    if to is not None:
        if record.get("stable") == int(to):
            raise DeployError(f"version {to} of {model_name!r} is already stable; nothing to roll back")
        return int(to)
    if not record.get("previous"):
        if record.get("stable") and rolled_back_from(record.get("history") or []):
            raise DeployError(
                f"model {model_name!r} has no earlier stable version to roll back to from version {record['stable']} "
                f"(the versions it was rolled back from are not rollback targets; use rollback --to N to choose one)")
        raise DeployError(f"model {model_name!r} has no 'previous' version to roll back to")
    return int(record["previous"])
