"""Errors that end a run with one sentence naming the problem, and which errors can pass.

Everything a user can cause (bad data, bad settings, a model that fails a hard check)
raises a subclass of :class:`PipelineError`. The CLI prints ``str(error)`` and exits
non-zero; inside a KFP task the message is the last line of the task's log.

Retries: :func:`is_transient` classifies an error as one that can pass (network, 5xx, ...) or
not; :func:`retry_transient` retries calls that can pass in process; :func:`fail_fast` makes a
task's KFP retries fail at once after a deterministic error.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Optional, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class PipelineError(Exception):
    """A problem the user can act on; its message is one sentence.

    ``transient``: False for a statement about the inputs, which another attempt would repeat. A
    subclass for a condition that can pass (e.g. a lock another run holds) sets it to True.
    """

    transient: bool = False


class DataError(PipelineError):
    """The input data cannot be used (missing file or column, wrong types, empty)."""


class ValidationError(PipelineError):
    """Validation found blocking anomalies; the message lists each one."""


class ModelError(PipelineError):
    """Training or export produced a model that must not ship (NaN loss, parity)."""


class DeployError(PipelineError):
    """A deploy step failed; the serving model and champion alias are unchanged."""


class ConfigError(PipelineError):
    """A setting is invalid (unknown target, bad threshold)."""


class TriggerError(PipelineError):
    """Starting a run failed (host unreachable, credentials refused); nothing was recorded."""


class ServingStateError(PipelineError):
    """What is served, the serving state and the registry disagree; nothing is decided or moved."""


class RolloutError(PipelineError):
    """A rollout stopped: a check failed (traffic is back on stable) or a target refused a change."""


# --- which errors can pass -------------------------------------------------------------------
#
# KFP's retryPolicy (max_retry_count and backoffs, nothing else) retries every failed attempt:
# neither the pipeline spec nor Kubeflow's Argo compilation nor Vertex AI can say "only on these
# errors". So the classification lives here: :func:`is_transient` says whether an error can pass
# (network, timeouts, HTTP 408/429/5xx, a service saying "try later"), :func:`retry_transient`
# retries such a call in process, and :func:`fail_fast` makes the KFP retries of a task whose
# attempt failed with any *other* error fail at once with the same sentence. Nothing here imports
# a client library: exceptions are recognised by their module, class name and status code.

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
# OSError numbers of a connection that broke or could not be made (a new attempt may succeed).
# ENOSPC is not one: the same task with the same data fills the same disk again.
_TRANSIENT_ERRNO = frozenset({errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT,
                              errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET,
                              errno.EPIPE, errno.EAGAIN})
_TRANSIENT_NAMES = {
    # requests (its exceptions are OSErrors: HTTPError too, decided by its status below)
    "requests": {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError"},
    "urllib3": {"ProtocolError", "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "TimeoutError",
                "ResponseError", "IncompleteRead"},
    "http": {"IncompleteRead", "RemoteDisconnected"},
    "aiohttp": {"ClientConnectionError", "ServerDisconnectedError", "ClientPayloadError", "ServerTimeoutError"},
    "google": {"TransportError", "DeadlineExceeded", "RetryError"},  # google.auth / google.api_core
    "gcsfs": {"ChecksumError"},
    "tensorflow": {"UnavailableError", "AbortedError", "DeadlineExceededError"},
    # botocore (s3fs, for s3:// and minio:// roots): its ConnectionError family is not the builtin one
    "botocore": {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"},
}
# MLflow error codes that mean "the server cannot answer now" (MLflow maps 429 to RESOURCE_EXHAUSTED,
# 503 to TEMPORARILY_UNAVAILABLE, 504 to DEADLINE_EXCEEDED).
_MLFLOW_TRANSIENT = frozenset({"TEMPORARILY_UNAVAILABLE", "SERVICE_UNDER_MAINTENANCE",
                               "WORKSPACE_TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED",
                               "RESOURCE_EXHAUSTED", "ABORTED", "COULD_NOT_ACQUIRE_LOCK"})
_MLFLOW_HTTP_CODE = re.compile(r"failed with error code (\d{3})\b")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it, as a traceback shows them (``from``, or raised while handling)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _http_status(exc: BaseException) -> Optional[int]:
    """The HTTP status an exception of a known client library carries, or None."""
    top = type(exc).__module__.split(".")[0]
    if top == "requests":
        status = getattr(getattr(exc, "response", None), "status_code", None)
    elif top in ("google", "gcsfs", "urllib"):  # api_core's GoogleAPICallError.code, gcsfs HttpError.code, HTTPError.code
        status = getattr(exc, "code", None)
    elif top in ("aiohttp", "kfp_server_api"):
        status = getattr(exc, "status", None)
    elif top == "botocore":
        status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    else:
        return None
    return status if isinstance(status, int) else None


def _one_transient(exc: BaseException) -> bool:
    if isinstance(exc, PipelineError):  # ours state a problem of the inputs (their cause may not be)
        return exc.transient
    names = {cls.__name__ for cls in type(exc).__mro__}
    top = type(exc).__module__.split(".")[0]
    if "certificate verify failed" in str(exc).lower():  # an SSLError is a ConnectionError in requests
        return False
    if names & _TRANSIENT_NAMES.get(top, set()):
        return True
    status = _http_status(exc)
    if status is not None:  # the KFP client reports "no answer at all" as status 0
        return status in TRANSIENT_HTTP or (status == 0 and top == "kfp_server_api")
    if top == "mlflow":
        code = str(getattr(exc, "error_code", ""))
        if code in _MLFLOW_TRANSIENT:
            return True
        # The server answered 500/502 (a body MLflow parsed, or its "failed with error code 502" message).
        # A locally raised MlflowException without a code is INTERNAL_ERROR too: that alone says nothing.
        match = _MLFLOW_HTTP_CODE.search(str(getattr(exc, "message", exc)))
        return (match is not None and int(match.group(1)) in TRANSIENT_HTTP) or (
            code == "INTERNAL_ERROR" and "RestException" in names)
    if top in ("sqlite3", "sqlalchemy"):  # another writer holds the SQLite store (a local MLflow registry)
        return "locked" in str(exc).lower() and "OperationalError" in names
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, socket.gaierror):  # a DNS lookup that may answer later (not "no such name")
        return exc.errno == socket.EAI_AGAIN
    if isinstance(exc, OSError) and top in ("builtins", "socket", "ssl", "http", "urllib"):
        return exc.errno in _TRANSIENT_ERRNO or any(_one_transient(r) for r in _reasons(exc))
    return False


def _reasons(exc: BaseException) -> list:
    reason = getattr(exc, "reason", None)  # urllib.error.URLError wraps the socket error in .reason
    return [reason] if isinstance(reason, BaseException) else []


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an error that can pass: the same call may succeed if made again later.

    True for connection failures and timeouts, HTTP 408/429/500/502/503/504 from requests, urllib3,
    urllib, google-api-core, gcsfs, aiohttp, botocore or the KFP client, MLflow errors whose code or
    status says the server is unavailable or overloaded (a bare ``MlflowException`` is not), and a
    locked SQLite store. A :class:`PipelineError` is not transient by itself (it states a decision about
    the inputs), but one raised from a transient error is: our cores wrap e.g. an unreachable registry
    into one sentence, and that registry may answer the next attempt. Everything else (bad data, a
    bug, a full disk, refused credentials, a missing object) is deterministic.
    """
    return any(_one_transient(e) for e in _chain(exc)) or any(
        _one_transient(r) for e in _chain(exc) for r in _reasons(e))


def retry_transient(fn: Callable[[], T], attempts: int = 3, first_delay: float = 1.0, factor: float = 2.0,
                    what: str = "", sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn()``; on a transient error (:func:`is_transient`) try again, up to ``attempts`` calls in all.

    For calls that can pass and whose client does not retry by itself (MLflow's REST client retries
    429/5xx and connection errors seven times, gcsfs six: do not wrap those). A deterministic error,
    or the last transient one, is raised at once.

    Args:
        fn: The call, without arguments (use a lambda or functools.partial).
        attempts: Calls in all (1: no retry).
        first_delay: Seconds before the second call; multiplied by ``factor`` before each further one.
        what: What the call does, for the log line.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            logger.warning("%s failed (attempt %d of %d, transient: %s: %s); again in %.0f s",
                           what or getattr(fn, "__name__", "call"), attempt, attempts, type(exc).__name__,
                           _first_line(exc), delay)
            sleep(delay)
            delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover


# --- fail fast across the KFP retries of one task --------------------------------------------

MARKER_SUFFIX = ".attempt-error.json"


def attempt_marker(uri: str) -> str:
    """Where a task's attempts leave their deterministic error: beside its output artifact ``uri``.

    An output artifact's URI is the same for every attempt of one task (kfp.local: the task root; Kubeflow:
    provisioned once by the driver, before the first attempt; Vertex AI: ``{job_id}/{task_id}/{output}``),
    and it is an object-store URI, not the pod-local ``Artifact.path`` a failed attempt loses.
    """
    return uri.rstrip("/") + MARKER_SUFFIX if uri else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fs_open(uri: str, mode: str):
    # minio:// (KFP's default pipeline root), s3://, gs://, paths
    from components._shared.object_store import open_file

    return open_file(uri, mode)


def _read_marker(uri: str) -> Optional[dict]:
    try:
        with _fs_open(uri, "r") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # an unreadable marker must not be what fails the task
        logger.warning("cannot read the attempt marker %s (%s): running this attempt", uri, _first_line(exc))
        return None


def _write_marker(uri: str, exc: BaseException) -> None:
    record = {"type": type(exc).__name__, "message": str(exc), "pid": os.getpid(), "time": time.time()}
    try:
        with _fs_open(uri, "w") as fh:
            json.dump(record, fh)
    except Exception as write_exc:  # the task fails either way; later attempts then redo the work
        logger.warning("cannot write the attempt marker %s (%s): a retry will run in full", uri,
                       _first_line(write_exc))


def _same_error(record: dict) -> PipelineError:
    """The earlier attempt's error again: the same class when it is one of ours, the same sentence."""
    cls = {c.__name__: c for c in _pipeline_error_classes()}.get(record.get("type", ""))
    message = record.get("message", "")
    return cls(message) if cls is not None else PipelineError(f"{record.get('type', 'Error')}: {message}")


def _pipeline_error_classes() -> list:
    out, todo = [], [PipelineError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@contextlib.contextmanager
def fail_fast(marker_uri: str) -> Iterator[None]:
    """Run a task attempt so that a deterministic error is not repeated by the task's KFP retries.

    If ``marker_uri`` exists, an earlier attempt of this task failed with a deterministic error: raise
    that error again at once (same sentence), without doing the work. If the body raises an error that
    is not transient (:func:`is_transient`), record it at ``marker_uri`` before it propagates. A transient
    error, or a pod that is killed (preemption, OOM: no exception at all), leaves no marker, so the
    retry runs in full. ``marker_uri`` empty (a direct call): no-op. Writing or reading the marker never
    becomes the task's error; if the store refuses, retries simply run in full, as without this.

    Args:
        marker_uri: A path or fsspec URI that is the same for every attempt of one task and outlives the
            pod, e.g. :func:`attempt_marker` of an output artifact's ``uri``.
    """
    if not marker_uri:
        yield
        return
    record = _read_marker(marker_uri)
    if record is not None:
        logger.error("an earlier attempt of this task failed with a deterministic error (%s): failing at once "
                     "instead of repeating it", marker_uri)
        raise _same_error(record)
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            _write_marker(marker_uri, exc)
        raise
