"""The Prometheus client of the rollout against the Prometheus API stand-in (a real HTTP server
answering query_range/query over recorded series as Prometheus evaluates a vector selector)."""

from __future__ import annotations

import math
import os
import socket

import pytest

from components._shared.errors import ConfigError
from components.rollout.prometheus import MetricsUnavailable, PrometheusSource
from tests.fakes.prometheus_server import PrometheusServer, load

DATA = os.path.join(os.path.dirname(__file__), "data", "rollout")
T0 = 1764590400


@pytest.fixture(scope="module")
def prom():
    with PrometheusServer(load(os.path.join(DATA, "healthy.json"))) as server:
        yield server


def test_a_window_reads_requests_errors_and_histograms_in_seconds(prom):
    w = PrometheusSource(prom.url, "churn-model").window("stable", T0, T0 + 600)
    assert w.requests == pytest.approx(18 * 600, rel=0.01)  # 18 requests/s for 10 minutes
    assert w.errors == pytest.approx(0.004 * 18 * 600, abs=2)
    assert 0.015 < w.p99 < 0.025  # TF Serving's microseconds, read as seconds (median 6 ms)
    assert max(w.score_buckets) == math.inf and w.score_buckets[math.inf] == pytest.approx(w.requests, rel=0.01)


def test_the_queries_name_each_flavors_metrics():
    tf = PrometheusSource("http://p:9090", "m").queries("canary")
    assert tf["errors"] == ':tensorflow:serving:request_count{model_name="m",status!="OK",role="canary"}'
    ks = PrometheusSource("http://p:9090", "m", "kserve", canary_selector='revision_name="m-predictor-00002"')
    assert ks.queries("canary") == {
        "requests": 'revision_request_count{revision_name="m-predictor-00002"}',
        "errors": 'revision_request_count{response_code_class="5xx",revision_name="m-predictor-00002"}',
        "latency": 'revision_request_latencies_bucket{revision_name="m-predictor-00002"}',
        "scores": 'prediction_score_bucket{revision_name="m-predictor-00002"}'}


def test_no_series_is_missing_data_not_zero(prom):
    w = PrometheusSource(prom.url, "another-model").window("canary", T0, T0 + 600)
    assert (w.requests, w.latency_buckets, w.score_buckets) == (None, None, None)


def test_a_query_prometheus_refuses_is_a_config_error_with_its_message(prom):
    src = PrometheusSource(prom.url, "churn-model", canary_selector='role=="canary"')
    with pytest.raises(ConfigError, match="Prometheus refused the query .*parse error"):
        src.window("canary", T0, T0 + 600)


def test_prometheus_down_or_failing_is_metrics_unavailable(prom):
    prom.fail = 503
    try:
        with pytest.raises(MetricsUnavailable, match="answered HTTP 503"):
            PrometheusSource(prom.url, "churn-model").window("canary", T0, T0 + 600)
    finally:
        prom.fail = None
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MetricsUnavailable, match="did not answer"):
        PrometheusSource(f"http://127.0.0.1:{port}", "churn-model", timeout=2).window("canary", T0, T0 + 600)
