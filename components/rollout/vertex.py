"""The Vertex AI endpoint traffic split as a rollout target (google-cloud-aiplatform).

Deploy with a canary share (``canary_traffic_percent`` < 100) leaves two deployed models on the
endpoint: the stable version and the new one with its share. This target moves that split with
``Endpoint.update(traffic_split=...)`` (the UpdateEndpoint RPC): ``set_traffic(p)`` gives the
canary ``p`` % and stable the rest (any other deployed model 0); ``promote()`` gives the canary 100 %
and its version the ``champion`` and ``default`` aliases; ``rollback(reason)`` gives stable 100 %
and moves those aliases back to stable's version (deploy's upload gave them to the new version).
Deployed models stay deployed at 0 % (undeploying is a cost decision left to people).

``KFP_TF_GATE_VERTEX_API_ENDPOINT`` (``components._shared.vertex_api``, the variable
the rehearsal and the tests set for every Vertex AI client of the project) points the target at a
stand-in (REST, anonymous) when no ``api_endpoint`` is given.
"""

from __future__ import annotations

import logging
from typing import Optional

from components._shared.errors import RolloutError
from components._shared.traffic import TrafficState
from components._shared.vertex_api import VERTEX_ENDPOINT_ENV, client_options  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)
ALIASES = ("champion", "default")
HINT = "; the service account needs roles/aiplatform.user"


class VertexEndpointTarget:
    """One Vertex AI endpoint whose traffic moves between a stable and a canary version.

    Args:
        project / location: Google Cloud project and Vertex AI region.
        endpoint_name: Endpoint display name.
        version: The canary's Vertex model version id (as deploy uploaded it).
        api_endpoint / api_transport / credentials: As for ``aiplatform.init`` (a test or private
            endpoint, ``"rest"``, google.auth credentials); None for the defaults
            (``$KFP_TF_GATE_VERTEX_API_ENDPOINT``, when set, gives REST and anonymous credentials).
    """

    name = "vertex"

    def __init__(self, project: str, location: str, endpoint_name: str, version: str,
                 api_endpoint: Optional[str] = None, api_transport: Optional[str] = None, credentials=None):
        self.project, self.location, self.endpoint_name, self.version = project, location, endpoint_name, str(version)
        stand_in = client_options() if not api_endpoint else {}
        if stand_in:
            api_endpoint, api_transport = stand_in["api_endpoint"], api_transport or stand_in["api_transport"]
            credentials = credentials if credentials is not None else stand_in["credentials"]
        self._init = {"project": project, "location": location, "credentials": credentials,
                      **{k: v for k, v in (("api_endpoint", api_endpoint), ("api_transport", api_transport)) if v}}

    def _call(self, step: str, fn):
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth_exceptions

        from components._shared.launch.vertex import vertex_error

        try:
            return fn()
        except (api.GoogleAPICallError, api.RetryError, auth_exceptions.GoogleAuthError) as exc:
            raise vertex_error(exc, f"Vertex AI ({self.project}, {self.location})", step, RolloutError, HINT) from exc

    def _endpoint(self):
        from google.cloud import aiplatform

        aiplatform.init(**self._init)
        found = self._call(f"looking up endpoint {self.endpoint_name!r}", lambda: aiplatform.Endpoint.list(
            filter=f'display_name="{self.endpoint_name}"'))
        if len(found) != 1:
            raise RolloutError(f"{len(found)} Vertex AI endpoints are named {self.endpoint_name!r}; a rollout needs one")
        return found[0]

    def _roles(self, endpoint) -> tuple:
        """(canary deployed model, stable deployed model or None, traffic split) of the endpoint."""
        res = endpoint.gca_resource
        split = dict(res.traffic_split)
        canary = [d for d in res.deployed_models if d.model_version_id == self.version]
        if not canary:
            raise RolloutError(f"endpoint {self.endpoint_name!r} serves no deployed model of version {self.version}")
        others = sorted((d for d in res.deployed_models if d.id != canary[0].id),
                        key=lambda d: (split.get(d.id, 0), d.create_time.timestamp() if d.create_time else 0))
        return canary[0], (others[-1] if others else None), split

    def _state(self, endpoint) -> TrafficState:
        canary, stable, split = self._roles(endpoint)
        pct = split.get(canary.id, 0)
        if stable is None or split.get(stable.id, 0) == 0 and pct == 100:  # promoted: the canary is stable
            return TrafficState(self.version, None, 100.0 if stable is None else 0.0,
                                f"version {self.version} takes 100 % on {self.endpoint_name!r}")
        return TrafficState(stable.model_version_id, self.version, float(pct),
                            f"stable version {stable.model_version_id} ({split.get(stable.id, 0)} %), "
                            f"canary version {self.version} ({pct} %) on {self.endpoint_name!r}")

    def _split(self, endpoint, canary_percent: int) -> TrafficState:
        canary, stable, split = self._roles(endpoint)
        if stable is None and canary_percent < 100:
            raise RolloutError(f"endpoint {self.endpoint_name!r} has no stable version beside the canary "
                               f"{self.version} to send the rest of the traffic to")
        want = {d.id: 0 for d in endpoint.gca_resource.deployed_models}
        want[canary.id] = canary_percent
        if stable is not None:
            want[stable.id] = 100 - canary_percent
        if {k: v for k, v in want.items() if v} != {k: v for k, v in split.items() if v}:
            self._call(f"setting the traffic split of endpoint {self.endpoint_name!r} to {want}",
                       lambda: endpoint.update(traffic_split=want))
        return self._state(endpoint)

    def _aliases(self, endpoint, version: str) -> None:
        from google.cloud import aiplatform

        canary, _, _ = self._roles(endpoint)
        registry = aiplatform.models.ModelRegistry(canary.model)
        self._call(f"moving aliases {list(ALIASES)} to version {version}",
                   lambda: registry.add_version_aliases(list(ALIASES), version))

    def deployed_models(self) -> tuple:
        """(endpoint id, canary deployed model id, stable deployed model id or None), read now: what
        :class:`components.rollout.cloud_monitoring.CloudMonitoringSource` selects metrics by."""
        endpoint = self._endpoint()
        canary, stable, _ = self._roles(endpoint)
        return endpoint.name, canary.id, stable.id if stable is not None else None

    def describe(self) -> TrafficState:
        return self._state(self._endpoint())

    def set_traffic(self, canary_percent: float) -> TrafficState:
        pct = int(round(canary_percent))
        if not 0 < pct < 100:
            raise RolloutError(f"a traffic step gives the canary 1 to 99 %, got {canary_percent!r}")
        return self._split(self._endpoint(), pct)

    def promote(self) -> TrafficState:
        endpoint = self._endpoint()
        state = self._split(endpoint, 100)
        self._aliases(endpoint, self.version)
        return state

    def rollback(self, reason: str) -> TrafficState:
        endpoint = self._endpoint()
        canary, stable, _ = self._roles(endpoint)
        if stable is None:
            raise RolloutError(f"endpoint {self.endpoint_name!r} has no stable version to roll back to")
        self._split(endpoint, 0)
        self._aliases(endpoint, stable.model_version_id)
        logger.warning("rolled back version %s on %s: %s", self.version, self.endpoint_name, reason)
        return TrafficState(stable.model_version_id, None, 0.0,
                            f"stable version {stable.model_version_id} (100 %) on {self.endpoint_name!r}; "
                            f"version {self.version} deployed at 0 %")
