"""The drift-report step: evidently's data drift tests on a sample of each side (report only).

What gates a run is validate's population stability index over every row; this step adds
evidently's per-feature statistical tests and its drift share, as an HTML report the KFP UI
renders and a JSON summary. It is its own step because importing evidently alone takes over
3 s: beside engineer and train on a cluster, it costs the path to training nothing.

Reference and current side: the champion's reference sample against this run's train split
when there is a champion (the data the challenger learns from, against the data the champion
learnt from); on a first run, this run's train split against its test split.
"""

from __future__ import annotations

import logging
from typing import Optional

from components._shared import io
from components._shared.drift import DRIFT_SAMPLE_ROWS, evidently_report
from components._shared.schema import feature_names

logger = logging.getLogger(__name__)


def drift_report(
    schema: dict,
    train_path: str,
    test_path: str,
    reference_sample_path: Optional[str],
    html_path: str,
    sample_rows: int = DRIFT_SAMPLE_ROWS,
    seed: int = 0,
) -> dict:
    """Run evidently on the features of ``schema``; write ``html_path``; return the summary.

    A failure inside evidently is returned as ``{"error": ...}`` (and shown in the HTML), not
    raised: the report is optional and gates nothing.
    """
    if reference_sample_path:
        names = set(io.read_parquet_schema_names(reference_sample_path))
        columns = [f for f in feature_names(schema) if f in names]
        ref = io.sample_parquet(reference_sample_path, sample_rows, seed, columns)
        cur = io.sample_parquet(train_path, sample_rows, seed, columns)
        sides = ("champion's reference sample", "this run's train split")
    else:
        columns = feature_names(schema)
        ref = io.sample_parquet(train_path, sample_rows, seed, columns)
        cur = io.sample_parquet(test_path, sample_rows, seed, columns)
        sides = ("this run's train split", "this run's test split")
    summary: dict = {"reference": sides[0], "current": sides[1], "columns": columns}
    if not columns:
        summary["error"] = "no feature columns in common with the reference"
    return evidently_report(schema, ref, cur, columns, html_path, summary, seed=seed, max_rows=sample_rows)
