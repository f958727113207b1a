"""A real HTTP server speaking the part of Prometheus' HTTP API a rollout reads, over recorded series.

- ``GET``/``POST /api/v1/query_range?query=&start=&end=&step=``: a matrix, evaluated as Prometheus
  evaluates a vector selector: at each ``start + k*step <= end``, each series' latest sample at or
  before that time and not older than the lookback (5 min); a series with no point is left out.
- ``GET``/``POST /api/v1/query?query=&time=``: a vector, the same rule at one time (default: now).

Queries are PromQL *vector selectors* (``name{label="v", label!="v", label=~"re", label!~"re"}``),
which is all the rollout sends; anything else answers 400 ``bad_data`` like Prometheus does for a
query it cannot parse. Answers use Prometheus' JSON shape (``{"status": "success", "data":
{"resultType", "result"}}``, sample values as strings, ``"+Inf"`` for an infinite bucket bound).

Series are given as a ``query_range`` answer's ``result`` list (``[{"metric": {"__name__": ...},
"values": [[t, "v"], ...]}]``), e.g. a JSON fixture recorded from a real server; ``shift`` moves
every timestamp (to replay a recording at the present). ``fail`` makes the next requests answer an
HTTP error. Every request is recorded (path and parameters).

    with PrometheusServer(series) as prom:
        PrometheusSource(prom.url, "churn-model").window("canary", t0, t1)
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import parse_qs, urlparse

from tests.fakes.http_server import FakeHttpServer

LOOKBACK = 300.0
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SELECTOR = re.compile(rf"\s*({_NAME})?\s*(?:\{{(.*)\}})?\s*")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class BadQuery(ValueError):
    pass


def parse_selector(query: str) -> list:
    """``[(label, op, value)]`` of a vector selector (the metric name as ``__name__ =``)."""
    m = _SELECTOR.fullmatch(query)
    if not m or not (m.group(1) or m.group(2)):
        raise BadQuery(f'1:1: parse error: unexpected input in {query!r}')
    out = [("__name__", "=", m.group(1))] if m.group(1) else []
    body = (m.group(2) or "").strip()
    pos = 0
    while pos < len(body):
        mm = _MATCHER.match(body, pos)
        if not mm:
            raise BadQuery(f"1:{pos + 1}: parse error: unexpected character inside braces in {query!r}")
        out.append((mm.group(1), mm.group(2), bytes(mm.group(3), "utf-8").decode("unicode_escape")))
        pos = mm.end()
    if not out:
        raise BadQuery("vector selector must contain at least one non-empty matcher")
    return out


def _matches(metric: dict, matchers: list) -> bool:
    for label, op, value in matchers:
        have = metric.get(label, "")
        if op == "=" and have != value or op == "!=" and have == value:
            return False
        if op == "=~" and not re.fullmatch(value, have) or op == "!~" and re.fullmatch(value, have):
            return False
    return True


class PrometheusServer(FakeHttpServer):
    thread_name = "fake-prometheus"

    def __init__(self, series: Optional[list] = None, shift: float = 0.0):
        self.series = []
        self.requests: list = []
        self.fail: Optional[int] = None  # HTTP status of every answer while set
        self._lock = threading.Lock()
        self.add(series or [], shift)

    def add(self, series: list, shift: float = 0.0) -> None:
        """Add recorded series (a ``query_range`` ``result`` list), timestamps moved by ``shift``."""
        with self._lock:
            for s in series:
                self.series.append({"metric": dict(s["metric"]),
                                    "values": sorted((float(t) + shift, str(v)) for t, v in s["values"])})

    def queries(self) -> list:
        return [r["query"] for r in self.requests]

    # ----------------------------------------------------------------- evaluation

    def _at(self, s: dict, t: float) -> Optional[tuple]:
        best = None
        for ts, v in s["values"]:
            if ts > t:
                break
            best = (ts, v)
        return best if best and t - best[0] <= LOOKBACK else None

    def _select(self, query: str) -> list:
        matchers = parse_selector(query)
        with self._lock:
            return [s for s in self.series if _matches(s["metric"], matchers)]

    def _query_range(self, q: dict) -> dict:
        start, end, step = float(q["start"]), float(q["end"]), _duration(q["step"])
        if end < start:
            raise BadQuery("end timestamp must not be before start time")
        if step <= 0:
            raise BadQuery("zero or negative query resolution step widths are not accepted")
        if (end - start) / step > 11000:
            raise BadQuery("exceeded maximum resolution of 11,000 points per timeseries")
        result = []
        for s in self._select(q["query"]):
            values, k = [], 0
            while start + k * step <= end + 1e-9:
                t = start + k * step
                got = self._at(s, t)
                if got:
                    values.append([round(t, 3), got[1]])
                k += 1
            if values:
                result.append({"metric": s["metric"], "values": values})
        return {"resultType": "matrix", "result": result}

    def _query(self, q: dict) -> dict:
        t = float(q.get("time") or time.time())
        result = []
        for s in self._select(q["query"]):
            got = self._at(s, t)
            if got:
                result.append({"metric": s["metric"], "value": [round(t, 3), got[1]]})
        return {"resultType": "vector", "result": result}

    # ----------------------------------------------------------------- HTTP

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if method == "POST":
            n = int(h.headers.get("Content-Length") or 0)
            q.update({k: v[-1] for k, v in parse_qs(h.rfile.read(n).decode()).items()})
        self.requests.append({"path": parsed.path, **q})
        if self.fail:
            return self._send(h, self.fail, {"status": "error", "errorType": "unavailable", "error": "stand-in failure"})
        routes = {"/api/v1/query_range": self._query_range, "/api/v1/query": self._query}
        if method not in ("GET", "POST") or parsed.path not in routes:
            return self._send(h, 404, {"status": "error", "errorType": "not_found", "error": "404 page not found"})
        try:
            if "query" not in q:
                raise BadQuery("invalid parameter \"query\": missing")
            data = routes[parsed.path](q)
        except (BadQuery, KeyError, ValueError) as exc:
            return self._send(h, 400, {"status": "error", "errorType": "bad_data", "error": str(exc)})
        self._send(h, 200, {"status": "success", "data": data})


def _duration(s: str) -> float:
    """A step as Prometheus accepts it: seconds (``15``, ``0.5``) or a duration (``15s``, ``1m``)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", s.strip())
    if not m:
        raise BadQuery(f"cannot parse {s!r} to a valid duration")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def load(path: str) -> list:
    """The ``result`` list of a recorded ``query_range`` answer file (or of several, concatenated)."""
    with open(path) as f:
        body = json.load(f)
    answers = body if isinstance(body, list) else [body]
    out = []
    for a in answers:
        out.extend(a["data"]["result"] if "data" in a else [a])
    return out

