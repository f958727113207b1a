"""Drift, measured two ways, each written once.

* Population stability index (:func:`population_stability`, :func:`psi_drift`): vectorised over
  every row against the schema's quantile bins and category frequencies. Cheap; validate's
  drift gate uses it, the monitor reports it.
* evidently (:func:`run_evidently`, :func:`parse_evidently`): per-feature statistical tests and a
  drift share on a sample of at most ``DRIFT_SAMPLE_ROWS`` rows per side, optionally with
  dataset-quality counts, and an HTML report. Importing evidently alone takes over 3 s, so it
  is imported only inside :func:`run_evidently`; validate's drift-report step and the monitor
  call it.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from components._shared.schema import NUMERIC_KINDS, column_values, feature_names

DRIFT_SAMPLE_ROWS = 20_000  # rows per side evidently tests (its cost grows with rows)
PSI_DRIFT = 0.2  # population stability index above which a feature counts as drifted

# evidently's dataset-level quality metrics that parse to one number each (see parse_evidently).
_QUALITY_COUNTS = (
    "RowCount",
    "DuplicatedRowCount",
    "EmptyRowsCount",
    "ConstantColumnsCount",
    "AlmostConstantColumnsCount",
    "EmptyColumnsCount",
)


# --------------------------------------------------------------------------- PSI


def _psi(ref_freq, cur_freq) -> float:
    import numpy as np

    ref = np.clip(np.asarray(ref_freq, dtype=float), 1e-4, None)
    cur = np.clip(np.asarray(cur_freq, dtype=float), 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_of_counts(ref_freq, counts) -> float:
    """PSI of a distribution given as ``counts`` per bin against the reference shares ``ref_freq``
    (same bins): for a distribution accumulated batch by batch, such as a stream of scores."""
    import numpy as np

    counts = np.asarray(counts, dtype=float)
    return _psi(ref_freq, counts / counts.sum()) if counts.sum() else float("nan")


def population_stability(df, schema: dict) -> dict:
    """PSI of each feature of ``df`` against the schema's bins/frequencies (whole data, vectorised)."""
    acc = PopulationStability(schema)
    acc.update(df)
    return acc.result()


class PopulationStability:
    """PSI per feature against a schema, counted batch by batch (:meth:`update`, then
    :meth:`result`): bin counts and category counts add up, so any batching gives the same PSI."""

    def __init__(self, schema: dict):
        import numpy as np
        import pandas as pd

        self.schema = schema
        self.seen: set = set()
        self.counts, self.keys = {}, {}
        for name in feature_names(schema):
            entry = schema["columns"][name]
            if entry["kind"] in NUMERIC_KINDS:
                if entry.get("bin_freq"):
                    self.counts[name] = np.zeros(len(entry["bin_freq"]), dtype=np.int64)
            elif entry.get("frequencies"):
                self.keys[name] = pd.Index(list(entry["frequencies"]), dtype=object)
                self.counts[name] = np.zeros(len(self.keys[name]) + 1, dtype=np.int64)  # last: all non-missing

    def update(self, df) -> None:
        import numpy as np

        for name, counts in self.counts.items():
            if name not in df.columns:
                continue
            self.seen.add(name)
            entry = self.schema["columns"][name]
            values = column_values(df[name], entry["kind"])
            if name in self.keys:
                vc = values.value_counts(sort=False, dropna=True)
                pos = self.keys[name].get_indexer(np.asarray(vc.index, dtype=object))
                hits = vc.to_numpy(dtype=np.int64)
                np.add.at(counts, pos[pos >= 0], hits[pos >= 0])
                counts[-1] += int(hits.sum())
            else:
                finite = values[np.isfinite(values)]
                counts += np.bincount(np.searchsorted(entry["bins"], finite, side="right"), minlength=len(counts))

    def result(self) -> dict:
        out = {}
        for name, counts in self.counts.items():
            if name not in self.seen or (name not in self.keys and not counts.sum()):
                continue
            entry = self.schema["columns"][name]
            if name in self.keys:
                freq = entry["frequencies"]
                ref = [freq[k] for k in self.keys[name]] + [max(0.0, 1 - sum(freq.values()))]
                cur = [float(c) / counts[-1] if counts[-1] else 0.0 for c in counts[:-1]]
                cur.append(max(0.0, 1.0 - sum(cur)))
                out[name] = _psi(ref, cur)
            else:
                out[name] = _psi(entry["bin_freq"], counts / counts.sum())
        return out


def psi_drift(psi: dict, psi_threshold: float = PSI_DRIFT) -> dict:
    """Drift share and per-feature verdicts from population stability indices.

    Args:
        psi: PSI per feature (see :func:`population_stability`).
        psi_threshold: A feature whose PSI is above this counts as drifted.

    Returns:
        ``{"share": share of features drifted, "drifted": their names, "threshold": psi_threshold}``.
    """
    drifted = sorted(c for c, v in psi.items() if v > psi_threshold)
    return {"share": len(drifted) / len(psi) if psi else 0.0, "drifted": drifted, "threshold": psi_threshold}


# --------------------------------------------------------------------------- evidently


def _sample(df, rows: int, seed: int):
    return df.sample(rows, random_state=seed).reset_index(drop=True) if len(df) > rows else df


def run_evidently(
    reference,
    current,
    columns: Optional[list] = None,
    html_path: Optional[str] = None,
    seed: int = 0,
    max_rows: int = DRIFT_SAMPLE_ROWS,
    drift_share: Optional[float] = None,
    quality: bool = False,
) -> dict:
    """evidently's data drift tests (per feature, drift share) on a sample of each side.

    Args:
        reference: Reference DataFrame.
        current: Current DataFrame with the same columns.
        columns: Columns to test; None: every column of ``current``.
        html_path: Where to save evidently's HTML report (parent folders are created); None: none.
        seed: Seed of the samples.
        max_rows: Rows sampled per side at most.
        drift_share: evidently's dataset drift-share threshold (shown in its report); None keeps
            evidently's default.
        quality: Add the dataset-quality counts (rows, duplicated and empty rows, constant and
            empty columns, missing values per column). Not the whole ``DataSummaryPreset``: that
            draws a distribution per column again, which the drift preset already shows, and
            doubles the run time.

    Returns:
        :func:`parse_evidently` of the snapshot, plus ``sample_rows`` ([reference, current]).
    """
    import warnings

    from evidently import Report
    from evidently import metrics as m
    from evidently.presets import DataDriftPreset

    if columns is None:
        columns = list(current.columns)
    ref = _sample(reference[columns], max_rows, seed)
    cur = _sample(current[columns], max_rows, seed)
    preset = DataDriftPreset() if drift_share is None else DataDriftPreset(drift_share=drift_share)
    metrics = [preset]
    if quality:
        metrics += [getattr(m, name)() for name in _QUALITY_COUNTS]
        metrics.append(m.DatasetMissingValueCount())
        metrics += [m.MissingValueCount(column=c) for c in columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report(metrics).run(current_data=cur, reference_data=ref)
    out = parse_evidently(snapshot.dict())
    out["sample_rows"] = [len(ref), len(cur)]
    if html_path:
        os.makedirs(os.path.dirname(os.path.abspath(html_path)), exist_ok=True)
        snapshot.save_html(html_path)
    return out


def parse_evidently(snapshot: dict) -> dict:
    """Drift share, per-feature drift and summary counts from an evidently 0.7 snapshot dict.

    Returns:
        ``{"share", "features": {column: {"method", "score", "threshold", "drifted"}},
        "missing_share": {column: share}, "summary": {"row_count", ..., "missing_value_share"}}``;
        the last two are empty unless the report had the quality metrics.
    """
    features, missing, summary = {}, {}, {}
    share = None
    for metric in snapshot.get("metrics", []):
        cfg = metric.get("config", {})
        kind = cfg.get("type", "").rsplit(":", 1)[-1]
        value = metric.get("value")
        if kind == "DriftedColumnsCount":
            share = float(value["share"])
        elif kind == "ValueDrift":
            method = cfg.get("method", "")
            score = float(value)
            threshold = float(cfg.get("threshold", 0.05))
            drifted = score < threshold if "p_value" in method else score >= threshold
            features[cfg["column"]] = {"method": method, "score": score, "threshold": threshold, "drifted": drifted}
        elif kind == "MissingValueCount" and isinstance(value, dict):
            missing[cfg["column"]] = float(value["share"])
        elif kind in _QUALITY_COUNTS and not isinstance(value, dict):
            summary[re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()] = float(value)
        elif kind == "DatasetMissingValueCount" and isinstance(value, dict):
            summary["missing_value_share"] = float(value["share"])
    if share is None and features:
        share = sum(f["drifted"] for f in features.values()) / len(features)
    return {"share": share, "features": features, "missing_share": missing, "summary": summary}


def evidently_report(schema: dict, ref, cur, columns: list, html_path: str, summary: dict, seed: int = 0,
                     max_rows: int = 20_000) -> dict:
    """evidently's drift tests of ``cur`` against ``ref`` over ``columns``, written to ``html_path``.

    Timestamps are compared as days since epoch (evidently does not test datetimes). ``summary``
    gains ``share``, ``features`` and ``sample_rows``; a failure inside evidently, or an ``error``
    the caller already put in ``summary`` (nothing to compare), becomes ``summary["error"]`` and a
    page that says so: the report is optional and gates nothing.
    """
    import html
    import logging

    from components._shared import io

    if "error" not in summary:
        for name in columns:
            if schema["columns"][name]["kind"] == "timestamp":
                ref[name] = column_values(ref[name], "timestamp")
                cur[name] = column_values(cur[name], "timestamp")
        try:
            drift = run_evidently(ref, cur, columns, html_path, seed=seed, max_rows=max_rows)
            summary.update({k: drift[k] for k in ("share", "features", "sample_rows")})
        except Exception as exc:  # report only: say so, do not fail the run
            logging.getLogger(__name__).warning("evidently failed: %s", exc)
            summary["error"] = f"evidently failed: {type(exc).__name__}: {exc}"
    if "error" in summary:
        io.write_text_atomic("<!doctype html><html><body><h1>Data drift report not available</h1><p>"
                             + html.escape(summary["error"]) + "</p></body></html>", html_path)
    return summary
