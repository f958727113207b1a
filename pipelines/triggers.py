"""Start runs of the compiled training pipeline: Kubeflow Pipelines, Vertex AI Pipelines, or here.

- **kfp**: ``kfp.Client(host=..., existing_token=... | credentials=...)``; the host from the
  argument, else ``KF_PIPELINES_ENDPOINT``, else (inside a cluster) the in-cluster service.
  The token from the argument, else ``KF_PIPELINES_TOKEN``; else a projected service-account
  token (``KF_PIPELINES_SA_TOKEN_PATH`` or the standard path) when one exists. Runs start with
  ``create_run_from_pipeline_package`` on the compiled YAML (or, given a pipeline *name*, the
  latest uploaded version of that pipeline) in a named experiment.
- **vertex**: ``aiplatform.PipelineJob(template_path=..., job_id=..., ...).submit(service_account=...)``.
- **local**: :func:`pipelines.local.run_local` (kfp.local, this machine).

Every target has a server-side duplicate check keyed by the run's name: a KFP run with the
same display name in the experiment, a Vertex job with the same (deterministic) job id, a
local run folder with a summary. Problems become one-sentence :class:`TriggerError` /
:class:`ConfigError` messages; nothing here retries for minutes or prints a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io as _io
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from typing import Any, Optional

from components._shared.errors import ConfigError, PipelineError, TriggerError

logger = logging.getLogger(__name__)

KFP_HOST_ENV = "KF_PIPELINES_ENDPOINT"
KFP_TOKEN_ENV = "KF_PIPELINES_TOKEN"
KFP_SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
KFP_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
TRAINING_PIPELINE = "kfp-tf-gate-training"
DEFAULT_EXPERIMENT = "kfp-tf-gate-retraining"
TARGETS = ("none", "local", "kfp", "vertex")
PIPELINE_SUFFIXES = (".yaml", ".yml", ".json", ".zip", ".tar.gz", ".tgz")


# --------------------------------------------------------------------------- pipeline packages + parameters


def is_pipeline_file(ref: str) -> bool:
    """A compiled package (path or URI) rather than the name of an uploaded KFP pipeline."""
    return "/" in ref or ref.lower().endswith(PIPELINE_SUFFIXES)


def fetch_pipeline_file(ref: str) -> str:
    """A local path of the compiled pipeline ``ref`` (downloads gs:// and https:// packages)."""
    if "://" not in ref or ref.startswith("file://"):
        path = ref[len("file://") :] if ref.startswith("file://") else ref
        if not os.path.isfile(path):
            raise ConfigError(
                f"the compiled pipeline {ref} does not exist (run python -m pipelines compile)"
            )
        return path
    suffix = next((s for s in PIPELINE_SUFFIXES if ref.lower().endswith(s)), ".yaml")
    fd, local = tempfile.mkstemp(suffix=suffix, prefix="pipeline-")
    os.close(fd)
    try:
        if ref.startswith(("http://", "https://")):
            import urllib.request

            with urllib.request.urlopen(ref, timeout=60) as resp, open(local, "wb") as out:
                out.write(resp.read())
        else:
            import fsspec

            with fsspec.open(ref, "rb") as src, open(local, "wb") as out:
                out.write(src.read())
    except Exception as exc:
        raise ConfigError(f"cannot download the compiled pipeline {ref}: {exc}") from exc
    return local


def pipeline_spec(path: str) -> dict:
    """The PipelineSpec (first YAML document) of a compiled pipeline file."""
    import yaml

    try:
        with open(path) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not a compiled pipeline: {exc}") from exc
    if not docs or "root" not in docs[0]:
        raise ConfigError(f"{path} is not a compiled pipeline (no PipelineSpec)")
    return docs[0]


_CASTS = {
    "STRING": str,
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "BOOLEAN": lambda v: (
        v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes")
    ),
}


def pipeline_parameters(spec: Optional[dict], auto: dict, user: dict) -> dict:
    """Arguments of a run: derived ``auto`` values the pipeline has, plus every ``user`` value.

    With a spec, a ``user`` name the pipeline does not declare is an error, derived names it
    does not declare are dropped, values are cast to the declared types and missing required
    parameters are reported.
    """
    if spec is None:
        return {**auto, **user}
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(user) - set(declared))
    if unknown:
        raise ConfigError(
            f"the training pipeline has no parameter {unknown[0]!r} "
            f"(it has: {', '.join(sorted(declared))})"
        )
    out = {}
    for name, value in {**{k: v for k, v in auto.items() if k in declared}, **user}.items():
        cast = _CASTS.get(declared[name].get("parameterType", "STRING"), lambda v: v)
        try:
            out[name] = cast(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"the pipeline parameter {name!r} must be "
                f"{declared[name].get('parameterType')}, got {value!r}"
            ) from exc
    required = [
        n
        for n, d in declared.items()
        if "defaultValue" not in d and not d.get("isOptional") and n not in out
    ]
    if required:
        raise ConfigError(f"the training pipeline needs the parameter {required[0]!r}")
    return out


def _coerce(value: Any) -> Any:
    """A --param string as the number or boolean it spells (no spec to read the type from)."""
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value.lower() == "true" if value.lower() in ("true", "false") else value


def parse_params(items: list) -> dict:
    """``["name=value", ...]`` (repeatable --param flags) -> dict of strings."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def retrain_arguments(data_uri: str, schema: dict, model_name: str, tracking_uri: str) -> dict:
    """Pipeline arguments of a retraining run on ``data_uri`` derived from the champion's schema."""
    auto = {"data_uri": data_uri, "label": schema.get("label") or "", "model_name": model_name}
    if schema.get("positive_label") not in (None, ""):
        auto["positive_label"] = str(schema["positive_label"])
    ids = [
        c
        for c, e in schema.get("columns", {}).items()
        if e.get("reason") == "the configured id column"
    ]
    if ids:
        auto["id_column"] = ids[0]
    # Only a tracking server the cluster can reach; a local SQLite file means nothing there.
    if tracking_uri and tracking_uri.split(":", 1)[0] in ("http", "https", "databricks"):
        auto["mlflow_tracking_uri"] = tracking_uri
    return auto


def run_name(model_name: str, key: str) -> str:
    return f"retrain-{model_name}-{key[:12]}"


def vertex_job_id(model_name: str, key: str) -> str:
    """A deterministic Vertex job id (``[a-z][-a-z0-9]{0,127}``): the same window, the same job."""
    slug = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")[:80] or "model"
    return f"retrain-{slug}-{key[:16]}"


# --------------------------------------------------------------------------- Kubeflow Pipelines


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


def _first_line(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text or "").strip()
    try:
        doc = json.loads(text)
        text = doc.get("message") or doc.get("error") or text
    except (ValueError, AttributeError):
        pass
    return text.splitlines()[0][:200] if text else ""


def kfp_error(exc: BaseException, host: str) -> PipelineError:
    """One sentence for a failed call to the KFP API."""
    import kfp_server_api
    import urllib3

    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, kfp_server_api.ApiException):
        status = exc.status or 0
        detail = _first_line(exc.body) or (exc.reason or "")
        if status in (401, 403):
            return TriggerError(
                f"the Kubeflow Pipelines API at {host} refused the credentials (HTTP {status} {exc.reason}): "
                f"pass a valid --token (or {KFP_TOKEN_ENV}) or a service-account token"
            )
        if status == 0:
            return TriggerError(
                f"cannot talk to the Kubeflow Pipelines API at {host}: {_first_line(exc.reason)}"
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
            f"cannot reach the Kubeflow Pipelines API at {host} ({_first_line(reason)}); "
            f"check --host or {KFP_HOST_ENV}"
        )
    if isinstance(exc, ValueError):
        return TriggerError(f"Kubeflow Pipelines at {host}: {_first_line(str(exc))}")
    return TriggerError(
        f"Kubeflow Pipelines at {host} failed: {type(exc).__name__}: {_first_line(str(exc))}"
    )


@contextlib.contextmanager
def _kfp_calls(host: str):
    """Map errors to one sentence; the client's printed links go to the log, not stdout."""
    out = _io.StringIO()
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
    with _kfp_calls(host):
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
    with _kfp_calls(host):
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


# --------------------------------------------------------------------------- Vertex AI Pipelines


@dataclasses.dataclass
class VertexSettings:
    """Where and how to start a Vertex AI pipeline job (credentials: the environment's, unless given)."""

    project: str = ""
    location: str = "us-central1"
    template: str = "compiled/vertex/training.yaml"
    pipeline_root: str = ""
    service_account: str = ""
    network: str = ""
    experiment: str = ""
    credentials: Any = dataclasses.field(default=None, repr=False)

    def resolved_project(self) -> str:
        project = (
            self.project
            or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
            or os.environ.get("CLOUD_ML_PROJECT_ID", "")
        )
        if not project:
            raise ConfigError(
                "no Google Cloud project for Vertex AI: pass --project or set GOOGLE_CLOUD_PROJECT"
            )
        return project


def vertex_job(
    settings: VertexSettings,
    job_id: str,
    display_name: str,
    arguments: dict,
    labels: Optional[dict] = None,
):
    """Construct (not submit) the PipelineJob: parses and checks the template, no network call
    when credentials are given."""
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    template = settings.template
    if not template.startswith(("gs://", "https://")):
        template = fetch_pipeline_file(template)
        import yaml

        with open(template) as fh:
            documents = sum(1 for d in yaml.safe_load_all(fh) if d)
        if documents != 1:
            raise ConfigError(
                f"{settings.template} has {documents} YAML documents (a Kubeflow pipeline with "
                "platform settings?); Vertex AI needs a single document: use compiled/vertex/*.yaml"
            )
    try:
        return aiplatform.PipelineJob(
            display_name=display_name[:128],
            template_path=template,
            job_id=job_id,
            pipeline_root=settings.pipeline_root or None,
            parameter_values=arguments,
            labels={k: _label_value(v) for k, v in (labels or {}).items()},
            credentials=settings.credentials,
            project=settings.resolved_project(),
            location=settings.location,
        )
    except auth_exceptions.GoogleAuthError as exc:
        raise TriggerError(
            f"no usable Google Cloud credentials for Vertex AI ({_first_line(str(exc))}); "
            "run on a service account or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{settings.template} cannot run on Vertex AI: {_first_line(str(exc))}"
        ) from exc


def _label_value(value: Any) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]


def vertex_error(exc: BaseException, settings: VertexSettings) -> PipelineError:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    where = f"Vertex AI ({settings.project or 'project from the environment'}, {settings.location})"
    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return TriggerError(
            f"no usable Google Cloud credentials for {where} ({_first_line(str(exc))}); "
            "run on a service account or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, (api.Unauthenticated, api.PermissionDenied)):
        return TriggerError(
            f"{where} refused the credentials ({exc.code.name if exc.code else ''}: "
            f"{_first_line(exc.message)}); the caller needs roles/aiplatform.user and "
            "iam.serviceAccounts.actAs on the pipeline's service account"
        )
    if isinstance(exc, (api.ServiceUnavailable, api.DeadlineExceeded, api.RetryError, OSError)):
        return TriggerError(f"cannot reach {where}: {_first_line(str(exc))}")
    if isinstance(exc, api.GoogleAPICallError):
        return TriggerError(f"{where} refused the pipeline job: {_first_line(exc.message)}")
    return TriggerError(f"{where} failed: {type(exc).__name__}: {_first_line(str(exc))}")


def vertex_start_run(
    settings: VertexSettings,
    job_id: str,
    display_name: str,
    arguments: dict,
    labels: Optional[dict] = None,
) -> dict:
    """Submit the job; a job with the same id (the same window) already there counts as started."""
    from google.api_core import exceptions as api

    job = vertex_job(settings, job_id, display_name, arguments, labels)
    job_id = job.job_id  # the SDK's generated one when none was given
    info = {
        "target": "vertex",
        "run_id": job_id,
        "run_name": display_name,
        "project": settings.resolved_project(),
        "location": settings.location,
    }
    try:
        job.submit(
            service_account=settings.service_account or None,
            network=settings.network or None,
            experiment=settings.experiment or None,
        )
    except api.AlreadyExists:
        logger.info("Vertex pipeline job %s already exists: not starting a duplicate", job_id)
        return {**info, "status": "exists"}
    except Exception as exc:
        raise vertex_error(exc, settings) from exc
    return {
        **info,
        "status": "started",
        "resource_name": job.resource_name,
        "url": f"https://console.cloud.google.com/vertex-ai/locations/{settings.location}/pipelines/runs/{job_id}"
        f"?project={info['project']}",
    }


# --------------------------------------------------------------------------- local (kfp.local)


def local_start_run(
    runs_dir: str,
    run_id: str,
    data_uri: str,
    label: str,
    model_name: str,
    params: Optional[dict] = None,
) -> dict:
    """Run the training pipeline here; a finished run of that id already there counts as started."""
    from pipelines.local import run_local

    summary_path = os.path.join(os.path.abspath(runs_dir), run_id, "summary.json")
    info = {"target": "local", "run_id": run_id, "run_name": run_id, "summary": summary_path}
    if os.path.exists(summary_path):
        return {**info, "status": "exists"}
    try:
        summary = run_local(
            data_uri,
            label,
            runs_dir=runs_dir,
            model_name=model_name,
            quiet=True,
            params=params or {},
            run_id=run_id,
        )
    except PipelineError as exc:
        raise TriggerError(f"the local retraining run {run_id} failed: {exc}") from exc
    return {
        **info,
        "status": "started",
        "promoted": summary.get("promoted"),
        "model_version": summary.get("model_version"),
    }


# --------------------------------------------------------------------------- the monitor's launcher

# Run-level settings of a local run are arguments of run_local, not pipeline parameters.
_LOCAL_FIXED = (
    "data_uri",
    "label",
    "model_name",
    "mlflow_tracking_uri",
    "serving_base_dir",
    "checkpoint_root",
)


def monitor_launcher(
    target: str,
    model_name: str,
    data_uri: str,
    schema: dict,
    tracking_uri: str,
    user_params: Optional[dict] = None,
    kfp: Optional[KfpSettings] = None,
    vertex: Optional[VertexSettings] = None,
    runs_dir: str = "runs",
) -> Optional[Callable]:
    """``launcher(decision) -> run info`` for :func:`components.monitor.core.run_monitor`.

    Settings are checked here, before any data is read: a missing host or project, an unknown
    parameter or a bad template fails at once.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown trigger {target!r}; expected one of {', '.join(TARGETS)}")
    if target == "none":
        return None
    user_params = dict(user_params or {})
    auto = retrain_arguments(data_uri, schema, model_name, tracking_uri)
    if not auto["label"] and "label" not in user_params:
        raise ConfigError("the champion's schema names no label column; pass --param label=COLUMN")

    if target == "local":
        merged = {**auto, **{k: _coerce(v) for k, v in user_params.items()}}
        local_params = {k: v for k, v in merged.items() if k not in _LOCAL_FIXED}
        label = user_params.get("label", auto["label"])
        data = user_params.get("data_uri", data_uri)

        def launch_local(decision) -> dict:
            return local_start_run(
                runs_dir,
                run_name(model_name, decision.dedupe_key),
                data,
                label,
                model_name,
                local_params,
            )

        return launch_local

    if target == "kfp":
        settings = kfp or KfpSettings()
        settings.resolved_host()
        settings.auth()
        spec = None
        if is_pipeline_file(settings.pipeline):  # fetched once, checked before any data is read
            settings = dataclasses.replace(
                settings, pipeline=fetch_pipeline_file(settings.pipeline)
            )
            spec = pipeline_spec(settings.pipeline)
        arguments = pipeline_parameters(spec, auto, user_params)

        def launch_kfp(decision) -> dict:
            return kfp_start_run(settings, run_name(model_name, decision.dedupe_key), arguments)

        return launch_kfp

    settings = vertex or VertexSettings()
    settings.resolved_project()
    if not settings.template or not is_pipeline_file(settings.template):
        raise ConfigError(
            "Vertex AI needs the compiled training pipeline as a gs:// or https:// URI or a path "
            f"(compiled/vertex/training.yaml), not {settings.template!r}"
        )
    # A local template is checked here; a gs:// or Artifact Registry one is checked by Vertex.
    remote = settings.template.startswith(("gs://", "https://"))
    spec = None if remote else pipeline_spec(fetch_pipeline_file(settings.template))
    arguments = pipeline_parameters(spec, auto, user_params)

    def launch_vertex(decision) -> dict:
        return vertex_start_run(
            settings,
            vertex_job_id(model_name, decision.dedupe_key),
            run_name(model_name, decision.dedupe_key),
            arguments,
            labels={
                "model": model_name,
                "dedupe-key": decision.dedupe_key,
                "severity": decision.severity,
                "started-by": "kfp-tf-gate-monitor",
            },
        )

    return launch_vertex


def timestamped(name: str) -> str:
    return f"{name} {datetime.datetime.now().strftime('%Y-%m-%d %H-%M-%S')}"
