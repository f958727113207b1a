"""A real HTTP server speaking Cloud Monitoring's ``projects.timeSeries.list`` (v3 REST) over given series.

``GET /v3/projects/{project}/timeSeries?filter=&interval.startTime=&interval.endTime=&pageSize=&pageToken=``:
the series whose metric/resource match every ``key="value"`` term of the filter (joined by ``AND``;
keys ``metric.type``, ``resource.type``, ``metric.labels.K``, ``resource.labels.K``), each with the
points whose ``interval.endTime`` lies in ``(startTime, endTime]``, newest first as the API returns
them; series without such points are left out; ``nextPageToken`` pages by series. A filter it
cannot parse, or no ``interval.endTime``, answers 400 in Google's JSON error shape; ``fail`` makes
every answer that HTTP status. Every request is recorded.

Series are ``TimeSeries`` JSON as the API returns them (``metric``, ``resource``, ``metricKind``,
``valueType``, ``points: [{"interval": {"startTime", "endTime"}, "value": {...}}]``).
"""

from __future__ import annotations

import datetime
import re
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import parse_qs, urlparse

from tests.fakes.http_server import FakeHttpServer

_TERM = re.compile(r'\s*([a-z_]+(?:\.[a-z_]+)*(?:\.[A-Za-z0-9_]+)?)\s*=\s*"([^"]*)"\s*')


def _time(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def parse_filter(flt: str) -> list:
    terms = []
    for part in re.split(r"\s+AND\s+", flt.strip()):
        m = _TERM.fullmatch(part)
        if not m:
            raise ValueError(f"Field filter had an invalid value: {part!r}")
        terms.append((m.group(1), m.group(2)))
    return terms


def _field(series: dict, key: str) -> Optional[str]:
    if key in ("metric.type", "resource.type"):
        return series[key.split(".")[0]].get("type")
    kind, _, label = key.partition(".labels.")
    return (series.get(kind) or {}).get("labels", {}).get(label) if label else None


class CloudMonitoringServer(FakeHttpServer):
    thread_name = "fake-cloud-monitoring"

    def __init__(self, series: Optional[list] = None, page_size: int = 100):
        self.series = list(series or [])
        self.page_size = page_size
        self.requests: list = []
        self.fail: Optional[int] = None

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.requests.append({"path": parsed.path, **q})
        m = re.fullmatch(r"/v3/projects/([^/]+)/timeSeries", parsed.path)
        if self.fail:
            return self._error(h, self.fail, "stand-in failure")
        if method != "GET" or not m:
            return self._error(h, 404, f"no such method {method} {parsed.path}")
        try:
            terms = parse_filter(q.get("filter", ""))
            if "interval.endTime" not in q:
                raise ValueError("Field interval.endTime had an invalid value: a time interval is required")
            end = _time(q["interval.endTime"])
            start = _time(q["interval.startTime"]) if q.get("interval.startTime") else end
        except (ValueError, KeyError) as exc:
            return self._error(h, 400, str(exc))
        found = []
        for s in self.series:
            if all(_field(s, k) == v for k, v in terms):
                points = [p for p in s["points"] if start < _time(p["interval"]["endTime"]) <= end]
                if points:
                    found.append({**s, "points": sorted(points, key=lambda p: p["interval"]["endTime"], reverse=True)})
        first = int(q.get("pageToken") or 0)
        size = min(int(q.get("pageSize") or self.page_size), self.page_size)
        body: dict = {"timeSeries": found[first:first + size]} if found else {}
        if first + size < len(found):
            body["nextPageToken"] = str(first + size)
        self._send(h, 200, body)

    def _error(self, h, status: int, message: str) -> None:
        codes = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 503: "UNAVAILABLE"}
        self._send(h, status, {"error": {"code": status, "message": message, "status": codes.get(status, "UNKNOWN")}})
