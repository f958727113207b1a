"""Canary and stable metrics of a Vertex AI endpoint from Cloud Monitoring (``timeSeries.list``, v3 REST).

Vertex AI writes, per deployed model (``metric.labels.deployed_model_id``) of an endpoint
(``resource.type="aiplatform.googleapis.com/Endpoint"``, ``resource.labels.endpoint_id``):

- ``aiplatform.googleapis.com/prediction/online/prediction_count``: DELTA count of predictions;
- ``aiplatform.googleapis.com/prediction/online/error_count``: DELTA count of failed ones;
- ``aiplatform.googleapis.com/prediction/online/prediction_latencies``: DELTA distribution in ms,
  ``metric.labels.latency_type="total"`` (also ``model`` and ``overhead``).

There is no score distribution among them, so a Vertex rollout checks error rate and latency only
(:func:`components.rollout.run.rollout` refuses score thresholds with this source). Points of a
DELTA series cover disjoint intervals: a window sums the points that end inside it.

``KFP_TF_GATE_CLOUD_MONITORING_API`` points the source at a stand-in instead (anonymous), as
``KFP_TF_GATE_VERTEX_API_ENDPOINT`` does the Vertex AI API: the tests set it, nothing else does.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from typing import Optional

from components._shared.errors import ConfigError
from components.rollout.core import Window
from components.rollout.prometheus import MetricsUnavailable

logger = logging.getLogger(__name__)

API = "https://monitoring.googleapis.com"
PREFIX = "aiplatform.googleapis.com/prediction/online/"
API_ENV = "KFP_TF_GATE_CLOUD_MONITORING_API"


def _rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bucket_bounds(options: dict) -> list:
    """Upper bounds of a Distribution's finite buckets after the underflow one (``bucketOptions``:
    linear, exponential or explicit, as Cloud Monitoring describes them)."""
    if "exponentialBuckets" in options:
        o = options["exponentialBuckets"]
        return [float(o["scale"]) * float(o["growthFactor"]) ** i for i in range(int(o["numFiniteBuckets"]) + 1)]
    if "linearBuckets" in options:
        o = options["linearBuckets"]
        return [float(o.get("offset", 0)) + float(o["width"]) * i for i in range(int(o["numFiniteBuckets"]) + 1)]
    if "explicitBuckets" in options:
        return [float(b) for b in options["explicitBuckets"]["bounds"]]
    raise ValueError(f"unknown bucket options {sorted(options)}")


def cumulative(bounds: list, counts: list) -> dict:
    """``{upper bound: count at or below}`` (+inf last) from a Distribution's ``bucketCounts`` (bucket 0 is
    the underflow below ``bounds[0]``, the last the overflow; missing trailing counts are 0)."""
    counts = [int(c) for c in counts] + [0] * (len(bounds) + 1 - len(counts))
    out, total = {}, 0
    for le, c in zip(bounds + [math.inf], counts, strict=True):
        total += c
        out[le] = total
    return out


class CloudMonitoringSource:
    """Reads canary and stable windows of a Vertex AI endpoint's deployed models.

    Args:
        project: Project of the endpoint (id or number).
        deployed_models: ``() -> (endpoint_id, canary deployed model id, stable deployed model id)``,
            asked at every window (the target knows them: :meth:`VertexEndpointTarget.deployed_models`).
        api_url: Cloud Monitoring API root (a test stand-in's URL); default ``$KFP_TF_GATE_CLOUD_MONITORING_API``
            (then anonymous), else Google's.
        credentials: google.auth credentials; None for the environment's.
        timeout: HTTP timeout per request (seconds).
    """

    def __init__(self, project: str, deployed_models, api_url: Optional[str] = None, credentials=None,
                 timeout: float = 30.0):
        if not project:
            raise ConfigError("Cloud Monitoring metrics need the endpoint's project")
        if not api_url:
            api_url = os.environ.get(API_ENV, "").strip()
            if api_url and credentials is None:
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()
            api_url = api_url or API
        self.project, self._ids, self.api_url, self.timeout = project, deployed_models, api_url.rstrip("/"), timeout
        self._credentials = credentials
        self._session = None

    def _http(self):
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            creds = self._credentials
            if creds is None:
                creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/monitoring.read"])
            self._session = AuthorizedSession(creds)
        return self._session

    def list_time_series(self, flt: str, start: float, end: float) -> list:
        """Every ``TimeSeries`` matching ``flt`` with points in ``(start, end]`` (all pages)."""
        import requests

        out, token = [], ""
        while True:
            params = {"filter": flt, "interval.startTime": _rfc3339(start), "interval.endTime": _rfc3339(end),
                      "view": "FULL", **({"pageToken": token} if token else {})}
            try:
                resp = self._http().get(f"{self.api_url}/v3/projects/{self.project}/timeSeries", params=params,
                                        timeout=self.timeout)
            except (requests.RequestException, OSError) as exc:
                raise MetricsUnavailable(f"Cloud Monitoring did not answer: {exc}") from None
            try:
                body = resp.json()
            except ValueError:
                body = {}
            if resp.status_code == 400:
                raise ConfigError(f"Cloud Monitoring refused the filter {flt!r}: "
                                  f"{(body.get('error') or {}).get('message', resp.text[:200])}")
            if resp.status_code != 200:
                raise MetricsUnavailable(f"Cloud Monitoring answered HTTP {resp.status_code} "
                                         f"({(body.get('error') or {}).get('message', '')})")
            out.extend(body.get("timeSeries") or [])
            token = body.get("nextPageToken") or ""
            if not token:
                return out

    def window(self, role: str, start: float, end: float) -> Window:
        """One deployed model's :class:`Window` over ``[start, end]`` (no score histogram)."""
        endpoint_id, canary, stable = self._ids()
        deployed = canary if role == "canary" else stable
        if not deployed:
            return Window()
        base = (f'resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id="{endpoint_id}" '
                f'AND metric.labels.deployed_model_id="{deployed}"')
        counts = {}
        for name in ("prediction_count", "error_count"):
            series = self.list_time_series(f'metric.type="{PREFIX}{name}" AND {base}', start, end)
            counts[name] = sum(float(p["value"].get("int64Value") or p["value"].get("doubleValue") or 0)
                               for s in series for p in s.get("points") or []) if series else None
        latency = None
        for s in self.list_time_series(f'metric.type="{PREFIX}prediction_latencies" AND {base} '
                                       f'AND metric.labels.latency_type="total"', start, end):
            for p in s.get("points") or []:
                d = p["value"].get("distributionValue") or {}
                if not d.get("bucketCounts"):
                    continue
                cum = cumulative(bucket_bounds(d["bucketOptions"]), d["bucketCounts"])
                latency = latency or {}
                for le, c in cum.items():  # ms -> s
                    key = le / 1000.0
                    latency[key] = latency.get(key, 0) + c
        requests_ = counts["prediction_count"]
        errors = counts["error_count"] if counts["error_count"] is not None else (0.0 if requests_ is not None else None)
        return Window(requests_, errors, latency, None)

