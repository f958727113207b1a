"""Canary and stable metrics from Prometheus' HTTP API (``/api/v1/query_range``, ``/api/v1/query``).

One step's :class:`~components.rollout.core.Window` per version comes from four range queries over
the step's time range — raw counters and histogram buckets, whose increases (with counter resets)
:func:`components.rollout.core.window_from_series` computes, so a recorded answer can be replayed.

Metric names (``FLAVORS``):

- ``tfserving``: what TF Serving exports on ``/monitoring/prometheus/metrics`` (enabled by a
  ``--monitoring_config_file`` with ``prometheus_config { enable: true }``):
  ``:tensorflow:serving:request_count{model_name, status}`` (status ``"OK"`` or the error code) and
  ``:tensorflow:serving:request_latency_bucket{model_name, API, entrypoint, le}`` (microseconds).
  TF Serving has no version label on these: the canary and the stable version run as separate
  servers (pods), told apart by a label the Prometheus scrape config gives each target
  (``--canary-selector`` / ``--stable-selector``, default ``role="canary"`` / ``role="stable"``).
- ``kserve``: Knative's queue-proxy beside each InferenceService revision (canary and default are
  separate revisions): ``revision_request_count{revision_name, response_code_class}`` and
  ``revision_request_latencies_bucket{revision_name, le}`` (milliseconds); select the canary by
  its ``revision_name`` (the InferenceService status' ``latestCreatedRevision``) and stable by the
  ``previousRolledoutRevision``.
- Scores, both flavors: ``prediction_score_bucket{le}``, a histogram of the model's output score.
  Neither TF Serving nor Knative exports it: it comes from whatever sees the answers — a KServe
  transformer or the client/gateway, with ``prometheus_client.Histogram("prediction_score", ...)``
  and buckets 0.0, 0.1, ..., 1.0 — carrying the same canary/stable labels. Without it, set
  ``max_score_psi``/``max_score_ks`` to None or every step holds (missing metrics never promote).

Vertex AI endpoints publish their metrics to Cloud Monitoring, not to Prometheus: see
:mod:`components.rollout.cloud_monitoring` (``--metrics vertex``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from components._shared.errors import ConfigError, RolloutError
from components.rollout.core import Window, window_from_series

logger = logging.getLogger(__name__)


class MetricsUnavailable(RolloutError):
    """Prometheus did not answer (network, 5xx, timeout): the step holds, it never promotes."""

    transient = True


@dataclasses.dataclass(frozen=True)
class MetricNames:
    """The series one flavor reads; ``model_label`` is matched to the model name when set."""

    requests: str
    errors_matcher: str  # the extra label matcher that picks failed requests from ``requests``
    latency_bucket: str
    score_bucket: str = "prediction_score_bucket"
    model_label: Optional[str] = None
    latency_unit: str = "s"


LATENCY_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
FLAVORS = {
    "tfserving": MetricNames(":tensorflow:serving:request_count", 'status!="OK"',
                             ":tensorflow:serving:request_latency_bucket", model_label="model_name", latency_unit="us"),
    "kserve": MetricNames("revision_request_count", 'response_code_class="5xx"',
                          "revision_request_latencies_bucket", latency_unit="ms"),
}


def selector(metric: str, *matchers: str) -> str:
    """``metric{m1,m2}`` from the non-empty matchers (``metric`` alone when none)."""
    parts = [m.strip().strip(",") for m in matchers if m and m.strip().strip(",")]
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


class PrometheusSource:
    """Reads canary and stable windows from a Prometheus server.

    Args:
        url: Base URL of the Prometheus server (``http://prometheus:9090``; a path prefix such as
            ``/prometheus`` is kept).
        model: Model name (matched by the flavor's ``model_label``).
        flavor: ``tfserving`` or ``kserve`` (:data:`FLAVORS`).
        canary_selector / stable_selector: PromQL label matchers that pick each version's series.
        resolution: ``step`` of the range queries (seconds).
        timeout: HTTP timeout per query (seconds).
    """

    def __init__(self, url: str, model: str, flavor: str = "tfserving", canary_selector: str = 'role="canary"',
                 stable_selector: str = 'role="stable"', resolution: float = 15.0, timeout: float = 10.0):
        if flavor not in FLAVORS:
            raise ConfigError(f"unknown metrics flavor {flavor!r}; one of {', '.join(FLAVORS)}")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"the Prometheus URL must start with http:// or https://, got {url!r}")
        self.url, self.model, self.names = url.rstrip("/"), model, FLAVORS[flavor]
        self.selectors = {"canary": canary_selector, "stable": stable_selector}
        self.resolution, self.timeout = float(resolution), float(timeout)

    # ----------------------------------------------------------------- the HTTP API

    def _get(self, path: str, params: dict) -> list:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read().decode())
            except ValueError:
                body = {}
            if exc.code in (400, 422):  # bad_data / execution: the query is wrong, another try repeats it
                raise ConfigError(f"Prometheus refused the query {params.get('query')!r}: "
                                  f"{body.get('error') or exc.reason}") from None
            raise MetricsUnavailable(f"Prometheus at {self.url} answered HTTP {exc.code} "
                                     f"({body.get('error') or exc.reason})") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {exc}") from None
        if body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus at {self.url} answered {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def query_range(self, promql: str, start: float, end: float, step: Optional[float] = None) -> list:
        """``data.result`` of ``/api/v1/query_range`` (a matrix: ``[{"metric", "values"}]``)."""
        return self._get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step or self.resolution:g}"})

    def query(self, promql: str, at: Optional[float] = None) -> list:
        """``data.result`` of ``/api/v1/query`` (a vector: ``[{"metric", "value"}]``)."""
        return self._get("/api/v1/query", {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})})

    # ----------------------------------------------------------------- windows

    def queries(self, role: str) -> dict:
        """The four PromQL selectors of one version (``role``: canary or stable)."""
        n, sel = self.names, self.selectors[role]
        model = f'{n.model_label}="{self.model}"' if n.model_label else ""
        return {
            "requests": selector(n.requests, model, sel),
            "errors": selector(n.requests, model, n.errors_matcher, sel),
            "latency": selector(n.latency_bucket, model, sel),
            "scores": selector(n.score_bucket, model, sel) if n.score_bucket else "",
        }

    def window(self, role: str, start: float, end: float) -> Window:
        """One version's :class:`Window` over ``[start, end]`` (Unix seconds).

        Raises:
            MetricsUnavailable: Prometheus did not answer.
            ConfigError: Prometheus refused a query (its message says why).
        """
        q = self.queries(role)
        # one sample before the window too, so the first increase inside it is counted
        lo = start - self.resolution
        res = {k: (self.query_range(v, lo, end) if v else []) for k, v in q.items()}
        logger.info("%s: %s", role, {k: len(v) for k, v in res.items()})
        w = window_from_series(res["requests"], res["errors"], res["latency"], res["scores"])
        if w.latency_buckets:  # seconds, whatever the server's unit, so thresholds mean one thing
            scale = LATENCY_SCALE[self.names.latency_unit]
            w = dataclasses.replace(w, latency_buckets={le * scale: c for le, c in w.latency_buckets.items()})
        return w
