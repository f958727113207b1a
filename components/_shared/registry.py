"""The MLflow model registry: where the champion lives.

A registered model version's artifacts hold everything needed to re-score it and to
validate new data against it: the core Keras model and transform spec (``model/``), the
schema and a reference data sample (``data/``), the SavedModel (``saved_model/``) and the
model card. Aliases, not stages: ``champion``, ``previous``, ``candidate``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
CANDIDATE = "candidate"
STORE_LOCK_SECONDS = 120.0  # creating a store takes seconds; longer means its holder is stuck


@dataclasses.dataclass
class ModelRef:
    name: str
    version: str
    run_id: Optional[str]
    source: str
    tags: dict


def experiment_name(model_name: str) -> str:
    """The model's MLflow experiment; refuses an invalid model name (ConfigError)."""
    from components._shared.names import check_model_name

    return f"kfp-tf-gate/{check_model_name(model_name)}"


def sqlite_path(tracking_uri: str) -> Optional[str]:
    """The database file of a ``sqlite:///`` URI (absolute), else None."""
    if not (tracking_uri or "").startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    return os.path.abspath(db) if db and db != ":memory:" else None


def store_lock(tracking_uri: str):
    """A lock beside a local SQLite store (``mlflow.db.lock``), held while the store is created or
    migrated: two first runs at once would otherwise both create its tables ("table ... already
    exists"). A no-op for a tracking server, which creates its schema once, itself."""
    import contextlib

    from components._shared.lock import hold

    db = sqlite_path(tracking_uri)
    if db is None or not os.access(os.path.dirname(db), os.W_OK):  # nothing can create or migrate it
        return contextlib.nullcontext()
    return hold(db + ".lock", f"the MLflow store {db} (while creating or upgrading it)", STORE_LOCK_SECONDS)


def local_store_path(tracking_uri: str) -> Optional[str]:
    """The file or folder of a local store (``sqlite:///``, ``file://`` or a plain path), else None."""
    if sqlite_path(tracking_uri):
        return sqlite_path(tracking_uri)
    uri = tracking_uri or ""
    if uri.startswith("file://"):
        return os.path.abspath(uri[len("file://"):])
    return os.path.abspath(uri) if uri and "://" not in uri and not uri.startswith(("databricks", "sqlite:")) else None


def require_store(tracking_uri: str) -> None:
    """Refuse a local store that does not exist yet, before anything opens it: MLflow would create an
    empty one (and its folder) on first use, which a command that only reads or moves versions must not.

    Raises:
        ConfigError: One sentence naming the URI.
    """
    from components._shared.errors import ConfigError

    path = local_store_path(tracking_uri)
    if path and not os.path.exists(path):
        raise ConfigError(f"there is no MLflow registry at {tracking_uri} ({path} does not exist; a run creates "
                          "it, and --mlflow-tracking-uri or $MLFLOW_TRACKING_URI names another)")


def quiet_mlflow_logs() -> None:
    """Keep MLflow's and alembic's INFO lines (store creation, migrations) off a command's console,
    unless $MLFLOW_LOGGING_LEVEL asks for them."""
    if os.environ.get("MLFLOW_LOGGING_LEVEL"):
        return
    import mlflow  # noqa: F401 (its import configures these loggers; set them afterwards)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def registered_model_names(tracking_uri: str, limit: int = 10) -> list:
    """Up to ``limit`` registered model names of the registry at ``tracking_uri``, sorted."""
    client = configure(tracking_uri)
    return sorted(m.name for m in client.search_registered_models(max_results=limit))


def configure(tracking_uri: str, model_name: Optional[str] = None, artifact_location: Optional[str] = None):
    """Point MLflow at ``tracking_uri`` and (optionally) select the model's experiment."""
    import mlflow

    from components._shared.credentials import load_mlflow_credentials

    load_mlflow_credentials()  # Vertex: from the Secret Manager secret the task names, if any
    if tracking_uri:
        # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI to this process's environment;
        # restore it, so one store chosen here does not leak into later defaults (tests, CLI).
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    name = experiment_name(model_name) if model_name else None
    effective = tracking_uri or mlflow.get_tracking_uri()
    with store_lock(effective):
        client = mlflow.MlflowClient()
        if sqlite_path(effective):
            # MLflow creates (or migrates) a SQLite store's tables when it first opens it, once for
            # tracking and once for the registry: make both happen here, under the lock.
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        if name:
            if artifact_location is None and sqlite_path(tracking_uri):
                # A local SQLite store keeps its artifacts beside it, not in whatever cwd a task has.
                artifact_location = os.path.join(os.path.dirname(sqlite_path(tracking_uri)), "mlartifacts")
            if client.get_experiment_by_name(name) is None:
                try:
                    client.create_experiment(name, artifact_location=artifact_location)
                except Exception:  # created concurrently by another task (on a tracking server)
                    pass
    if name:
        mlflow.set_experiment(name)
    return mlflow.MlflowClient()


def get_alias(client, model_name: str, alias: str) -> Optional[ModelRef]:
    """The version behind an alias, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(exc).lower():
            return None
        raise
    return ModelRef(model_name, str(mv.version), mv.run_id, mv.source, dict(mv.tags or {}))


def download(client, ref: ModelRef, dest: str, subpath: str = "") -> str:
    """Download a version's artifacts (or a sub-folder of them) to ``dest``; returns the local path."""
    import mlflow

    os.makedirs(dest, exist_ok=True)
    uri = f"runs:/{ref.run_id}/{subpath}".rstrip("/") if ref.run_id else ref.source
    if not ref.run_id and subpath:
        uri = f"{ref.source.rstrip('/')}/{subpath}"
    return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dest)


def find_version_by_tag(client, model_name: str, key: str, value: str) -> Optional[ModelRef]:
    """The registered version carrying tag ``key=value`` (deploy's idempotency key)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return None
    for mv in versions:
        if (mv.tags or {}).get(key) == value:
            return ModelRef(model_name, str(mv.version), mv.run_id, mv.source, dict(mv.tags or {}))
    return None


def training_run(client, meta: Optional[dict]) -> tuple[Optional[str], Optional[str]]:
    """(run id, MLflow model URI) of the training run named in a model's metadata, when this
    registry has that run and train logged a model in it; else (None, None)."""
    run_id = (meta or {}).get("mlflow_run_id") or ""
    model_uri = (meta or {}).get("mlflow_model_uri") or ""
    if not (run_id and model_uri):
        return None, None
    try:
        client.get_run(run_id)
    except Exception as exc:  # tracked elsewhere (another tracking URI) or deleted
        logger.warning("training run %s is not in this registry (%s): registering under a new run", run_id, exc)
        return None, None
    return run_id, model_uri


def log_run_artifacts(client, run_id: str, artifacts: dict, tags: Optional[dict] = None) -> None:
    """Log folder -> local path (a folder or one file) into an existing run, and set tags on it."""
    for dest, local in artifacts.items():
        if local and os.path.isdir(local):
            client.log_artifacts(run_id, local, artifact_path=dest)
        elif local and os.path.exists(local):
            client.log_artifact(run_id, local, artifact_path=dest)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))


def log_run_metrics(client, run_id: str, metrics: dict) -> int:
    """Log the finite numbers of ``metrics`` (bools as 0/1) on a run; returns how many."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = []
    for key, value in metrics.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            batch.append(Metric(key, float(value), now, 0))
    for start in range(0, len(batch), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=batch[start:start + 1000])
    return len(batch)
