"""Writes the rollout fixtures: canary and stable series in the shape of a Prometheus
``query_range`` answer (TF Serving's metric names, 30 s resolution, 20 minutes from T0).

Synthesized, not scraped: request counters grow at a fixed rate, latency and score histogram
buckets grow by the expected count below each bound (lognormal latency in microseconds with
TF Serving's bucket bounds 10 * 1.8**k; logistic-normal scores with buckets 0.1 .. 1.0).
Regenerate with ``python tests/unit/data/rollout/make_series.py``.
"""

import json
import math
import os

T0 = 1764590400  # 2025-12-01T12:00:00Z
STEP, POINTS = 30, 41
LATENCY_LE = [10 * 1.8 ** k for k in range(8, 20)]  # ~1.1 ms .. ~700 ms
SCORE_LE = [round(0.1 * k, 1) for k in range(1, 11)]
MODEL = "churn-model"


def phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def lognormal_cdf(x, median, sigma):
    return phi((math.log(x) - math.log(median)) / sigma)


def score_cdf(s, mu, sd):
    if s >= 1:
        return 1.0
    return phi((math.log(s / (1 - s)) - mu) / sd)


def counter(labels, rate, reset_at=None):
    vals, total = [], 0.0
    for k in range(POINTS):
        if reset_at is not None and k == reset_at:
            total = 0.0  # the server restarted: its counters start again from 0
        vals.append([T0 + k * STEP, f"{int(round(total))}"])
        total += rate * STEP
    return {"metric": labels, "values": vals}


def version(role, rps, error_share, latency_median_us, score_mu, reset_at=None, start=0):
    base = {"job": "tf-serving", "role": role, "instance": f"{role}-0:8501", "model_name": MODEL}
    out = [counter({"__name__": ":tensorflow:serving:request_count", **base, "status": "OK"},
                   rps * (1 - error_share), reset_at)]
    if error_share:
        out.append(counter({"__name__": ":tensorflow:serving:request_count", **base, "status": "INTERNAL"},
                           rps * error_share, reset_at))
    for le in LATENCY_LE + [math.inf]:
        share = 1.0 if le == math.inf else lognormal_cdf(le, latency_median_us, 0.45)
        out.append(counter({"__name__": ":tensorflow:serving:request_latency_bucket", **base, "API": "predict",
                            "entrypoint": "REST", "le": "+Inf" if le == math.inf else f"{le:.6g}"},
                           rps * share, reset_at))
    for le in SCORE_LE + [math.inf]:
        share = 1.0 if le == math.inf else score_cdf(le, score_mu, 1.2)
        out.append(counter({"__name__": "prediction_score_bucket", **base,
                            "le": "+Inf" if le == math.inf else f"{le:g}"}, rps * share, reset_at))
    for s in out:
        s["values"] = s["values"][start:]
    return out


def answer(series):
    return {"status": "success", "data": {"resultType": "matrix", "result": series}}


STABLE = dict(rps=18.0, error_share=0.004, latency_median_us=6000, score_mu=-1.4)
SCENARIOS = {
    # canary like stable, with a restart of its server halfway (a counter reset)
    "healthy": version("stable", **STABLE) + version("canary", 2.0, 0.004, 6200, -1.38, reset_at=20),
    # canary 2.6x slower
    "slow": version("stable", **STABLE) + version("canary", 2.0, 0.004, 15600, -1.4),
    # canary failing 6 % of its requests
    "errors": version("stable", **STABLE) + version("canary", 2.0, 0.06, 6000, -1.4),
    # canary scores shifted up (its positives share grows)
    "shifted_scores": version("stable", **STABLE) + version("canary", 2.0, 0.004, 6000, 0.2),
    # the canary's server is not scraped: no canary series at all
    "missing": version("stable", **STABLE),
    # the canary is scraped only from the 20th sample on (10 minutes late)
    "late": version("stable", **STABLE) + version("canary", 2.0, 0.004, 6100, -1.4, start=20),
}

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for name, series in SCENARIOS.items():
        with open(os.path.join(here, f"{name}.json"), "w") as f:
            json.dump(answer(series), f, separators=(",", ":"))
            f.write("\n")
