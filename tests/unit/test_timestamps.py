"""Timestamps parsed in the served graph give the numbers training computed on the host."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components._shared.schema import column_values
from components._shared.timestamps import parse_timestamps, timestamp_strings

# What pandas' ISO 8601 parser takes and refuses: the graph must agree on every one.
CASES = [
    "2021-07-03", "2021-07-03T10:00", "2021-07-03 10:00:05", "2021-07-03T10:00:05.5",
    "2021-07-03T10:00:05.123456789123", "2021-07-03T10:00:05Z", "2021-07-03T10:00:05+02:00",
    "2021-07-03T10:00:05+0200", "2021-07-03T10:00:05+02", "2021-07-03T10:00-05:30",
    "2021-07-03T10:00:05 +02:00", "2021-07-03T10:00:05.+02:00", "2021-07-03T10:00:05-00:00",
    "2021-07-03T10:00:05+14:00", "2021-07-03T10:00:05+23:59", "2021-07-03T10:00:05.5Z",
    "2021-07-03T10:00+02", "2021-07-03T10:00:05 Z", "2021-07-03T10:00:05\t+02:00",
    "2021-07-03T10:00:05-0530", "2021-07-03T10:00:05+2:30", "2021-07-03T10:00:05.",
    "2021-07-03T10:5", "2021-07-03T10:00:5", "2021-07-03T5:3", "2021-07-03T10", "2021-07-3T10:00",
    "2021-7-3", "2021-07", "2021", "20210703", "20210703 10:00:05+02:00", " 2021-07-03",
    "\t2021-07-03", "2021-07-03 10:00:05.000001", "1969-12-31T23:59:59.999999999", "1970-01-01",
    "1900-03-01", "2000-02-29", "2020-02-29", "1677-09-22", "2262-04-11",
    # refused: NaN
    "", "garbage", "2021-02-29", "2100-02-29", "2021-13-01", "2021-00-10", "2021-07-00",
    "2021-07-03T24:00:00", "2021-07-03T23:59:60", "2021-07-03T10:60", "2021-07-03 ",
    "2021-07-03T10:00:05,5", "2021-07-03t10:00", "2021-07-03T10:00:05z", "2021-07-03T10:00:05UTC",
    "2021-07-03T10:00:05+25:00", "2021-07-03T10:00:05+24:00", "2021-07-03T10:00:05+02:60",
    "2021-07-03Z", "2021-07-03+02:00", "2021-07-03T5", "2021-07-03T5Z", "2021-07-03  10:00",
    "2021-07-03T10:00:05Z+01:00", "2021-07-03T10:00:05+00:00:00", "2021-07-03T10:00:05+",
    "2021-07-03T10:05.5", "202107", "2021-0703", "20211303", "1500-01-01", "2300-01-01", "0000-01-01",
]


def _graph_days(strings):
    from components._shared.timestamps import days_since_epoch

    return days_since_epoch(np.asarray(strings, dtype=object)).numpy()


def test_graph_parser_matches_the_training_parser_case_by_case():
    host = np.array([column_values(pd.Series([c]), "timestamp")[0] for c in CASES], dtype=np.float32)
    graph = _graph_days(CASES)
    assert graph.dtype == np.float32
    differ = [(c, h, g) for c, h, g in zip(CASES, host, graph, strict=True)
              if not (np.isnan(h) and np.isnan(g)) and h != g]
    assert differ == []
    assert np.isnan(graph[CASES.index("")]) and graph[CASES.index("1970-01-01")] == 0.0
    assert graph[CASES.index("2021-07-03T10:00:05+02:00")] == np.float32((18811 * 86400 + 8 * 3600 + 5) / 86400)


def test_random_date_times_and_zones_match_bit_for_bit():
    rng = np.random.default_rng(0)
    n = 3000
    ns = rng.integers(-2_000_000_000, 4_000_000_000, n) * 1_000_000_000 + rng.integers(0, 10**9, n) * (rng.random(n) < 0.5)
    stamps = pd.Series(pd.to_datetime(ns, unit="ns"))
    text = list(timestamp_strings(stamps))
    offsets = rng.integers(-14 * 4, 14 * 4, n) * 15
    zoned = [f"{t}{'+' if o >= 0 else '-'}{abs(o) // 60:02d}:{abs(o) % 60:02d}" if "T" in t and k % 3 == 0 else t
             for k, (t, o) in enumerate(zip(text, offsets, strict=True))]
    host = column_values(pd.Series(zoned, dtype="string"), "timestamp").astype(np.float32)
    np.testing.assert_array_equal(_graph_days(zoned), host)
    # Without zones the strings stand for exactly the datetimes they were written from.
    np.testing.assert_array_equal(_graph_days(text), column_values(stamps, "timestamp").astype(np.float32))


def test_a_zone_does_not_leak_into_the_next_rows():
    """pandas parses a zone-less time after a zoned one in that zone; each row must stand alone."""
    rows = ["2021-07-03 10:00", "2021-07-03T10:00:05+02:00", "2021-07-03 10:00", None]
    parsed = parse_timestamps(pd.Series(rows, dtype="string"))
    assert parsed[0] == parsed[2] == pd.Timestamp("2021-07-03 10:00")
    assert parsed[1] == pd.Timestamp("2021-07-03 08:00:05") and pd.isna(parsed[3])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series(pd.to_datetime(["2021-07-03", "2021-07-03 10:00:05.5", None], format="ISO8601")),
         ["2021-07-03", "2021-07-03T10:00:05.5", ""]),
        (pd.Series(pd.to_datetime(["2021-07-03 10:00"]).tz_localize("Europe/Paris")), ["2021-07-03T08:00:00"]),
        (pd.Series(["2021-07-03T10:00+02:00", None, pd.Timestamp("2021-07-04")], dtype=object), ["2021-07-03T10:00+02:00", "", "2021-07-04"]),
        (pd.Series(["2021-07-03", None], dtype="category"), ["2021-07-03", ""]),
    ],
)
def test_timestamp_strings_keep_the_files_text_and_write_datetimes_as_iso(values, expected):
    assert timestamp_strings(values).tolist() == expected
