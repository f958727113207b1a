"""The one way the serving state changes, and the start-up check that repairs a half-done change.

:func:`transition` is the only writer of a model's serving record. Its steps, each safe to repeat:

  1. the record with the new labels and a ``pending`` journal entry (written atomically: the
     commit point; before it nothing has changed, after it the change is finished by whoever
     comes next);
  2. ``models.config``, derived from every model's record;
  3. the registry aliases (champion = stable, previous = previous, candidate = canary) and the
     versions' ``deploy_status`` tags, derived from the record;
  4. the record again, without ``pending``.

A version reaches step 1 only after :func:`check_version`: on the serving path, its served
files' fingerprint equal to the registry's ``fingerprint`` tag (and to the record's), not tagged
failed, loaded as TF Serving loads it and answering its warm-up requests.

:func:`repair` runs first in deploy, rollback and approve (and ``python -m pipelines status
--repair``): it removes leftovers of killed pushes, rebuilds an unreadable record from the
registry, finishes (or undoes) a pending change, tags registered versions that never got a
``deploy_status`` as orphans, and re-derives models.config and the aliases when they disagree.
It refuses, with one sentence, when the registry has lost versions the record serves.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Optional

from components._shared import faults, registry
from components._shared.errors import DeployError
from components._shared.serving_state import empty_state, labels
from components.deploy import serving, state

logger = logging.getLogger(__name__)

ALIASES = {"stable": registry.CHAMPION, "previous": registry.PREVIOUS, "canary": registry.CANDIDATE}
STATUS_TAG = "deploy_status"


@dataclasses.dataclass
class Target:
    """Where a model's serving state lives: the registry client, the serving base ("" for a
    registry-only deploy, whose record is the aliases themselves) and the model name."""

    client: object
    serving_base: str
    model_name: str


@dataclasses.dataclass
class Checked:
    """A version that passed :func:`check_version` (the only input :func:`transition` accepts)."""

    version: int
    fingerprint: str
    path: str
    requests: int


# --------------------------------------------------------------------------- registry side


def registered_versions(t: Target) -> dict:
    """version -> tags of every registered version of the model ({} when none or unreachable model)."""
    from mlflow.exceptions import MlflowException

    try:
        return {int(mv.version): dict(mv.tags or {}) for mv in t.client.search_model_versions(f"name = '{t.model_name}'")}
    except MlflowException:
        return {}


def current_aliases(t: Target) -> dict:
    out = {}
    for label, alias in ALIASES.items():
        ref = registry.get_alias(t.client, t.model_name, alias)
        out[label] = int(ref.version) if ref else None
    return out


def _set_tag(t: Target, version: int, value: str, tags: dict) -> None:
    if tags.get(STATUS_TAG) != value:
        t.client.set_model_version_tag(t.model_name, str(version), STATUS_TAG, value[:500])


def apply_registry(t: Target, record: dict) -> None:
    """Make the aliases and ``deploy_status`` tags say what the record says (changes only what differs)."""
    current = current_aliases(t)
    for label, alias in ALIASES.items():
        want = record.get(label)
        if want and current[label] != want:
            t.client.set_registered_model_alias(t.model_name, alias, str(want))
        elif not want and current[label] is not None:
            t.client.delete_registered_model_alias(t.model_name, alias)
    tags = registered_versions(t)
    if record.get("stable"):
        _set_tag(t, record["stable"], "promoted", tags.get(record["stable"], {}))
    if record.get("canary"):
        _set_tag(t, record["canary"], "candidate", tags.get(record["canary"], {}))
    for v, t_ in tags.items():  # a candidate replaced by a newer one, or dropped by a promote
        if t_.get(STATUS_TAG) == "candidate" and v != record.get("canary"):
            _set_tag(t, v, "superseded: a candidate that was not approved", t_)
    for v in state.rolled_back_from(record.get("history") or []):
        if v in tags and v not in labels(record).values():
            _set_tag(t, v, "rolled back", tags[v])


def mark_failed(t: Target, version, why: str) -> None:
    """Tag a registered version that was not promoted, so nobody mistakes it for a servable one."""
    try:
        t.client.set_model_version_tag(t.model_name, str(version), STATUS_TAG, f"failed: {why}"[:500])
    except Exception:  # the registry may be what failed; the DeployError says what matters
        logger.warning("could not tag version %s of %s as failed", version, t.model_name)


# --------------------------------------------------------------------------- checks


def check_version(t: Target, version, verify: Callable[[str], int], path: Optional[str] = None,
                  record: Optional[dict] = None, retry_failed: bool = False) -> Checked:
    """Check a version before it is put into service (see the module docstring).

    Args:
        path: The copy to check (default: the version on the serving path).
        verify: ``verify(folder) -> int`` loads the SavedModel as TF Serving would and replays its
            warm-up requests (:func:`components._shared.warmup.replay_warmup`).
        retry_failed: Check a version tagged failed again (deploy's retry of the same SavedModel);
            rollback and approve never serve a version that failed.

    Raises:
        DeployError: One sentence saying why the version may not be served; nothing has moved.
    """
    v, name = int(version), t.model_name
    if path is None:
        path = serving.version_dir(t.serving_base, name, v)
        if not serving.has_version(t.serving_base, name, v):
            raise DeployError(f"version {v} of {name!r} is not on the serving path {path}")
    tags = registered_versions(t).get(v)
    if tags is None:
        raise DeployError(f"version {v} of {name!r} is not in the registry, so its files cannot be checked "
                          f"against a registered fingerprint; it is not put into service")
    if not retry_failed and (tags.get(STATUS_TAG) or "").startswith("failed"):
        raise DeployError(f"version {v} of {name!r} is tagged {tags[STATUS_TAG][:200]!r}; it is not put into service")
    fp = serving.fingerprint(path)
    want = {tags.get("fingerprint"), (record or {}).get("fingerprints", {}).get(str(v))} - {None}
    if not want or want != {fp}:
        raise DeployError(f"the files of version {v} of {name!r} at {path} differ from its registered fingerprint "
                          f"(corrupted or replaced); it is not put into service")
    try:
        n = serving.verify_pushed(path, verify)
    except Exception as exc:
        raise DeployError(f"version {v} of {name!r} failed its warm-up requests and is not put into service: {exc}") from exc
    logger.info("version %s of %s loads and answered %d warm-up requests", v, name, n)
    return Checked(v, fp, path, n)


def intact(t: Target, record: dict, version) -> bool:
    """The version is on the serving path with the fingerprint the record holds (no TensorFlow)."""
    if not version:
        return True
    want = record["fingerprints"].get(str(version))
    return bool(serving.has_version(t.serving_base, t.model_name, version) and want
                and serving.fingerprint(serving.version_dir(t.serving_base, t.model_name, version)) == want)


# --------------------------------------------------------------------------- the transition


def read_record(t: Target) -> dict:
    if not t.serving_base:
        return dict(empty_state(), **current_aliases(t))
    return serving.read_state(t.serving_base, t.model_name)


def derive(t: Target, record: dict, fault_points: bool = False) -> None:
    """Steps 2 and 3: models.config and the registry, from the record."""
    if t.serving_base:
        serving.write_models_config(t.serving_base)
    if fault_points:
        faults.point("transition:after-config")
    apply_registry(t, record)
    if fault_points:
        faults.point("transition:after-aliases")


def transition(t: Target, kind: str, checked: Checked) -> dict:
    """Apply one change (``promote``, ``approve``, ``candidate``, ``rollback``) of a checked version.

    Returns:
        The record after the change. Repeating a finished change changes nothing.
    """
    record = read_record(t)
    if record.get("pending"):
        raise DeployError(f"a change of {t.model_name!r} is still pending ({record['pending'].get('change')}); "
                          f"run the start-up check first")
    available = _available(t, record)
    new = state.plan(record, kind, checked.version, checked.fingerprint, available)
    if labels(new) == labels(record) and new["history"] == record["history"]:
        derive(t, record)  # idempotent: a repeated change only re-derives
        return record
    new["pending"] = {"change": kind, "version": checked.version, "before": labels(record), "at": state.now()}
    if t.serving_base:
        serving.write_record(t.serving_base, t.model_name, new)
    faults.point("transition:after-record")
    derive(t, new, fault_points=True)
    new["pending"] = None
    if t.serving_base:
        serving.write_record(t.serving_base, t.model_name, new)
    logger.info("%s of version %s of %s: %s", kind, checked.version, t.model_name, state.describe(new))
    return new


def _available(t: Target, record: dict) -> list:
    versions = {e["version"] for e in record.get("history") or []} | {v for v in labels(record).values() if v}
    if not t.serving_base:
        return sorted(versions)
    return sorted(v for v in versions if serving.has_version(t.serving_base, t.model_name, v))
