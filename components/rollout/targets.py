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

The protocol itself lives in :mod:`components._shared.traffic` (re-exported here): a target in a
stage (deploy) imports it from there, since a stage imports no other stage.
"""

from __future__ import annotations

from components._shared.traffic import (
    ROLLOUT_REASON,
    ROLLOUT_STATUS,
    TrafficState,
    TrafficTarget,
    tag_version,
)

__all__ = ["ROLLOUT_REASON", "ROLLOUT_STATUS", "TFServingTarget", "TrafficState", "TrafficTarget", "tag_version"]


class TFServingTarget:
    """The serving record on a TF Serving model base (``serving.json``, ``models.config``, aliases).

    TF Serving's version labels cannot split traffic: ``stable`` and ``canary`` are two labels on
    two loaded versions, and each client chooses the label it calls (``/v1/models/M/labels/canary``).
    So ``set_traffic`` moves nothing: it checks that the canary is the version being rolled out and
    is served intact, tags the registry with the step, and the share is whatever routes requests
    (a gateway or clients sending that share to the canary label) — :attr:`TrafficState.canary_percent`
    is None. ``promote`` is the ``approve`` transition (canary becomes stable and champion);
    ``rollback`` is the ``reject`` transition (the canary label and the ``candidate`` alias are
    cleared; stable never moved). Both go through :mod:`components.deploy.transition`, the one
    writer of the record, after its start-up check.

    Args:
        model_name: Registered model.
        version: The version being rolled out (the record's canary; deploy with approval required
            puts it there).
        tracking_uri: MLflow tracking/registry URI.
        serving_base: The TF Serving model base (local path or object-store URI).
        lock: Context-manager factory held around each change (the runs dir's lock), or None.
        verify: ``verify(folder) -> int`` replays warm-up requests before promote (default: the
            TF Serving-like replay of :func:`components._shared.warmup.replay_warmup`).
    """

    name = "tfserving"

    def __init__(self, model_name: str, version, tracking_uri: str, serving_base: str, lock=None, verify=None):
        self.model_name, self.version = model_name, int(version)
        self.tracking_uri, self.serving_base = tracking_uri, serving_base
        self._lock, self._verify = lock, verify

    def _target(self):
        from components._shared import registry
        from components.deploy.transition import Target

        return Target(registry.configure(self.tracking_uri), self.serving_base, self.model_name)

    def _locked(self):
        import contextlib

        return self._lock() if self._lock else contextlib.nullcontext()

    def describe(self) -> TrafficState:
        from components.deploy.transition import read_record

        record = read_record(self._target())
        stable, canary = record.get("stable"), record.get("canary")
        detail = f"stable {stable or 'none'}" + (f", canary {canary} (label 'canary'; clients choose the label)"
                                                 if canary else ", no canary")
        return TrafficState(str(stable) if stable else None, str(canary) if canary else None, None, detail)

    def set_traffic(self, canary_percent: float) -> TrafficState:
        from components._shared.errors import RolloutError
        from components.deploy.transition import intact, read_record

        t = self._target()
        record = read_record(t)
        if record.get("canary") != self.version:
            raise RolloutError(f"version {self.version} of {self.model_name!r} is not the canary "
                               f"({_labels(record)}); deploy it with approval required first")
        if not intact(t, record, self.version):
            raise RolloutError(f"the canary version {self.version} of {self.model_name!r} is missing from the serving "
                               f"path or its files differ from its recorded fingerprint")
        tag_version(t.client, self.model_name, self.version, f"canary at {canary_percent:g} %")
        return self.describe()

    def promote(self) -> TrafficState:
        from components._shared.errors import DeployError, RolloutError
        from components.deploy.core import approve
        from components.deploy.transition import read_record

        with self._locked():
            record = read_record(self._target())
            if record.get("stable") != self.version:  # else: promoted before (a repeated call)
                if record.get("canary") != self.version:
                    raise RolloutError(f"version {self.version} of {self.model_name!r} is neither canary nor stable "
                                       f"({_labels(record)}); nothing to promote")
                try:
                    approve(self.model_name, self.tracking_uri, self.serving_base, verify=self._verify)
                except DeployError as exc:
                    raise RolloutError(f"promoting version {self.version} of {self.model_name!r} failed: {exc}") from exc
            tag_version(self._target().client, self.model_name, self.version, "promoted")
        return self.describe()

    def rollback(self, reason: str) -> TrafficState:
        from components._shared.errors import RolloutError
        from components.deploy.repair import repair
        from components.deploy.transition import STATUS_TAG, Checked, transition

        with self._locked():
            t = self._target()
            record = repair(t)["record"]
            if record.get("stable") == self.version:
                raise RolloutError(f"version {self.version} of {self.model_name!r} is already stable; a rollout "
                                   f"rollback only clears a canary (use `python -m pipelines rollback`)")
            if record.get("canary") == self.version:  # else: cleared before (a repeated call)
                fp = record["fingerprints"].get(str(self.version), "")
                # reject serves nothing new, so the version needs no load check: the record only drops its label
                transition(t, "reject", Checked(self.version, fp, "", 0))
            t.client.set_model_version_tag(self.model_name, str(self.version), STATUS_TAG,
                                           f"rolled back: {reason}"[:500])
            tag_version(t.client, self.model_name, self.version, "rolled_back", reason)
        return self.describe()


def _labels(record: dict) -> str:
    from components.deploy.state import describe

    return describe(record)


TARGETS = ("tfserving", "vertex", "kserve")


def build_target(kind: str, model_name: str, version=None, tracking_uri: str = "", serving_base: str = "",
                 lock=None, **options):
    """The :class:`TrafficTarget` named ``kind`` (``--target``).

    Options: ``tfserving`` needs ``tracking_uri`` and ``serving_base`` (``version`` defaults to the
    record's canary); ``kserve`` takes ``namespace`` and ``name`` (the InferenceService; empty:
    derived from the model name); ``vertex`` takes ``project``, ``location``, ``endpoint_name``,
    ``version`` (the Vertex model version id of the canary) and optionally ``api_endpoint``,
    ``api_transport``, ``credentials``.

    Raises:
        ConfigError: An unknown target or a missing option (one sentence).
    """
    from components._shared.errors import ConfigError

    if kind == "tfserving":
        if not serving_base or not tracking_uri:
            raise ConfigError("the tfserving rollout target needs the serving base and the registry's tracking URI")
        if version in (None, ""):
            from components._shared import registry
            from components.deploy.transition import Target, read_record

            version = read_record(Target(registry.configure(tracking_uri), serving_base, model_name)).get("canary")
            if not version:
                raise ConfigError(f"model {model_name!r} has no canary to roll out on {serving_base} "
                                  f"(deploy it with approval required first)")
        return TFServingTarget(model_name, version, tracking_uri, serving_base, lock=lock,
                               verify=options.get("verify"))
    if kind == "kserve":
        if not options.get("namespace"):
            raise ConfigError("the kserve rollout target needs the InferenceService's namespace (--kserve-namespace)")
        from components.deploy.kserve import KServeConfig, KServeTarget

        return KServeTarget(KServeConfig(namespace=options["namespace"], name=options.get("name") or ""), model_name)
    if kind == "vertex":
        from components.rollout.vertex import VertexEndpointTarget

        missing = [k for k in ("project", "location", "endpoint_name") if not options.get(k)]
        if missing or version in (None, ""):
            raise ConfigError(f"the vertex rollout target needs {', '.join(missing + (['version'] if not version else []))}")
        return VertexEndpointTarget(options["project"], options["location"], options["endpoint_name"], str(version),
                                    api_endpoint=options.get("api_endpoint"),
                                    api_transport=options.get("api_transport"),
                                    credentials=options.get("credentials"))
    raise ConfigError(f"unknown rollout target {kind!r}; one of {', '.join(TARGETS)}")
