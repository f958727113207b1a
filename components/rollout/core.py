"""The rollout decision: canary vs stable over one traffic step's metrics, as plain Python.

Input: for one step, the canary's and the stable version's :class:`Window` (requests, errors,
latency histogram buckets, score histogram buckets over the step's time range), built from metric
series (:func:`window_from_series` reads Prometheus ``query_range`` answers; any source that has
counters and cumulative histogram buckets fits). Output: a :class:`Decision` — ``promote`` (to the
next step), ``hold`` (not enough data yet) or ``rollback`` — with one sentence saying why in numbers.

Safe by default: missing metrics or too few requests never promote; they hold, and past the
step's deadline they roll back with the reason "no metrics". No thresholds configured is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

from components._shared.errors import ConfigError

PROMOTE, HOLD, ROLLBACK = "promote", "hold", "rollback"
PSI_EPSILON = 1e-4  # share given to an empty bucket, so PSI stays finite (the usual convention)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What a canary may show against stable over one step and still move on.

    Attributes:
        max_error_rate_increase: Largest canary error rate minus stable error rate (0.01 = one
            percentage point). None disables the check.
        max_p99_ratio: The canary's p99 latency may be up to this multiple of stable's ...
        max_p99_increase: ... or this much more (in the histogram's unit), whichever is larger.
            Both None disable the latency check.
        max_score_psi: Largest population stability index of the canary's score histogram against
            stable's. None disables it.
        max_score_ks: Largest Kolmogorov-Smirnov distance between the two score histograms' CDFs
            (at the bucket bounds). None disables it.
        min_requests: Requests each of canary and stable must have served in the step before any
            check is believed; fewer holds the step.
    """

    max_error_rate_increase: Optional[float] = 0.01
    max_p99_ratio: Optional[float] = 1.5
    max_p99_increase: Optional[float] = None
    max_score_psi: Optional[float] = 0.2
    max_score_ks: Optional[float] = None
    min_requests: int = 100

    def check(self) -> Thresholds:
        """Raises ConfigError for a negative threshold or when every check is disabled."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and (not isinstance(v, (int, float)) or math.isnan(v) or v < 0):
                raise ConfigError(f"rollout threshold {f.name} must be a number >= 0, got {v!r}")
        if self.max_p99_ratio is not None and self.max_p99_ratio < 1:
            raise ConfigError(f"rollout threshold max_p99_ratio must be >= 1, got {self.max_p99_ratio}")
        if all(getattr(self, n) is None for n in ("max_error_rate_increase", "max_p99_ratio", "max_p99_increase",
                                                  "max_score_psi", "max_score_ks")):
            raise ConfigError("no rollout threshold is set, so no canary could ever be checked; "
                              "set at least one of the error-rate, latency or score thresholds")
        return self


@dataclasses.dataclass(frozen=True)
class Window:
    """One version's traffic over one step: counts are increases over the step's time range.

    Attributes:
        requests: Requests served (None: the metric is missing).
        errors: Requests that failed (None: missing).
        latency_buckets: Cumulative histogram ``{upper bound in seconds: count}`` (``inf``
            included) of request latency; None when missing.
        score_buckets: Cumulative histogram of the model's scores; None when missing.
    """

    requests: Optional[float] = None
    errors: Optional[float] = None
    latency_buckets: Optional[Mapping[float, float]] = None
    score_buckets: Optional[Mapping[float, float]] = None

    @property
    def error_rate(self) -> Optional[float]:
        if self.requests is None or self.errors is None or self.requests <= 0:
            return None
        return self.errors / self.requests

    @property
    def p99(self) -> Optional[float]:
        return histogram_quantile(0.99, self.latency_buckets) if self.latency_buckets else None


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do after a step: ``action`` (promote/hold/rollback), ``reason`` (one sentence) and
    the figures it rests on."""

    action: str
    reason: str
    figures: dict = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- series arithmetic


def counter_increase(samples: Sequence[Sequence]) -> Optional[float]:
    """Increase of a counter over ``[[t, value], ...]`` (Prometheus' ``values``), counting resets as
    Prometheus' ``increase`` does (a drop means the counter restarted from 0). None below 2 samples."""
    vals = [float(v) for _, v in samples if not math.isnan(float(v))]
    if len(vals) < 2:
        return None
    total = 0.0
    for prev, cur in zip(vals, vals[1:], strict=False):
        total += cur - prev if cur >= prev else cur
    return total


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> Optional[float]:
    """Prometheus' ``histogram_quantile`` over cumulative buckets ``{le: count}``: linear within the
    bucket holding the rank; the highest finite bound when the rank falls in ``+Inf``."""
    items = sorted((float(le), float(c)) for le, c in buckets.items())
    if not items or items[-1][0] != math.inf or items[-1][1] <= 0:
        return None
    total = items[-1][1]
    rank = q * total
    lower_le, lower_c = 0.0, 0.0
    for le, c in items:
        if c >= rank:
            if le == math.inf:
                return lower_le
            if c == lower_c:
                return le
            return lower_le + (le - lower_le) * (rank - lower_c) / (c - lower_c)
        lower_le, lower_c = le, c
    return items[-2][0] if len(items) > 1 else None


def _shares(buckets: Mapping[float, float], bounds: Sequence[float]) -> list:
    cum = [float(buckets.get(b, 0.0)) for b in bounds]
    counts = [max(c - p, 0.0) for p, c in zip([0.0] + cum[:-1], cum, strict=True)]
    total = sum(counts)
    return [c / total for c in counts] if total > 0 else []


def score_psi(expected: Mapping[float, float], actual: Mapping[float, float]) -> Optional[float]:
    """Population stability index of ``actual`` against ``expected`` over their common bucket
    bounds (cumulative histograms); None when either is empty or they share no bounds."""
    bounds = sorted(set(expected) & set(actual))
    e, a = _shares(expected, bounds), _shares(actual, bounds)
    if not e or not a:
        return None
    e = [max(x, PSI_EPSILON) for x in e]
    a = [max(x, PSI_EPSILON) for x in a]
    return sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))


def score_ks(expected: Mapping[float, float], actual: Mapping[float, float]) -> Optional[float]:
    """Largest distance between the two histograms' CDFs at their common bucket bounds."""
    bounds = sorted(set(expected) & set(actual))
    if not bounds:
        return None
    te, ta = float(expected[bounds[-1]]), float(actual[bounds[-1]])
    if te <= 0 or ta <= 0:
        return None
    return max(abs(float(expected[b]) / te - float(actual[b]) / ta) for b in bounds)


def _le(series_metric: Mapping[str, str]) -> float:
    le = series_metric.get("le")
    if le is None:
        raise ValueError("a histogram bucket series has no 'le' label")
    return math.inf if le in ("+Inf", "Inf", "inf") else float(le)


def sum_increase(result: Iterable[Mapping]) -> Optional[float]:
    """Sum of the increases of every series of a ``query_range`` matrix (None: no series)."""
    incs = [counter_increase(s.get("values") or []) for s in result]
    incs = [x for x in incs if x is not None]
    return sum(incs) if incs else None


def bucket_increase(result: Iterable[Mapping]) -> Optional[dict]:
    """``{le: increase}`` summed over the series of a ``*_bucket`` matrix (None: no series)."""
    out: dict = {}
    for s in result:
        inc = counter_increase(s.get("values") or [])
        if inc is not None:
            le = _le(s.get("metric") or {})
            out[le] = out.get(le, 0.0) + inc
    return out or None


def window_from_series(requests: Optional[list], errors: Optional[list], latency: Optional[list],
                       scores: Optional[list]) -> Window:
    """A :class:`Window` from the ``data.result`` lists of four ``query_range`` answers (None or []
    for a query that returned nothing). A request counter with series but no error series means no
    errors (an error counter appears only once a request fails)."""
    req = sum_increase(requests or [])
    err = sum_increase(errors or [])
    if err is None and req is not None:
        err = 0.0
    return Window(req, err, bucket_increase(latency or []), bucket_increase(scores or []))


# --------------------------------------------------------------------------- the decision


def _fmt(x: Optional[float], pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.2f} %" if pct else f"{x:.4g}"


def _ms(seconds: Optional[float]) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f} ms"


def decide(percent: float, canary: Window, stable: Window, thresholds: Thresholds,
           past_deadline: bool = False) -> Decision:
    """The decision after a step at which the canary had ``percent`` % of traffic.

    ``past_deadline``: the step's deadline has passed; a step that would hold rolls back instead.
    """
    thresholds.check()
    figures = {
        "percent": percent,
        "canary_requests": canary.requests, "stable_requests": stable.requests,
        "canary_error_rate": canary.error_rate, "stable_error_rate": stable.error_rate,
        "canary_p99": canary.p99, "stable_p99": stable.p99,
    }
    at = f"at {percent:g} %"

    # 1. enough data? Never promote on missing data.
    missing = [name for name, ok in (
        ("canary request count", canary.requests is not None),
        ("stable request count", stable.requests is not None),
        # an empty histogram (series there, no observation) is as missing as no series
        ("canary latency", canary.p99 is not None or _off_latency(thresholds)),
        ("stable latency", stable.p99 is not None or _off_latency(thresholds)),
        ("canary scores", _observed(canary.score_buckets) or _off_scores(thresholds)),
        ("stable scores", _observed(stable.score_buckets) or _off_scores(thresholds)),
    ) if not ok]
    hold = None
    if missing:
        hold = f"no metrics {at}: {', '.join(missing)} missing"
    elif min(canary.requests, stable.requests) < max(thresholds.min_requests, 1):  # no traffic says nothing
        hold = (f"not enough traffic {at}: canary {canary.requests:g} and stable {stable.requests:g} requests, "
                f"{thresholds.min_requests} each needed")

    # 2. the checks, only on enough data (a handful of requests says nothing about a rate).
    failures = []
    if thresholds.max_error_rate_increase is not None and canary.error_rate is not None \
            and stable.error_rate is not None and not hold:
        if canary.error_rate - stable.error_rate > thresholds.max_error_rate_increase:
            failures.append(f"error rate {_fmt(canary.error_rate, True)} vs stable {_fmt(stable.error_rate, True)} "
                            f"(at most +{_fmt(thresholds.max_error_rate_increase, True)})")
    if not _off_latency(thresholds) and canary.p99 is not None and stable.p99 is not None and not hold:
        limit = max(stable.p99 * (thresholds.max_p99_ratio or 1.0), stable.p99 + (thresholds.max_p99_increase or 0.0))
        figures["p99_limit"] = limit
        if canary.p99 > limit:
            failures.append(f"p99 latency {_ms(canary.p99)} vs stable {_ms(stable.p99)} (at most {_ms(limit)})")
    if canary.score_buckets and stable.score_buckets and not hold:
        psi, ks = score_psi(stable.score_buckets, canary.score_buckets), score_ks(stable.score_buckets, canary.score_buckets)
        figures.update(score_psi=psi, score_ks=ks)
        if thresholds.max_score_psi is not None and psi is not None and psi > thresholds.max_score_psi:
            failures.append(f"score PSI {_fmt(psi)} against stable (at most {_fmt(thresholds.max_score_psi)})")
        if thresholds.max_score_ks is not None and ks is not None and ks > thresholds.max_score_ks:
            failures.append(f"score KS distance {_fmt(ks)} against stable (at most {_fmt(thresholds.max_score_ks)})")

    if failures:
        return Decision(ROLLBACK, f"canary failed its check {at}: " + "; ".join(failures), figures)
    if hold:
        if past_deadline:
            return Decision(ROLLBACK, f"no metrics before the step's deadline ({hold})", figures)
        return Decision(HOLD, hold, figures)
    return Decision(PROMOTE, f"canary healthy {at}: error rate {_fmt(canary.error_rate, True)} vs "
                             f"{_fmt(stable.error_rate, True)}, p99 {_ms(canary.p99)} vs {_ms(stable.p99)}"
                             + (f", score PSI {_fmt(figures.get('score_psi'))}" if 'score_psi' in figures else "")
                             + f" over {canary.requests:g} canary requests", figures)


def _observed(buckets: Optional[Mapping[float, float]]) -> bool:
    return bool(buckets) and max(buckets.values()) > 0


def _off_latency(t: Thresholds) -> bool:
    return t.max_p99_ratio is None and t.max_p99_increase is None


def _off_scores(t: Thresholds) -> bool:
    return t.max_score_psi is None and t.max_score_ks is None


def parse_steps(steps: str) -> list:
    """``"10,50,100"`` -> ``[10.0, 50.0, 100.0]``: increasing, within (0, 100], ending at 100, with at
    least one step below 100.

    Raises:
        ConfigError: One sentence naming the bad step.
    """
    try:
        out = [float(s) for s in str(steps).replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"rollout steps must be comma-separated percentages like 10,50,100, got {steps!r}") from None
    if not out or any(not 0 < p <= 100 for p in out) or out != sorted(set(out)) or out[-1] != 100:
        raise ConfigError(f"rollout steps must be increasing percentages in (0, 100] ending at 100, got {steps!r}")
    if len(out) < 2:  # 100 alone would promote with no check at all
        raise ConfigError(f"rollout steps must give the canary at least one share below 100 % to check it on, "
                          f"got {steps!r}")
    return out
