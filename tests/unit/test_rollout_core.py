"""The rollout decision over recorded canary/stable series (tests/unit/data/rollout/*.json, in the
shape of Prometheus query_range answers with TF Serving's metric names): a healthy canary walks
10 -> 50 -> 100, a slow or failing canary and one with shifted scores roll back at the first step,
missing metrics hold and roll back only past the step's deadline."""

from __future__ import annotations

import json
import math
import os
from typing import Optional

import pytest

from components._shared.errors import ConfigError
from components.rollout.core import (
    HOLD,
    PROMOTE,
    ROLLBACK,
    Thresholds,
    Window,
    counter_increase,
    decide,
    histogram_quantile,
    parse_steps,
    score_ks,
    score_psi,
    window_from_series,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "rollout")
T0 = 1764590400  # first sample of every fixture
STEPS = {10: (T0, T0 + 600), 50: (T0 + 600, T0 + 1200)}


def _series(scenario: str) -> list:
    with open(os.path.join(DATA, f"{scenario}.json")) as f:
        return json.load(f)["data"]["result"]


def _window(series: list, role: str, lo: float, hi: float) -> Window:
    """What the four range queries of one version return over [lo, hi]."""
    def pick(name, keep=lambda m: True):
        return [{"metric": s["metric"], "values": [v for v in s["values"] if lo <= v[0] <= hi]}
                for s in series if s["metric"]["__name__"] == name and s["metric"]["role"] == role and keep(s["metric"])]

    count = ":tensorflow:serving:request_count"
    return window_from_series(pick(count), pick(count, lambda m: m["status"] != "OK"),
                              pick(":tensorflow:serving:request_latency_bucket"), pick("prediction_score_bucket"))


def _walk(scenario: str, thresholds: Optional[Thresholds] = None) -> list:
    thresholds = thresholds or Thresholds()
    series, out = _series(scenario), []
    for percent, (lo, hi) in STEPS.items():
        d = decide(percent, _window(series, "canary", lo, hi), _window(series, "stable", lo, hi), thresholds)
        out.append(d)
        if d.action != PROMOTE:
            break
    return out


def test_a_healthy_canary_walks_every_step():
    decisions = _walk("healthy")
    assert [d.action for d in decisions] == [PROMOTE, PROMOTE]
    assert "canary healthy at 10 %" in decisions[0].reason and "canary healthy at 50 %" in decisions[1].reason
    # the canary's server restarted halfway (counter reset): its requests still count, not a negative increase
    assert decisions[1].figures["canary_requests"] > 1000


def test_a_slow_canary_is_rolled_back_at_the_first_step_with_the_numbers():
    (d,) = _walk("slow")
    assert d.action == ROLLBACK
    assert d.reason.startswith("canary failed its check at 10 %: p99 latency")
    assert d.figures["canary_p99"] > 2 * d.figures["stable_p99"]


def test_a_canary_with_more_errors_is_rolled_back_at_the_first_step():
    (d,) = _walk("errors")
    assert d.action == ROLLBACK and "error rate 6.00 % vs stable 0.40 %" in d.reason


def test_a_canary_with_shifted_scores_is_rolled_back():
    (d,) = _walk("shifted_scores")
    assert d.action == ROLLBACK and "score PSI" in d.reason and d.figures["score_psi"] > 0.2
    # the same scores pass when the score check is off: it is the scores that failed
    assert [x.action for x in _walk("shifted_scores", Thresholds(max_score_psi=None))] == [PROMOTE, PROMOTE]


def test_missing_metrics_hold_and_roll_back_only_past_the_deadline():
    series = _series("missing")
    canary, stable = _window(series, "canary", *STEPS[10]), _window(series, "stable", *STEPS[10])
    held = decide(10, canary, stable, Thresholds())
    assert held.action == HOLD and held.reason.startswith("no metrics at 10 %: canary request count")
    late = decide(10, canary, stable, Thresholds(), past_deadline=True)
    assert late.action == ROLLBACK and late.reason.startswith("no metrics before the step's deadline")


def test_metrics_that_arrive_late_hold_then_promote():
    series = _series("late")
    assert decide(10, _window(series, "canary", *STEPS[10]), _window(series, "stable", *STEPS[10]),
                  Thresholds()).action == HOLD
    assert decide(50, _window(series, "canary", *STEPS[50]), _window(series, "stable", *STEPS[50]),
                  Thresholds()).action == PROMOTE


def test_too_few_requests_hold_never_promote():
    w = Window(requests=40, errors=0, latency_buckets={0.1: 40, math.inf: 40}, score_buckets={0.5: 20, math.inf: 40})
    d = decide(10, w, Window(1000, 1, {0.1: 1000, math.inf: 1000}, {0.5: 500, math.inf: 1000}), Thresholds())
    assert d.action == HOLD and "canary 40 and stable 1000 requests, 100 each needed" in d.reason


def test_empty_histograms_and_no_traffic_hold():
    stable = Window(1000, 1, {0.1: 1000, math.inf: 1000}, {0.5: 500, math.inf: 1000})
    empty = Window(500, 0, {0.1: 0, math.inf: 0}, {0.5: 0, math.inf: 0})  # series there, nothing observed
    d = decide(10, empty, stable, Thresholds())
    assert d.action == HOLD and d.reason == "no metrics at 10 %: canary latency, canary scores missing"
    idle = Window(0, 0, {0.1: 0, math.inf: 0}, {0.5: 0, math.inf: 0})
    assert decide(10, idle, stable, Thresholds(max_p99_ratio=None, max_score_psi=None, min_requests=0)).action == HOLD


def test_no_threshold_at_all_is_refused():
    with pytest.raises(ConfigError, match="no rollout threshold is set"):
        Thresholds(None, None, None, None, None).check()
    with pytest.raises(ConfigError, match="max_p99_ratio must be >= 1"):
        Thresholds(max_p99_ratio=0.5).check()


def test_series_arithmetic_matches_prometheus():
    # increase() counts a reset as a restart from 0
    assert counter_increase([[0, "10"], [15, "30"], [30, "5"], [45, "25"]]) == 20 + 5 + 20
    assert counter_increase([[0, "10"]]) is None
    # histogram_quantile: linear within the bucket; the highest finite bound for the +Inf bucket
    assert histogram_quantile(0.5, {0.1: 50, 0.2: 100, math.inf: 100}) == pytest.approx(0.1)
    assert histogram_quantile(0.75, {0.1: 50, 0.2: 100, math.inf: 100}) == pytest.approx(0.15)
    assert histogram_quantile(0.99, {0.1: 50, math.inf: 100}) == 0.1
    same = {0.5: 50, 1.0: 100, math.inf: 100}
    assert score_psi(same, same) == 0 and score_ks(same, same) == 0
    assert score_ks(same, {0.5: 10, 1.0: 100, math.inf: 100}) == pytest.approx(0.4)


@pytest.mark.parametrize("bad", ["", "10,5,100", "10,50", "0,100", "10,abc,100", "50,150", "100"])
def test_bad_steps_are_one_sentence(bad):
    with pytest.raises(ConfigError, match="rollout steps must"):
        parse_steps(bad)
    assert parse_steps("10, 50,100") == [10, 50, 100]
