"""The start-up check of deploy, rollback and approve, and ``python -m pipelines status``.

:func:`repair` brings a model's serving state back to one story, or refuses with one sentence:

- leftovers of a killed push (``<model>/.N.tmp-*``, ``.staging/<model>/``) are removed;
- an unreadable record is rebuilt from the registry aliases (the corrupt file is kept beside it
  as ``serving.json.corrupt``), when the served files match the registered fingerprints;
- a record naming versions the registry does not hold (a lost or replaced registry) is refused;
- a pending change is finished when the versions it labels are intact, undone when only the
  versions before it are, refused otherwise;
- registered versions that never got a ``deploy_status`` are tagged ``orphan: ...``;
- models.config and the aliases are re-derived from the record when they disagree.

:func:`status` reports the same facts without changing anything.
"""

from __future__ import annotations

import logging
import os

from components._shared.errors import DeployError
from components._shared.serving_state import (
    LABELS,
    STATE_FILE,
    ServingStateError,
    empty_state,
    join,
    labels,
)
from components.deploy import serving, state
from components.deploy.transition import (
    STATUS_TAG,
    Target,
    current_aliases,
    derive,
    intact,
    read_record,
    registered_versions,
)

logger = logging.getLogger(__name__)


def _registry_problem(t: Target, record: dict, registered: dict) -> str:
    """Why the registry cannot back the record ("" when it can)."""
    for label in LABELS:
        v = record.get(label)
        if not v:
            continue
        if v not in registered:
            return (f"the serving record of {t.model_name!r} says version {v} is {label}, but the registry has no "
                    f"version {v} (was the registry lost or replaced?); restore it before changing what is served")
        have, want = registered[v].get("fingerprint"), record["fingerprints"].get(str(v))
        if want and have != want:
            return (f"version {v} of {t.model_name!r} in the registry holds another model than the {label} version "
                    f"served (fingerprints differ; was the registry replaced?); restore it before changing what is served")
    return ""


def _rebuild(t: Target, problem: ServingStateError, actions: list) -> dict:
    """A record from the registry aliases, when the served files match the registered fingerprints."""
    registered = registered_versions(t)
    record = dict(empty_state(), **current_aliases(t))
    if not record["stable"]:
        raise DeployError(f"{problem}, and the registry names no champion to rebuild it from; "
                          f"restore {STATE_FILE} (or the registry) from a backup")
    for v in {x for x in labels(record).values() if x}:
        fp = registered.get(v, {}).get("fingerprint")
        record["fingerprints"][str(v)] = fp
        if not (fp and intact(t, record, v)):
            raise DeployError(f"{problem}, and version {v} (an alias of the registry) is not served intact, "
                              f"so it cannot be rebuilt; restore {STATE_FILE} from a backup")
    if record["stable"]:
        record["history"] = [{"version": record["stable"], "why": "rebuilt from the registry", "from": None,
                              "fingerprint": record["fingerprints"][str(record["stable"])], "at": state.now()}]
    path = join(t.serving_base, t.model_name, STATE_FILE)
    if not serving.is_remote(path):
        os.replace(path, path + ".corrupt")
    serving.write_record(t.serving_base, t.model_name, record)
    actions.append(f"rebuilt the unreadable serving record from the registry aliases ({state.describe(record)})")
    return record


def _settle_pending(t: Target, record: dict, actions: list, finished: list) -> dict:
    pending = record["pending"]
    # "previous" is only a rollback target (checked when used): stable and canary decide.
    if all(intact(t, record, record.get(k)) for k in ("stable", "canary")):
        actions.append(f"finished the pending {pending.get('change')} of version {pending.get('version')}")
        finished.append(pending)
    else:
        before = pending.get("before") or {}
        if not all(intact(t, record, before.get(k)) for k in ("stable", "canary")):
            raise DeployError(f"a {pending.get('change')} of {t.model_name!r} was interrupted and neither the versions "
                              f"it labels nor those before it are served intact; fix the serving path by hand")
        history = [e for e in record["history"] if not (e["version"] == pending.get("version")
                                                          and e.get("at", "") >= pending.get("at", ""))]
        record = dict(record, **{k: before.get(k) for k in LABELS}, history=history)
        actions.append(f"undid the pending {pending.get('change')} of version {pending.get('version')} "
                       f"(its files are no longer intact)")
    derive(t, record)
    record["pending"] = None
    serving.write_record(t.serving_base, t.model_name, record)
    return record


def repair(t: Target) -> dict:
    """The start-up check (see the module docstring).

    Returns:
        ``{"record": ..., "actions": [what was repaired], "warnings": [what is wrong but not refused],
        "finished": the pending change it finished (its journal entry) or None}``

    Raises:
        DeployError: The state cannot be made consistent without a person (one sentence).
    """
    actions, warnings, finished = [], [], []
    if not t.serving_base:
        record = read_record(t)
        _tag_orphans(t, record, registered_versions(t), actions)
        return {"record": record, "actions": actions, "warnings": warnings, "finished": None}
    removed = serving.remove_leftovers(t.serving_base, t.model_name)
    if removed:
        actions.append(f"removed {len(removed)} leftover(s) of interrupted pushes: {', '.join(removed)}")
    try:
        record = serving.read_state(t.serving_base, t.model_name)
    except ServingStateError as exc:
        record = _rebuild(t, exc, actions)
    registered = registered_versions(t)
    problem = _registry_problem(t, record, registered)
    if problem:
        raise DeployError(problem)
    for v in {x for x in labels(record).values() if x}:
        if not record["fingerprints"].get(str(v)):  # a format-1 record: take the registry's
            record["fingerprints"][str(v)] = registered[v].get("fingerprint")
    if record.get("pending"):
        record = _settle_pending(t, record, actions, finished)
    _tag_orphans(t, record, registered, actions)
    config = serving.read_config(t.serving_base)
    serves = any(labels(record).values())
    if config != serving.models_config_text(t.serving_base) and (config or serves):
        actions.append("re-derived models.config from the serving records")
    if current_aliases(t) != labels(record):
        actions.append(f"moved the registry aliases to match the serving record ({state.describe(record)})")
    if serves or actions:
        derive(t, record)
    for label in LABELS:
        v = record.get(label)
        if v and not intact(t, record, v):
            warnings.append(f"the {label} version {v} of {t.model_name!r} is missing or its files differ from its "
                            f"recorded fingerprint")
    for line in actions:
        logger.warning("start-up check of %s: %s", t.model_name, line)
    for line in warnings:
        logger.warning("start-up check of %s: %s", t.model_name, line)
    return {"record": record, "actions": actions, "warnings": warnings, "finished": finished[0] if finished else None}


def _tag_orphans(t: Target, record: dict, registered: dict, actions: list) -> None:
    named = {v for v in labels(record).values() if v}
    for v, tags in sorted(registered.items()):
        if not tags.get(STATUS_TAG) and v not in named:
            t.client.set_model_version_tag(t.model_name, str(v), STATUS_TAG,
                                           f"orphan: registered but never deployed (found at {state.now()})")
            actions.append(f"tagged version {v} as an orphan (registered, never deployed)")


def status(t: Target) -> dict:
    """What the record, models.config and the registry say, and whether they agree (changes nothing)."""
    out: dict = {"model": t.model_name, "serving_base": t.serving_base, "problems": []}
    try:
        record = read_record(t)
    except ServingStateError as exc:
        record = None
        out["problems"].append(str(exc))
    out["record"] = record
    out["aliases"] = current_aliases(t)
    registered = registered_versions(t)
    out["registered"] = {str(v): tags.get(STATUS_TAG) for v, tags in sorted(registered.items())}
    if t.serving_base:
        text = serving.read_config(t.serving_base)
        out["models_config"] = serving._entry_of(text, t.model_name)
        if record is not None:
            if text != serving.models_config_text(t.serving_base) and (text or any(labels(record).values())):
                out["problems"].append("models.config differs from what the serving records derive")
            if out["aliases"] != labels(record):
                out["problems"].append(f"the registry aliases {out['aliases']} differ from the record {labels(record)}")
            problem = _registry_problem(t, record, registered)
            if problem:
                out["problems"].append(problem)
            if record.get("pending"):
                out["problems"].append(f"a {record['pending'].get('change')} is pending (interrupted)")
            for label in LABELS:
                v = record.get(label)
                if v and not intact(t, record, v):
                    out["problems"].append(f"the {label} version {v} is missing or its files differ from its fingerprint")
        leftovers = [n for n in _listing(t) if n.startswith(".") and ".tmp-" in n]
        if leftovers:
            out["problems"].append(f"leftovers of interrupted pushes: {', '.join(leftovers)}")
    orphans = [v for v, tags in registered.items() if not tags.get(STATUS_TAG) and v not in labels(record or {}).values()]
    if orphans:
        out["problems"].append(f"registered versions without a deploy_status: {orphans}")
    out["agree"] = not out["problems"]
    return out


def _listing(t: Target) -> list:
    if serving.is_remote(t.serving_base):
        return []
    folder = os.path.join(t.serving_base, t.model_name)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
