"""Where the monitor keeps each model's trigger history (read by dedupe and cooldown).

:class:`FileStateStore`: one JSON file for every model, updated under an exclusive file lock (a
workstation, a cron job). :class:`RegistryStateStore`: a tag of the registered model (monitors
without a disk, in a cluster). Both hold the document :func:`components.monitor.policy.record_trigger`
builds; :func:`state_store` picks one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Optional

from components._shared import io
from components._shared.errors import ConfigError
from components.monitor.policy import FILE_STATE_KEEP, STATE_VERSION

logger = logging.getLogger(__name__)

STATE_TAG = "kfp_tf_gate.monitor_state"
REGISTRY_STATE_KEEP = 20  # registry tag values are short (a few thousand characters)
REGISTRY = "registry"


class FileStateStore:
    """Trigger history of each model in one JSON file, updated under an exclusive file lock."""

    keep = FILE_STATE_KEEP

    def __init__(self, path: str, model_name: str):
        self.path = os.path.abspath(path)
        self.model_name = model_name

    def describe(self) -> str:
        return f"file {self.path}"

    @contextlib.contextmanager
    def locked(self):
        """Hold the lock across load -> trigger -> save, so two monitors cannot both trigger.

        A second monitor waits for as long as the first takes (its trigger may be a whole local
        run); the lock file names the holder, and the waiting one says so once.
        """
        from components._shared.lock import hold

        with hold(self.path + ".lock", f"the monitor state {self.path}", timeout=None):
            yield self

    def _read_all(self) -> dict:
        if not os.path.exists(self.path):
            return {"version": STATE_VERSION, "models": {}}
        try:
            doc = io.read_json(self.path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"the monitor state file {self.path} is unreadable ({exc}); fix or remove it"
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
            raise ConfigError(f"the monitor state file {self.path} is not a monitor state document")
        return doc

    def load(self) -> dict:
        return dict(self._read_all()["models"].get(self.model_name) or {})

    def save(self, state: dict) -> None:
        doc = self._read_all()
        doc["models"][self.model_name] = state
        io.write_json(doc, self.path)


class RegistryStateStore:
    """Trigger history as a tag of the registered model (for monitors without a disk, in a cluster).

    There is no lock: two monitors racing on the same window can both trigger; the server-side
    check of the run name (Kubeflow) or job id (Vertex) still catches the second one.
    """

    keep = REGISTRY_STATE_KEEP

    def __init__(self, tracking_uri: str, model_name: str):
        self.tracking_uri = tracking_uri
        self.model_name = model_name

    def describe(self) -> str:
        return f"tag {STATE_TAG} of registered model {self.model_name}"

    @contextlib.contextmanager
    def locked(self):
        yield self

    def _client(self):
        from components._shared import registry

        return registry.configure(self.tracking_uri)

    def load(self) -> dict:
        from mlflow.exceptions import MlflowException

        try:
            model = self._client().get_registered_model(self.model_name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return {}
            # Reading no history would allow duplicate runs: fail instead.
            raise ConfigError(f"cannot read the monitor state of {self.model_name}: {exc}") from exc
        raw = (model.tags or {}).get(STATE_TAG)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            logger.warning("ignoring an unreadable %s tag on %s", STATE_TAG, self.model_name)
            return {}

    def save(self, state: dict) -> None:
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        self._client().set_registered_model_tag(self.model_name, STATE_TAG, text)


def state_store(state: Optional[str], tracking_uri: str, model_name: str):
    """The store named by ``state``: ``"registry"`` (a model tag), a JSON file path, or None (none)."""
    if not state:
        return None
    if state == REGISTRY:
        return RegistryStateStore(tracking_uri, model_name) if tracking_uri else None
    return FileStateStore(state, model_name)
