"""Vertex AI Pipelines: settings, the PipelineJob, and one sentence for a failed Vertex AI call.

``aiplatform.PipelineJob(template_path=..., job_id=..., ...).submit(service_account=...)``; a job
with the same (deterministic) job id already there counts as started, the server-side duplicate
check. :func:`vertex_error` turns any failed Vertex AI call into one sentence; the deploy
stage's Model Registry and Endpoint calls use it too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Optional

from components._shared.errors import ConfigError, PipelineError, TriggerError
from components._shared.launch.package import fetch_pipeline_file, first_line
from components._shared.params import PARAMS

logger = logging.getLogger(__name__)

DEFAULT_LOCATION = PARAMS.vertex_location
# Appended to a refused-credentials sentence of a pipeline job (deploy passes its own hint).
SUBMIT_HINT = (
    "; the caller needs roles/aiplatform.user and iam.serviceAccounts.actAs on the pipeline's "
    "service account"
)


@dataclasses.dataclass
class VertexSettings:
    """Where and how to start a Vertex AI pipeline job (credentials: the environment's, unless given)."""

    project: str = ""
    location: str = DEFAULT_LOCATION
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

    def where(self) -> str:
        return f"Vertex AI ({self.project or 'project from the environment'}, {self.location})"


# --------------------------------------------------------------------------- errors


def error_parts(exc) -> tuple:
    """(HTTP code, canonical status, server message) of a google.api_core error. Over REST the
    exception class follows the HTTP status (403 -> Forbidden) and its message starts with the
    request URL; the JSON error body has the canonical status and the plain message."""
    code = getattr(exc.code, "value", exc.code)
    status = getattr(exc.grpc_status_code, "name", "")
    message = exc.message
    try:
        error = exc.response.json()["error"]
        status, message = error.get("status") or status, error.get("message") or message
    except Exception:  # not a REST response (gRPC, or a failed long-running operation)
        pass
    return code, status or getattr(exc.code, "name", ""), message


def vertex_error(
    exc: BaseException,
    where: str,
    step: str,
    error: type = TriggerError,
    hint: str = SUBMIT_HINT,
) -> PipelineError:
    """One sentence for a failed Vertex AI call: ``<where>: <step> failed (<code> <STATUS>: <message>)``.

    Args:
        where: ``Vertex AI (<project>, <location>)``.
        step: What was being done, e.g. ``submitting pipeline job x``.
        error: The :class:`PipelineError` subclass to return (TriggerError, DeployError).
        hint: Appended when the credentials were refused (401/403): the roles that are missing.
    """
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return error(
            f"no usable Google Cloud credentials for {where} ({first_line(str(exc))}); "
            "run on a service account or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, api.GoogleAPICallError):
        code, status, message = error_parts(exc)
        refused = isinstance(
            exc, (api.Unauthorized, api.Forbidden)
        )  # Unauthenticated, PermissionDenied
        return error(
            f"{where}: {step} failed ({code} {status}: {message}){hint if refused else ''}"
        )
    if isinstance(exc, (api.RetryError, OSError)):
        return error(f"cannot reach {where}: {step} failed ({first_line(str(exc))})")
    return error(f"{where}: {step} failed ({type(exc).__name__}: {first_line(str(exc))})")


# --------------------------------------------------------------------------- pipeline jobs


def _label_value(value: Any) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]


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
        raise vertex_error(exc, "Vertex AI", "building the pipeline job") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{settings.template} cannot run on Vertex AI: {first_line(str(exc))}"
        ) from exc


def vertex_start_run(
    settings: VertexSettings,
    job_id: Optional[str],
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
        raise vertex_error(exc, settings.where(), f"submitting pipeline job {job_id}") from exc
    return {
        **info,
        "status": "started",
        "resource_name": job.resource_name,
        "url": f"https://console.cloud.google.com/vertex-ai/locations/{settings.location}/pipelines/runs/{job_id}"
        f"?project={info['project']}",
    }
