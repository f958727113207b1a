"""A whole rollout over the stand-ins: the real TF Serving record target (deploy's serving base and
an MLflow registry, changed only through deploy's transition) and the Prometheus API stand-in
serving recorded series; a simulated clock, so no step waits.

healthy -> 10 %, 50 %, 100 % and the candidate is stable and champion; slow -> rolled back at the
first step, stable serving, the registry says why; missing metrics -> holds, then rolls back past
the step's deadline; metrics that arrive late -> holds, then goes on."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from components._shared import registry
from components._shared.serving_state import labels
from components.deploy.core import deploy
from components.deploy.serving import read_state
from components.rollout.core import Thresholds, parse_steps
from components.rollout.prometheus import PrometheusSource
from components.rollout.run import PROMOTED, ROLLED_BACK, run_rollout
from components.rollout.targets import TFServingTarget, TrafficTarget
from tests.fakes.prometheus_server import PrometheusServer, load

pytestmark = pytest.mark.slow  # TensorFlow loads the SavedModels deploy and approve check

MODEL = "churn-model"  # the model_name label of the recorded series
DATA = os.path.join(os.path.dirname(__file__), "data", "rollout")
T0 = 1764590400


def _saved_model(dest: str, bias: float) -> str:
    """A two-line SavedModel with a warm-up request, as deploy and approve check it."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from components._shared.warmup import write_warmup

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.b = tf.Variable(bias)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"probability": tf.sigmoid(x + self.b)}

    module = Tiny()
    tf.saved_model.save(module, dest, signatures={"serving_default": module.serve})
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=MODEL, signature_name="serving_default"))
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([0.5], dtype=np.float32)))
    write_warmup(dest, [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))])
    return dest


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout-models")
    return [_saved_model(str(root / f"v{i}"), b) for i, b in ((1, 0.1), (2, 0.2))]


@pytest.fixture
def served(models, tracking_uri, tmp_path):
    """Version 1 stable, version 2 the canary (deployed with approval required)."""
    base = str(tmp_path / "serving")
    for i, folder in enumerate(models):
        deploy(folder, MODEL, tracking_uri, base, artifacts={}, card=f"# {MODEL} v{i + 1}\n", require_approval=i == 1)
    assert labels(read_state(base, MODEL)) == {"stable": 1, "previous": None, "canary": 2}
    return base


class Clock:
    """Simulated time: sleep moves it on."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def _rollout(scenario, tracking_uri, base, **kw):
    lines = []
    target = TFServingTarget(MODEL, 2, tracking_uri, base)
    assert isinstance(target, TrafficTarget)
    clock = Clock(T0)
    with PrometheusServer(load(os.path.join(DATA, f"{scenario}.json"))) as prom:
        result = run_rollout(target, PrometheusSource(prom.url, MODEL), parse_steps("10,50,100"), Thresholds(),
                             interval=600, report=lines.append, clock=clock, sleep=clock.sleep, **kw)
        queries = prom.queries()
    return result, lines, queries


def _tags(tracking_uri, version) -> dict:
    return dict(registry.configure(tracking_uri).get_model_version(MODEL, str(version)).tags)


def _alias(tracking_uri, alias):
    ref = registry.get_alias(registry.configure(tracking_uri), MODEL, alias)
    return int(ref.version) if ref else None


def test_a_healthy_canary_walks_to_100_percent_and_becomes_stable_and_champion(served, tracking_uri):
    result, lines, queries = _rollout("healthy", tracking_uri, served)
    assert result.status == PROMOTED, lines
    assert [(c["percent"], c["action"]) for c in result.checks] == [(10, "promote"), (50, "promote")]
    assert lines[-1].startswith("100 %: promoted (stable 2, no canary)")
    assert labels(read_state(served, MODEL)) == {"stable": 2, "previous": 1, "canary": None}
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "candidate")) == (2, None)
    assert _tags(tracking_uri, 2)["rollout_status"] == "promoted"
    # what was asked of Prometheus: TF Serving's metric names, the canary and stable selectors
    assert ':tensorflow:serving:request_count{model_name="churn-model",status!="OK",role="canary"}' in queries
    assert ':tensorflow:serving:request_latency_bucket{model_name="churn-model",role="stable"}' in queries


def test_a_slow_canary_is_rolled_back_at_the_first_step_and_the_registry_says_why(served, tracking_uri):
    result, lines, _ = _rollout("slow", tracking_uri, served)
    assert result.status == ROLLED_BACK
    assert [(c["percent"], c["action"]) for c in result.checks] == [(10, "rollback")]
    assert result.reason.startswith("canary failed its check at 10 %: p99 latency")
    assert labels(read_state(served, MODEL)) == {"stable": 1, "previous": None, "canary": None}
    assert (_alias(tracking_uri, "champion"), _alias(tracking_uri, "candidate")) == (1, None)
    tags = _tags(tracking_uri, 2)
    assert tags["rollout_status"] == "rolled_back" and tags["rollout_reason"] == result.reason
    assert tags["deploy_status"].startswith("rolled back: canary failed its check at 10 %")
    # a repeated rollback (a retried task) changes nothing more
    TFServingTarget(MODEL, 2, tracking_uri, served).rollback(result.reason)
    assert labels(read_state(served, MODEL)) == {"stable": 1, "previous": None, "canary": None}


def test_missing_metrics_hold_the_canary_then_roll_back_past_the_deadline(served, tracking_uri):
    result, lines, _ = _rollout("missing", tracking_uri, served, step_timeout=1200, poll=300)
    assert [c["action"] for c in result.checks] == ["hold", "hold", "rollback"], lines
    assert all(c["percent"] == 10 for c in result.checks)
    assert result.status == ROLLED_BACK and result.reason.startswith("no metrics before the step's deadline")
    assert labels(read_state(served, MODEL))["stable"] == 1 and _tags(tracking_uri, 2)["rollout_status"] == "rolled_back"


def test_prometheus_down_holds_the_canary_never_promotes(served, tracking_uri):
    lines = []
    clock = Clock(T0)
    with PrometheusServer(load(os.path.join(DATA, "healthy.json"))) as prom:
        prom.fail = 503  # the series are there, but Prometheus answers 503 to every query
        result = run_rollout(TFServingTarget(MODEL, 2, tracking_uri, served), PrometheusSource(prom.url, MODEL),
                             [10, 100], Thresholds(), interval=600, step_timeout=900, poll=300,
                             report=lines.append, clock=clock, sleep=clock.sleep)
    assert [c["action"] for c in result.checks] == ["hold", "rollback"], lines
    assert "answered HTTP 503" in result.checks[0]["reason"]
    assert result.status == ROLLED_BACK and labels(read_state(served, MODEL))["stable"] == 1


def test_metrics_that_arrive_late_hold_then_the_rollout_goes_on(served, tracking_uri):
    result, lines, _ = _rollout("late", tracking_uri, served, step_timeout=1800, poll=300)
    assert [(c["percent"], c["action"]) for c in result.checks] == [(10, "hold"), (10, "promote"), (50, "promote")]
    assert result.status == PROMOTED and labels(read_state(served, MODEL))["stable"] == 2


@pytest.mark.parametrize("scenario", ["healthy", "errors"])
def test_the_rollout_command_prints_a_line_per_step_and_exits_non_zero_when_rolled_back(
        scenario, served, tracking_uri, tmp_path, capsys):
    import time

    from pipelines.__main__ import main

    series = load(os.path.join(DATA, f"{scenario}.json"))
    # the recording replayed as if its last sample were now; each check reads the last 10 minutes
    with PrometheusServer(series, shift=time.time() - (T0 + 1200)) as prom:
        code = main(["rollout", "--model-name", MODEL, "--prometheus-url", prom.url, "--interval", "0s",
                     "--window", "600s", "--runs-dir", str(tmp_path / "absent"), "--mlflow-tracking-uri", tracking_uri,
                     "--serving-base", served])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "10 %: traffic set (stable 1, canary 2 (label 'canary'; clients choose the label)); checking in 0 s"
    if scenario == "healthy":
        assert code == 0 and [x.split(":")[1].strip() for x in lines[1:4:2]] == ["promote", "promote"]
        assert lines[-1] == "100 %: promoted (stable 2, no canary)" and "canary promoted after 2 check(s)" in err
    else:
        assert code == 2 and lines[1].startswith("10 %: rollback: canary failed its check at 10 %: error rate")
        assert re.match(r"error: canary failed its check at 10 %: error rate 6\.\d\d % vs stable 0\.4\d %", err)
        assert labels(read_state(served, MODEL)) == {"stable": 1, "previous": None, "canary": None}


def test_the_component_fails_with_the_sentence_and_writes_its_report_when_rolled_back(
        served, tracking_uri, tmp_path):
    import time

    from kfp.dsl import Artifact, Metrics

    from components._shared import io
    from components._shared.errors import RolloutError
    from components.rollout import rollout_model

    report, metrics = Artifact(uri=str(tmp_path / "report.json")), Metrics(uri=str(tmp_path / "metrics"))
    with PrometheusServer(load(os.path.join(DATA, "shifted_scores.json")), shift=time.time() - (T0 + 1200)) as prom:
        with pytest.raises(RolloutError, match=r"^canary failed its check at 10 %: score PSI 1\.\d+ against stable"):
            rollout_model.python_func(report=report, metrics=metrics, model_name=MODEL, prometheus_url=prom.url,
                                      mlflow_tracking_uri=tracking_uri, serving_base_dir=served, interval="0s",
                                      window="600s")
    assert io.read_json(report.path)["status"] == "rolled_back" and report.metadata["status"] == "rolled_back"
    assert labels(read_state(served, MODEL)) == {"stable": 1, "previous": None, "canary": None}
    assert _tags(tracking_uri, 2)["rollout_status"] == "rolled_back"
