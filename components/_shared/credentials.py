"""MLflow credentials for tasks that cannot get them from a Kubernetes secret (Vertex AI).

On Kubeflow, kfp-kubernetes puts ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
into the pod from a Kubernetes secret. Vertex AI Pipelines have no such mechanism, so a
Vertex task carries only the *name* of a Secret Manager secret version in
``KFP_TF_GATE_MLFLOW_SECRET`` (set at compile time with ``--vertex-mlflow-secret``), and
:func:`load_mlflow_credentials` reads it with the run's service account (Application
Default Credentials) before the first MLflow call. The secret's payload is JSON:
``{"username": "...", "password": "..."}``. Credentials already in the environment win.

``KFP_TF_GATE_SECRET_MANAGER_ENDPOINT`` (an ``http(s)://host:port`` URL) points the client at
another Secret Manager REST endpoint with anonymous credentials: a fake server in tests.
"""

from __future__ import annotations

import json
import os
import re

from components._shared.errors import ConfigError

SECRET_ENV = "KFP_TF_GATE_MLFLOW_SECRET"
ENDPOINT_ENV = "KFP_TF_GATE_SECRET_MANAGER_ENDPOINT"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TIMEOUT = 30.0
_RESOURCE = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+(/versions/[^/\s]+)?$")


def secret_version_name(secret: str) -> str:
    """``projects/P/secrets/S[/versions/V]`` as a version resource (default version ``latest``).

    Raises:
        ConfigError: ``secret`` is not a Secret Manager secret or secret version resource name.
    """
    name = (secret or "").strip()
    if not _RESOURCE.match(name):
        raise ConfigError(f"{SECRET_ENV}={name!r} is not a Secret Manager secret: expected "
                          f"projects/PROJECT/secrets/NAME[/versions/VERSION]")
    return name if "/versions/" in name else f"{name}/versions/latest"


def load_mlflow_credentials() -> bool:
    """Put MLflow's username and password from the Secret Manager secret named in
    ``KFP_TF_GATE_MLFLOW_SECRET`` into ``os.environ``.

    Does nothing (returns False) when both variables are already set or no secret is named.

    Raises:
        ConfigError: one sentence naming the secret (never its contents) when it is missing,
            not readable by the service account, or not the expected JSON.
    """
    if os.environ.get(USERNAME_ENV) and os.environ.get(PASSWORD_ENV):
        return False
    secret = os.environ.get(SECRET_ENV, "").strip()
    if not secret:
        return False
    name = secret_version_name(secret)
    payload = _access(name)
    try:
        data = json.loads(payload.decode("utf-8"))
        username, password = data["username"], data["password"]
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise TypeError
    except (UnicodeDecodeError, ValueError, TypeError, KeyError):
        raise ConfigError(f"the MLflow credentials secret {name} is not JSON with non-empty string fields "
                          f"\"username\" and \"password\"") from None
    os.environ[USERNAME_ENV] = username
    os.environ[PASSWORD_ENV] = password
    return True


def _access(name: str) -> bytes:
    """The payload of secret version ``name``, read with the real Secret Manager client (REST)."""
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import secretmanager

    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    kwargs: dict = {"transport": "rest"}
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        kwargs.update(credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})
    hint = f"(the secret named by {SECRET_ENV}, compile option --vertex-mlflow-secret)"
    try:
        client = secretmanager.SecretManagerServiceClient(**kwargs)
        response = client.access_secret_version(request={"name": name}, timeout=TIMEOUT)
    except DefaultCredentialsError:
        raise ConfigError(f"no Google credentials to read the MLflow credentials secret {name} {hint}: "
                          f"run the pipeline with a service account") from None
    except exceptions.NotFound:
        raise ConfigError(f"the MLflow credentials secret {name} does not exist {hint}: create it or "
                          f"compile with the right secret") from None
    except (exceptions.Forbidden, exceptions.Unauthorized) as exc:  # PermissionDenied, Unauthenticated too
        raise ConfigError(f"the run's service account may not read the MLflow credentials secret {name} "
                          f"(HTTP {_code(exc)}): grant it roles/secretmanager.secretAccessor on that "
                          f"secret") from None
    except exceptions.GoogleAPICallError as exc:
        raise ConfigError(f"reading the MLflow credentials secret {name} failed "
                          f"(HTTP {_code(exc)}, {type(exc).__name__})") from None
    except exceptions.RetryError:
        raise ConfigError(f"Secret Manager did not answer in time for the MLflow credentials secret "
                          f"{name}") from None
    except OSError as exc:  # requests' connection errors
        raise ConfigError(f"Secret Manager is unreachable for the MLflow credentials secret {name} "
                          f"({type(exc).__name__})") from None
    return response.payload.data


def _code(exc) -> str:
    return str(int(exc.code)) if exc.code is not None else "?"
