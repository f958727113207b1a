"""Before a run decides anything: is the registered champion what is actually served?

Compare re-scores the champion's registry copy. That is only a fair baseline if the same
model is what TF Serving serves as ``stable``; otherwise a run could "keep the current
model" while the served one cannot load, or "promote" because a lost registry has no
champion while a version is being served. :func:`check_served_champion` compares the
model's serving state (``<base>/<model>/serving.json``), the registry's ``champion`` alias
and the served files, and raises :class:`ServingStateError` with one sentence when they
disagree:

* a version is served but the registry has no champion (a reset or lost registry);
* the registry has a champion but the base serves nothing for the model, or another version;
* the served folder is missing, holds other bytes than the registered champion
  (``fingerprint`` tag), or does not load and answer its warm-up requests.

An empty serving base (a registry-only deploy, e.g. Vertex AI endpoints) skips the check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Optional

from components._shared import serving_state
from components._shared.errors import ServingStateError

logger = logging.getLogger(__name__)

REPAIR = "python -m pipelines status --repair --serving-base <base> (with this pipeline's MLFLOW_TRACKING_URI)"
FIX = f"`{REPAIR}` finishes or undoes a half-done change and says what else disagrees; fix that before a run decides"


def _describe(tracking_uri: str) -> str:
    return f"the registry at {tracking_uri}" if tracking_uri else "the registry"


def check_served_champion(
    serving_base: str,
    model_name: str,
    champion_version: Optional[str],
    champion_fingerprint: Optional[str],
    tracking_uri: str = "",
    verify: Optional[Callable[[str], int]] = None,
) -> Optional[str]:
    """Raise unless the served ``stable`` version of ``model_name`` is the registered champion and works.

    Args:
        champion_version: The registry's champion version, None when it has none.
        champion_fingerprint: Its ``fingerprint`` tag (the SavedModel deploy registered); None to
            skip the byte comparison (a version registered before fingerprints existed).
        verify: ``verify(folder) -> n`` loads a SavedModel as TF Serving does and replays its warm-up
            requests (default :func:`components._shared.warmup.replay_warmup`).

    Returns:
        The served folder that was checked, or None when nothing is served and nothing is registered.

    Raises:
        ServingStateError: One sentence naming the disagreement.
    """
    if not serving_base:
        return None
    try:
        state = serving_state.read_state(serving_base, model_name)
    except Exception as exc:
        raise ServingStateError(
            f"the serving state of {model_name} under {serving_base} cannot be read ({exc}); {FIX}") from exc
    pending = state.get("pending")
    if pending:
        raise ServingStateError(
            f"a {pending.get('change', 'change')} of {model_name} to version {pending.get('version')} under "
            f"{serving_base} was interrupted (the serving record still has it pending), so what is served and the "
            f"registry may disagree; {FIX}")
    stable = state.get("stable")
    stable = str(stable) if stable not in (None, "") else None
    champion_version = str(champion_version) if champion_version not in (None, "") else None
    if stable is None and champion_version is None:
        return None
    if champion_version is None:
        raise ServingStateError(
            f"version {stable} of {model_name} is served from {serving_base} but {_describe(tracking_uri)} has no "
            f"champion (was the registry reset or lost?); a run would compare with nothing and could replace a "
            f"served model blindly: restore the registry, or {FIX}")
    if stable is None:
        raise ServingStateError(
            f"version {champion_version} of {model_name} is the registry's champion but {serving_base} serves nothing "
            f"for {model_name}; point serving_base_dir at the base that serves it, or {FIX}")
    if stable != champion_version:
        raise ServingStateError(
            f"{serving_base} serves version {stable} of {model_name} as stable but the registry's champion is "
            f"version {champion_version}; {FIX}")
    folder = serving_state.version_dir(serving_base, model_name, stable)
    if not serving_state.has_version(serving_base, model_name, stable):
        raise ServingStateError(
            f"the served champion of {model_name} (version {stable}) has no saved_model.pb at {folder}; "
            f"TF Serving cannot load it: roll back (python -m pipelines rollback) or redeploy before a run decides")
    if verify is None:
        from components._shared.warmup import replay_warmup as verify
    with serving_state.readable_copy(folder) as local:  # one download of an object-store copy
        if champion_fingerprint:
            served_fp = serving_state.fingerprint(local)
            if served_fp != champion_fingerprint:
                raise ServingStateError(
                    f"the files served as version {stable} of {model_name} at {folder} are not the SavedModel the "
                    f"registry holds for that version (fingerprint {served_fp[:12]} vs {champion_fingerprint[:12]}): "
                    f"they were changed or corrupted; redeploy or roll back before a run decides")
        try:
            n = verify(local)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServingStateError(
                f"the served champion of {model_name} (version {stable} at {folder}) does not load and answer its "
                f"warm-up requests ({first}); roll back (python -m pipelines rollback) or redeploy before a run "
                f"decides") from exc
    logger.info("served champion %s v%s at %s answered %d warm-up requests", model_name, stable, folder, n)
    return folder
