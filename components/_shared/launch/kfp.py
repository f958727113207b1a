"""Kubeflow Pipelines: settings, authentication, runs and uploads through ``kfp.Client``.

The host comes from the argument, else ``KF_PIPELINES_ENDPOINT``, else (inside a cluster) the
in-cluster service; the token from the argument, else ``KF_PIPELINES_TOKEN``, else a projected
service-account token (``KF_PIPELINES_SA_TOKEN_PATH`` or the standard path) when one exists.
Runs start with ``create_run_from_pipeline_package`` on the compiled YAML (or, given a pipeline
*name*, the latest uploaded version of that pipeline) in a named experiment; a run whose display
name already exists there counts as started (the server-side duplicate check). Problems become
one-sentence :class:`TriggerError` / :class:`ConfigError` messages; nothing here retries for
minutes or prints a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import warnings

from components._shared.errors import ConfigError, PipelineError, TriggerError
from components._shared.launch.package import fetch_pipeline_file, first_line, is_pipeline_file

logger = logging.getLogger(__name__)

KFP_HOST_ENV = "KF_PIPELINES_ENDPOINT"
KFP_TOKEN_ENV = "KF_PIPELINES_TOKEN"
KFP_SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
KFP_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
DEFAULT_EXPERIMENT = "kfp-tf-gate-retraining"


@dataclasses.dataclass
class KfpSettings:
    """Where and how to start a run on Kubeflow Pipelines.

    Attributes:
        host: API endpoint; "" = ``KF_PIPELINES_ENDPOINT``, else the in-cluster service.
        token: Bearer token; "" = ``KF_PIPELINES_TOKEN``, else a service-account token file if present.
        sa_token_path: Projected service-account token file (multi-user clusters).
        pipeline: Compiled YAML (path, gs://, https://) or the name of an uploaded pipeline.
    """

    host: str = ""
    token: str = ""
    sa_token_path: str = ""
    namespace: str = ""
    experiment: str = DEFAULT_EXPERIMENT
    pipeline: str = "compiled/kubeflow/training.yaml"
    pipeline_root: str = ""
    service_account: str = ""
    timeout: float = 30.0

    def resolved_host(self) -> str:
        host = self.host or os.environ.get(KFP_HOST_ENV, "")
        if not host and os.environ.get("KUBERNETES_SERVICE_HOST"):
            host = IN_CLUSTER_HOST
        if not host:
            raise ConfigError(f"no Kubeflow Pipelines host: pass --host or set {KFP_HOST_ENV}")
        if not host.startswith(("http://", "https://")):
            host = "https://" + host
        return host.rstrip("/")

    def auth(self) -> dict:
        """kfp.Client keyword arguments for authentication (never logged)."""
        token = self.token or os.environ.get(KFP_TOKEN_ENV, "")
        if token:
            return {"existing_token": token}
        path = self.sa_token_path or os.environ.get(KFP_SA_TOKEN_ENV, "")
        if path and not os.path.isfile(path):
            raise ConfigError(f"the service-account token file {path} does not exist")
        if not path and os.path.isfile(KFP_SA_TOKEN_PATH):
            path = KFP_SA_TOKEN_PATH
        if path:
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            return {"credentials": ServiceAccountTokenVolumeCredentials(path)}
        return {}


def kfp_error(exc: BaseException, host: str) -> PipelineError:
    """One sentence for a failed call to the KFP API."""
    import kfp_server_api
    import urllib3

    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, kfp_server_api.ApiException):
        status = exc.status or 0
        detail = first_line(exc.body) or (exc.reason or "")
        if status in (401, 403):
            return TriggerError(
                f"the Kubeflow Pipelines API at {host} refused the credentials (HTTP {status} {exc.reason}): "
                f"pass a valid --token (or {KFP_TOKEN_ENV}) or a service-account token"
            )
        if status == 0:
            return TriggerError(
                f"cannot talk to the Kubeflow Pipelines API at {host}: {first_line(exc.reason)}"
            )
        if status == 404:
            return TriggerError(
                f"{host} has no Kubeflow Pipelines v2beta1 API (HTTP 404 {detail}); "
                "check --host (the ml-pipeline service or the /pipeline ingress path)"
            )
        return TriggerError(
            f"the Kubeflow Pipelines API at {host} answered HTTP {status}: {detail}"
        )
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)):
        reason = getattr(exc, "reason", None) or exc
        return TriggerError(
            f"cannot reach the Kubeflow Pipelines API at {host} ({first_line(reason)}); "
            f"check --host or {KFP_HOST_ENV}"
        )
    if isinstance(exc, ValueError):
        return TriggerError(f"Kubeflow Pipelines at {host}: {first_line(str(exc))}")
    return TriggerError(
        f"Kubeflow Pipelines at {host} failed: {type(exc).__name__}: {first_line(str(exc))}"
    )


@contextlib.contextmanager
def kfp_calls(host: str):
    """Map errors to one sentence; the client's printed links go to the log, not stdout."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    except Exception as exc:
        raise kfp_error(exc, host) from exc
    finally:
        for line in out.getvalue().splitlines():
            logger.info("kfp: %s", line)


def kfp_preflight(host: str, auth: dict, timeout: float) -> dict:
    """One health check with the run's credentials, before kfp.Client (whose own check retries
    for half a minute): an unreachable host or refused credentials fail here, at once."""
    import kfp_server_api

    config = kfp_server_api.Configuration(host=host)
    config.retries = 0  # one attempt: the caller (or the KFP task retry) decides about retrying
    if "existing_token" in auth:
        config.api_key["authorization"] = auth["existing_token"]
        config.api_key_prefix["authorization"] = "Bearer"
    elif "credentials" in auth:
        config.api_key_prefix["authorization"] = "Bearer"
        try:
            auth["credentials"].refresh_api_key_hook(config)
        except OSError as exc:
            raise TriggerError(
                f"cannot read the Kubeflow Pipelines service-account token: {exc}"
            ) from exc
    api = kfp_server_api.HealthzServiceApi(kfp_server_api.ApiClient(config))
    try:
        resp = api.healthz_service_get_healthz(_request_timeout=timeout, _preload_content=False)
    except Exception as exc:
        raise kfp_error(exc, host) from exc
    try:
        return json.loads(resp.data or b"{}")
    except ValueError:
        raise TriggerError(
            f"{host} answered the health check with a page that is not the Kubeflow Pipelines API "
            "(a login page?): the credentials were not accepted or --host is wrong"
        ) from None


def kfp_client(settings: KfpSettings):
    """A checked ``kfp.Client`` for the settings (raises one sentence when it cannot be used)."""
    import kfp

    host = settings.resolved_host()
    auth = settings.auth()
    kfp_preflight(host, auth, settings.timeout)
    with kfp_calls(host):
        kwargs = {"namespace": settings.namespace} if settings.namespace else {}
        client = kfp.Client(host=host, **auth, **kwargs)
    return client, host


def _equals(key: str, value: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": 1, "key": key, "stringValue": value}]}
    )  # 1 = EQUALS


def kfp_find_run(client, experiment_id: str, name: str):
    resp = client.list_runs(
        experiment_id=experiment_id, filter=_equals("display_name", name), page_size=10
    )
    runs = [r for r in (resp.runs or []) if r.display_name == name]
    return runs[0] if runs else None


def kfp_start_run(settings: KfpSettings, name: str, arguments: dict, dedupe: bool = True) -> dict:
    """Start the pipeline in the settings' experiment; with ``dedupe`` an existing run of that name wins."""
    client, host = kfp_client(settings)
    ns = settings.namespace or None
    with kfp_calls(host):
        experiment = client.create_experiment(settings.experiment, namespace=ns)
        info = {
            "target": "kfp",
            "host": host,
            "experiment": settings.experiment,
            "experiment_id": experiment.experiment_id,
            "run_name": name,
        }
        existing = kfp_find_run(client, experiment.experiment_id, name) if dedupe else None
        if existing is not None:
            logger.info(
                "KFP run %s (%s) already exists: not starting a duplicate", name, existing.run_id
            )
            return {
                **info,
                "run_id": existing.run_id,
                "status": "exists",
                "url": f"{host}/#/runs/details/{existing.run_id}",
            }
        if is_pipeline_file(settings.pipeline):
            result = client.create_run_from_pipeline_package(
                fetch_pipeline_file(settings.pipeline),
                arguments=arguments,
                run_name=name,
                experiment_id=experiment.experiment_id,
                pipeline_root=settings.pipeline_root or None,
                service_account=settings.service_account or None,
            )
            run_id = result.run_id
        else:
            pipeline_id, version_id = kfp_latest_version(client, settings.pipeline)
            run = client.run_pipeline(
                experiment_id=experiment.experiment_id,
                job_name=name,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version_id,
                pipeline_root=settings.pipeline_root or None,
                service_account=settings.service_account or None,
            )
            run_id = run.run_id
    logger.info("started KFP run %s (%s) in experiment %s", name, run_id, settings.experiment)
    return {**info, "run_id": run_id, "status": "started", "url": f"{host}/#/runs/details/{run_id}"}


def kfp_latest_version(client, pipeline_name: str) -> tuple:
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        raise TriggerError(
            f"Kubeflow Pipelines has no pipeline named {pipeline_name!r}; upload it with "
            "python -m pipelines submit --target kfp, or pass the compiled YAML"
        )
    versions = client.list_pipeline_versions(
        pipeline_id, page_size=1, sort_by="created_at desc"
    ).pipeline_versions
    if not versions:
        raise TriggerError(f"the Kubeflow pipeline {pipeline_name!r} has no versions")
    return pipeline_id, versions[0].pipeline_version_id


def kfp_upload(client, pipeline_file: str, pipeline_name: str) -> dict:
    """Upload the package as ``pipeline_name`` (or a new version of it), once per content."""
    with open(pipeline_file, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:12]
    version_name = f"{pipeline_name}-{digest}"
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(
            pipeline_file,
            pipeline_name=pipeline_name,
            description=f"kfp-tf-gate training pipeline ({version_name})",
        )
        pipeline_id = pipeline.pipeline_id
        versions = client.list_pipeline_versions(
            pipeline_id, page_size=1, sort_by="created_at desc"
        )
        version = (versions.pipeline_versions or [None])[0]
        if version is None:
            raise TriggerError(f"uploading {pipeline_name!r} created no pipeline version")
        return {
            "pipeline_id": pipeline_id,
            "version_id": version.pipeline_version_id,
            "uploaded": True,
            "version_name": version.display_name,
        }
    found = client.list_pipeline_versions(
        pipeline_id, filter=_equals("display_name", version_name), page_size=5
    )
    for v in found.pipeline_versions or []:
        if v.display_name == version_name:
            return {
                "pipeline_id": pipeline_id,
                "version_id": v.pipeline_version_id,
                "uploaded": False,
                "version_name": version_name,
            }
    version = client.upload_pipeline_version(
        pipeline_file, pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    return {
        "pipeline_id": pipeline_id,
        "version_id": version.pipeline_version_id,
        "uploaded": True,
        "version_name": version_name,
    }


def kfp_upload_and_run(
    settings: KfpSettings, name: str, arguments: dict, pipeline_name: str
) -> dict:
    """Upload the compiled package as ``pipeline_name`` (once per content) and run that version."""
    client, host = kfp_client(settings)
    with kfp_calls(host):
        uploaded = kfp_upload(client, settings.pipeline, pipeline_name)
        experiment = client.create_experiment(
            settings.experiment, namespace=settings.namespace or None
        )
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=name,
            params=arguments,
            pipeline_id=uploaded["pipeline_id"],
            version_id=uploaded["version_id"],
            pipeline_root=settings.pipeline_root or None,
            service_account=settings.service_account or None,
        )
    return {
        "target": "kfp",
        "status": "started",
        "host": host,
        "run_id": run.run_id,
        "run_name": name,
        "experiment": settings.experiment,
        "experiment_id": experiment.experiment_id,
        "pipeline": pipeline_name,
        **uploaded,
        "url": f"{host}/#/runs/details/{run.run_id}",
    }
