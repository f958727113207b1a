"""Timestamps: ISO 8601 strings -> days since 1970-01-01 UTC, on the host and inside the served graph.

Training sees a timestamp column as datetimes (Arrow parsed the file) or as strings that
:func:`parse_timestamps` parses with pandas; :func:`components._shared.schema.column_values`
then makes it float days since the epoch: int64 nanoseconds, ``float64 / 86400e9``, float32 in
the model. The served SavedModel takes the same strings (:func:`days_since_epoch` parses them with
TensorFlow string and integer ops only, civil-from-days arithmetic on int64, so TF Serving needs
no Python and no custom op) and :func:`timestamp_strings` writes datetimes back as such strings
for warm-up requests and parity checks. TFLite takes the numbers, not the strings.

Accepted, as pandas' ISO 8601 parser accepts them (a test compares the two on a list of cases):

* ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` (month and day may have one digit) or ``YYYYMMDD``, then
  optionally ``T`` or one space and ``HH[:MM[:SS[.fraction]]]`` (the hour may have one digit when
  minutes follow, minute and second may have one digit; the fraction is read to the nanosecond,
  further digits are dropped);
* after a time, an optional zone: ``Z`` or ``+HH``, ``+HHMM``, ``+HH:MM`` (``-`` likewise), with
  optional whitespace before it; the value is converted to UTC. A string without a zone is UTC;
* leading whitespace (pandas ignores it); nothing may follow the value.

Anything else (an empty string, ``2021-02-30``, ``25:00``, trailing text, times without colons
such as ``T1000``, a year outside pandas' nanosecond range 1677-2262) is missing (NaT on the host,
NaN in the graph): the model imputes it, as training imputed a missing date.
"""

from __future__ import annotations

_DATE = r"\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?"
_TIME = r"(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?)?(?:\s*(Z|[+-]\d{1,2}(?::?\d{1,2})?))?)?"
PATTERN = _DATE + _TIME  # eight groups: year, month, day, hour, minute, second, fraction, zone
_ZONE = r"([+-])(\d{1,2}):?(\d{0,2})"
_BASIC_DATE = (r"^(\s*\d{4})(\d{2})(\d{2})([T ].*)?$", r"\1-\2-\3\4")  # YYYYMMDD -> YYYY-MM-DD
# A one-digit hour needs minutes after it (pandas refuses "2021-07-03T5", takes "2021-07-03T5:30").
_LONE_DIGIT_HOUR = _DATE + r"[T ]\d(?:\s*(?:Z|[+-].*))?"
# A time followed by a zone, as the end of a string (the host parses zoned and zone-less apart).
_ZONED = r"[T ]\d{1,2}(?::\d{1,2}){0,2}(?:\.\d*)?\s*(?:Z|[+-]\d{1,2}(?::?\d{1,2})?)$"
# int64 nanoseconds (pandas' datetime64[ns]) hold seconds in this range; beyond it pandas gives NaT.
_MIN_SECONDS, _MAX_SECONDS = -9_223_372_036, 9_223_372_035



def parse_timestamps(series):
    """Strings (or date objects) -> naive UTC datetime64[ns] Series; NaT where unparseable.

    Strings with a zone and strings without are parsed apart: in one call pandas (2.3) applies the
    last zone it saw to later zone-less times, so a value would depend on the rows before it, and
    the served model parses each row alone.
    """
    import pandas as pd

    text = series.astype("string")
    zoned = text.str.contains(_ZONED, regex=True, na=False).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
    for part in (zoned, ~zoned):
        if part.any():
            parsed = pd.to_datetime(text[part], errors="coerce", format="ISO8601", utc=True)
            out[part] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return out


def _iso(values):
    """ISO 8601 strings of naive datetime64 values: the date alone at midnight, else the time to the
    nanosecond without trailing zeros; "" for NaT."""
    import numpy as np
    import pandas as pd

    text = pd.Series(np.datetime_as_string(np.asarray(values, dtype="datetime64[ns]"), unit="ns"))
    text = text.str.replace(r"T00:00:00\.0{9}$", "", regex=True).str.replace(r"\.0{9}$", "", regex=True)
    text = text.str.replace(r"(\.\d*?)0+$", r"\1", regex=True)
    return text.where(text != "NaT", "").to_numpy(dtype=object)


def timestamp_strings(series):
    """What a client sends for a timestamp column: its strings as they are (the training file's
    format), datetimes as ISO 8601 in UTC; "" for missing. A numpy object array of str."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return _iso(series.to_numpy(dtype="datetime64[ns]"))
    out = []
    for v in series.astype(object):
        if isinstance(v, str):
            out.append(v)
        elif v is None or (not hasattr(v, "isoformat") and pd.isna(v)) or v is pd.NaT:
            out.append("")
        else:  # datetime, date or Timestamp objects
            t = pd.Timestamp(v)
            t = t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t
            out.append(_iso([t.to_datetime64()])[0])
    return np.asarray([str(v) for v in out], dtype=object)


def _fields(text, pattern: str, groups: int, fallback: str):
    """[n, groups] strings of the pattern's groups (empty when a group did not take part)."""
    import tensorflow as tf

    ok = tf.strings.regex_full_match(text, pattern)
    safe = tf.where(ok, text, fallback)
    rewrite = "|".join(f"\\{i}" for i in range(1, groups + 1))
    joined = tf.strings.regex_replace(safe, f"^{pattern}$", rewrite, replace_global=False)
    parts = tf.strings.split(joined, sep="|").to_tensor(default_value="", shape=[None, groups])
    return ok, parts


def _int(text, default: str):
    import tensorflow as tf

    return tf.strings.to_number(tf.where(tf.equal(text, ""), default, text), out_type=tf.int64)


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (int64 tensors; any year)."""
    import tensorflow as tf

    y = year - tf.cast(month <= 2, tf.int64)
    era = tf.math.floordiv(y, 400)
    yoe = y - era * 400
    mp = tf.math.floormod(month + 9, 12)  # March = 0 .. February = 11
    doy = tf.math.floordiv(153 * mp + 2, 5) + day - 1
    doe = yoe * 365 + tf.math.floordiv(yoe, 4) - tf.math.floordiv(yoe, 100) + doy
    return era * 146_097 + doe - 719_468


def days_since_epoch(text):
    """float32 days since 1970-01-01 UTC of ISO 8601 strings (a string tensor, flattened); NaN where
    unparseable. The same numbers as ``column_values(parse_timestamps(strings), "timestamp")``."""
    import tensorflow as tf

    text = tf.reshape(tf.convert_to_tensor(text, dtype=tf.string), [-1])
    text = tf.strings.regex_replace(text, *_BASIC_DATE, replace_global=False)
    ok, f = _fields(text, PATTERN, 8, "1970")
    ok = tf.logical_and(ok, tf.logical_not(tf.strings.regex_full_match(text, _LONE_DIGIT_HOUR)))
    year, month, day = _int(f[:, 0], "1970"), _int(f[:, 1], "1"), _int(f[:, 2], "1")
    hour, minute, second = _int(f[:, 3], "0"), _int(f[:, 4], "0"), _int(f[:, 5], "0")
    nanos = _int(tf.strings.substr(f[:, 6] + "000000000", 0, 9), "0")
    zone = tf.where(tf.logical_or(tf.equal(f[:, 7], ""), tf.equal(f[:, 7], "Z")), "+00", f[:, 7])
    _, z = _fields(zone, _ZONE, 3, "+00")
    sign = tf.where(tf.equal(z[:, 0], "-"), tf.constant(-1, tf.int64), tf.constant(1, tf.int64))
    zone_h, zone_m = _int(z[:, 1], "0"), _int(z[:, 2], "0")

    leap = tf.logical_or(
        tf.logical_and(tf.equal(year % 4, 0), tf.not_equal(year % 100, 0)), tf.equal(year % 400, 0))
    month_days = tf.gather(tf.constant([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], tf.int64),
                           tf.clip_by_value(month - 1, 0, 11))
    month_days += tf.cast(tf.logical_and(tf.equal(month, 2), leap), tf.int64)
    seconds = (days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
               - sign * (zone_h * 3_600 + zone_m * 60))
    valid = tf.reduce_all(tf.stack([
        ok, month >= 1, month <= 12, day >= 1, day <= month_days, hour <= 23, minute <= 59,
        second <= 59, zone_h <= 23, zone_m <= 59, seconds >= _MIN_SECONDS, seconds <= _MAX_SECONDS,
    ], axis=0), axis=0)
    ns = tf.where(valid, seconds * 1_000_000_000 + nanos, tf.constant(0, tf.int64))
    days = tf.cast(tf.cast(ns, tf.float64) / 86_400e9, tf.float32)
    return tf.where(valid, days, tf.constant(float("nan"), tf.float32))
