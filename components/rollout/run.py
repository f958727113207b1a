"""A rollout: traffic steps on a :class:`~components.rollout.targets.TrafficTarget`, each checked on
live metrics before the next, and an automatic rollback when a check fails.

For each step ``p`` below 100: ``set_traffic(p)``, wait ``interval``, then read canary and stable
over the step (:class:`~components.rollout.prometheus.PrometheusSource`) and
:func:`~components.rollout.core.decide`: ``promote`` goes to the next step; ``hold`` waits
``poll`` seconds and reads again, until the step's deadline (``step_timeout`` after the step
began), past which a step that still holds rolls back ("no metrics"); ``rollback`` sends all
traffic back to stable and ends the rollout. The step of 100 % is ``promote()``. Any error of the
target or the source mid-rollout also rolls back (missing metrics never promote).

A retried attempt (the task's KFP retry after a lost pod) resumes where the platform is, read with
``describe()`` and the registry version's ``rollout_status`` tag (:func:`resume_point`): a version
already promoted is not moved again; one already rolled back returns the same result (and sentence);
a canary already at ``p`` % is checked there (not set again), then continues with the steps above
``p``. A canary that is another version than the one rolled out is refused, nothing moved.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Optional

from components._shared.errors import ConfigError, PipelineError, RolloutError
from components.rollout.core import HOLD, PROMOTE, ROLLBACK, Decision, Thresholds, decide

logger = logging.getLogger(__name__)

PROMOTED, ROLLED_BACK = "promoted", "rolled_back"


@dataclasses.dataclass
class RolloutResult:
    """How a rollout ended: ``status`` (promoted / rolled_back), the one sentence why, every check
    (``checks``: percent, action, reason, figures) and what the target serves at the end."""

    status: str
    reason: str
    checks: list
    served: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resume_point(state, version: Optional[str], tag: Optional[tuple], steps: Sequence[float]) -> tuple:
    """Where a rollout of ``version`` starts, given what the target serves (``state``, a TrafficState)
    and the registry version's tags (``tag``: (rollout_status, rollout_reason) or None).

    Returns:
        ``(kind, steps, line, share)``: kind ``"promoted"`` / ``"rolled_back"`` (nothing left to do; for a
        rollback ``line`` is the earlier sentence), ``"resume"`` (``steps``: ``share``, the canary's
        share now, to be checked, not set, then the steps above it) or ``"start"`` (all ``steps``;
        ``share`` None).

    Raises:
        ConfigError: The target's canary is another version (nothing moved).
    """
    status, reason = tag or (None, None)
    ours = str(version) if version not in (None, "") else (state.canary if state.canary else None)
    if ours is None:
        return "start", list(steps), "", None
    if state.stable == ours and state.canary is None:
        return PROMOTED, [], reason if status == PROMOTED and reason else \
            f"version {ours} is already stable with all traffic ({state.detail})", None
    if state.canary is not None and state.canary != ours:
        raise ConfigError(f"the target's canary is version {state.canary}, not version {ours} being rolled out "
                          f"({state.detail}); nothing moved")
    if state.canary == ours and state.canary_percent == 0:  # vertex, kserve: rolled back leaves the canary at 0 %
        return ROLLED_BACK, [], reason if status == ROLLED_BACK and reason else \
            f"version {ours} was rolled back by an earlier attempt ({state.detail})", None
    if state.canary != ours and status == ROLLED_BACK:  # tfserving: rolled back clears the canary label
        return ROLLED_BACK, [], reason or f"version {ours} was rolled back by an earlier attempt", None
    share = state.canary_percent
    if share is None and state.canary == ours:  # tfserving: the share is the step the registry tag names
        m = re.fullmatch(r"canary at (\d+(?:\.\d+)?) %", status or "")
        share = float(m.group(1)) if m else None
    if state.canary != ours or not share:
        return "start", list(steps), "", None
    # the share it is at is checked (not set) before any more traffic moves: a step equal to it, or
    # (a share between steps: deploy's canary share, other steps before) a check of its own
    rest = [share] + [s for s in steps if s > share]
    return "resume", rest, f"resumed: the canary is already at {share:g} % ({state.detail}); continuing with " \
        f"the check at {share:g} %, then " + (", ".join(f"{s:g} %" for s in rest[1:]) or "promote"), share


def run_rollout(target, source, steps: Sequence[float], thresholds: Thresholds, interval: float = 300.0,
                step_timeout: Optional[float] = None, window: Optional[float] = None, poll: Optional[float] = None,
                report: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.time,
                sleep: Callable[[float], None] = time.sleep, version: Optional[str] = None,
                tag: Optional[tuple] = None, resume: bool = True) -> RolloutResult:
    """Walk ``steps`` (percentages ending at 100) on ``target`` with checks read from ``source``.

    Args:
        target: A :class:`~components.rollout.targets.TrafficTarget`.
        source: Has ``window(role, start, end) -> Window`` for ``canary`` and ``stable``.
        interval: Seconds to wait after each traffic change before the first check.
        step_timeout: Seconds after a step began past which a step that holds rolls back
            (default: 3 x ``interval``).
        window: Seconds of metrics each check reads, back from now (default: since the step began).
        poll: Seconds between checks while a step holds (default: ``interval`` / 4, at least 1).
        report: Called with one line per check and per traffic change.
        clock / sleep: Time source and wait (a test passes a simulated clock).
        version: The version rolled out (default: the target's ``version``, else its canary).
        tag: The registry version's (rollout_status, rollout_reason), None when unknown.
        resume: Start where the target is (:func:`resume_point`); False: always from the first step.

    Returns:
        The result; ``status`` is ``rolled_back`` after a failed check, a step past its deadline or
        an error mid-rollout (then traffic is back on stable and the registry says why).

    Raises:
        ConfigError: Bad steps or thresholds, or the target's canary is another version (nothing moved).
        RolloutError: The rollback itself failed (the message says what is served).
    """
    thresholds.check()
    if interval < 0 or (step_timeout is not None and step_timeout < 0) or (window is not None and window <= 0):
        raise ConfigError("rollout interval and step timeout must be >= 0 seconds and the window > 0 seconds")
    step_timeout = 3 * interval if step_timeout is None else step_timeout
    poll = max(interval / 4, 1.0) if poll is None else max(poll, 0.0)
    say = report or (lambda line: None)
    checks: list = []

    def back(reason: str) -> RolloutResult:
        try:
            state = target.rollback(reason)
        except PipelineError as exc:
            raise RolloutError(f"{reason}; and the rollback to stable failed: {exc}") from exc
        say(f"rolled back: {reason} ({state.detail})")
        return RolloutResult(ROLLED_BACK, reason, checks, state.detail)

    walk, checked_first = list(steps), False
    if resume:
        try:
            state = target.describe()
        except PipelineError as exc:  # the first step meets the same error and rolls back, as before
            state = None
            say(f"cannot read what the {target.name} target serves ({exc}); starting from the first step")
        if state is not None:
            kind, walk, line, share = resume_point(state, version or getattr(target, "version", None), tag, steps)
            if kind == PROMOTED:
                say(f"resumed: {line}; nothing to move")
                return RolloutResult(PROMOTED, line, checks, state.detail)
            if kind == ROLLED_BACK:
                say(f"resumed: rolled back before: {line}; nothing to move")
                return RolloutResult(ROLLED_BACK, line, checks, state.detail)
            if kind == "resume":
                say(line)
                checked_first = walk[0] == share

    for i, p in enumerate(walk):
        try:
            if p >= 100:
                state = target.promote()
                say(f"100 %: promoted ({state.detail})")
                reason = f"canary promoted after {len(checks)} check(s) at " + \
                         ", ".join(f"{s:g} %" for s in steps if s < 100)
                return RolloutResult(PROMOTED, reason, checks, state.detail)
            if i == 0 and checked_first:  # resumed at this share: check it, do not set it again
                state = target.describe()
                say(f"{p:g} %: already set ({state.detail}); checking in {interval:g} s")
            else:
                state = target.set_traffic(p)
                say(f"{p:g} %: traffic set ({state.detail}); checking in {interval:g} s")
        except PipelineError as exc:
            return back(f"the {target.name} target refused the step to {p:g} %: {exc}")
        began = clock()
        sleep(interval)
        while True:
            now = clock()
            late = now >= began + step_timeout
            try:
                lo = now - window if window else began
                d = decide(p, source.window("canary", lo, now), source.window("stable", lo, now), thresholds,
                           past_deadline=late)
            except ConfigError as exc:  # a wrong query stays wrong: no later check can pass
                return back(f"the canary cannot be checked: {exc}")
            except PipelineError as exc:  # the source did not answer: missing data
                d = Decision(ROLLBACK if late else HOLD,
                             (f"no metrics before the step's deadline ({exc})" if late else f"no metrics at {p:g} %: {exc}"))
            checks.append({"percent": p, "action": d.action, "reason": d.reason, "figures": d.figures})
            say(f"{p:g} %: {d.action}: {d.reason}")
            if d.action == PROMOTE:
                break
            if d.action == ROLLBACK:
                return back(d.reason)
            sleep(poll)
    raise ConfigError(f"rollout steps must end at 100, got {list(steps)}")  # parse_steps makes this unreachable


def parse_seconds(text, name: str = "interval") -> float:
    """``"300"``, ``"300s"``, ``"5m"``, ``"1h"`` -> seconds.

    Raises:
        ConfigError: Not a duration (one sentence naming ``name``).
    """
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ConfigError(f"rollout {name} must be a duration like 300s, 5m or 300, got {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def tag_registry(tracking_uri: str, model_name: str, version, result: RolloutResult) -> None:
    """The registry version says how its rollout ended (``rollout_status``, ``rollout_reason``)."""
    from components._shared import registry
    from components._shared.traffic import tag_version

    tag_version(registry.configure(tracking_uri), model_name, version, result.status, result.reason)


def read_tag(tracking_uri: str, model_name: str, version) -> Optional[tuple]:
    """The registry version's (rollout_status, rollout_reason); None when the version has no status."""
    from components._shared import registry
    from components._shared.traffic import ROLLOUT_REASON, ROLLOUT_STATUS

    tags = registry.configure(tracking_uri).get_model_version(model_name, str(version)).tags or {}
    return (tags[ROLLOUT_STATUS], tags.get(ROLLOUT_REASON)) if ROLLOUT_STATUS in tags else None


def rollout(model_name: str, target_kind: str, prometheus_url: str, steps: str = "10,50,100",
            interval: str = "300s", step_timeout: str = "", window: str = "",
            thresholds: Optional[Thresholds] = None, flavor: str = "tfserving",
            canary_selector: str = 'role="canary"', stable_selector: str = 'role="stable"', version: str = "",
            tracking_uri: str = "", serving_base: str = "", lock=None, target_options: Optional[dict] = None,
            report: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep) -> RolloutResult:
    """A rollout from plain settings (the CLI's and the component's): builds the target
    (:func:`components.rollout.targets.build_target`) and the Prometheus source, walks the steps
    (resuming where the target is: :func:`resume_point`), and tags the registry version with how it
    ended when the registry is known. ``clock`` / ``sleep``: as for :func:`run_rollout`.

    Raises:
        ConfigError: A bad setting; nothing moved.
        RolloutError: The rollback itself failed.
    """
    from components.rollout.core import parse_steps
    from components.rollout.prometheus import PrometheusSource
    from components.rollout.targets import build_target

    thresholds = (thresholds or Thresholds()).check()
    percents = parse_steps(steps)
    wait = parse_seconds(interval)
    timeout = parse_seconds(step_timeout, "step timeout") if str(step_timeout).strip() else None
    span = parse_seconds(window, "window") if str(window).strip() else None
    target = build_target(target_kind, model_name, version or None, tracking_uri, serving_base, lock=lock,
                          **(target_options or {}))
    if flavor == "vertex":  # Cloud Monitoring: the endpoint's own metrics, per deployed model
        from components.rollout.cloud_monitoring import CloudMonitoringSource

        if target_kind != "vertex":
            raise ConfigError("Vertex endpoint metrics (--metrics vertex) go with the vertex target only")
        if thresholds.max_score_psi is not None or thresholds.max_score_ks is not None:
            raise ConfigError("Vertex endpoint metrics have no score distribution: set the score thresholds "
                              "(max_score_psi, max_score_ks) to none")
        opts = target_options or {}
        source = CloudMonitoringSource(opts.get("project", ""), target.deployed_models,
                                       opts.get("monitoring_api") or None, opts.get("credentials"))
    else:
        if not prometheus_url:
            raise ConfigError("a rollout needs the Prometheus URL its checks read canary and stable metrics from")
        source = PrometheusSource(prometheus_url, model_name, flavor, canary_selector, stable_selector)
    version = str(getattr(target, "version", "") or version)
    logger.info("rollout of %s version %s on %s: steps %s, checks every %g s", model_name, version or "?",
                target.name, percents, wait)
    registered = bool(tracking_uri and version and target_kind != "vertex")  # vertex versions are not MLflow's
    result = run_rollout(target, source, percents, thresholds, interval=wait, step_timeout=timeout, window=span,
                         report=report, clock=clock, sleep=sleep, version=version or None,
                         tag=read_tag(tracking_uri, model_name, version) if registered else None)
    if registered:
        tag_registry(tracking_uri, model_name, version, result)
    return result
