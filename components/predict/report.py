"""What a person reads after a prediction run: an HTML page of the summary, and evidently's drift report.

:func:`summary_html` renders :func:`components.predict.core.predict`'s summary (rows, rows/s, the
score distribution against the one at training, warnings, live metrics, PSI per feature).
:func:`drift_report` runs evidently (``_shared.drift.run_evidently``) on the run's sample against
the version's reference sample; like the training pipeline's drift-report step it is report only,
so a failure inside evidently is written into the page instead of failing the run.
"""

from __future__ import annotations

import html
import logging
from typing import Optional

from components._shared import io
from components._shared.drift import DRIFT_SAMPLE_ROWS, evidently_report
from components._shared.schema import feature_names

logger = logging.getLogger(__name__)


LIVE_KEYS = {  # the live metrics shown per task
    "binary": ("auc", "auc_at_training", "auc_decay", "pr_auc", "log_loss", "brier", "accuracy",
               "precision", "recall", "f1", "ece", "positive_rate"),
    "multiclass": ("accuracy", "macro_f1", "weighted_f1", "log_loss", "macro_auc", "ece"),
    "regression": ("rmse", "mae", "r2", "mape", "mean_residual", "label_std"),
}


def _num(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def summary_html(s: dict) -> str:
    """An HTML page of a prediction summary."""
    esc = html.escape
    rows = [("model", f"{s['model_name']} v{s['model_version']} ({s['model_requested']})"),
            ("data", s["data"]), ("output", s["output"]), ("rows scored", _num(s["rows"])),
            ("rows/s", _num(s["rows_per_second"], 0)), ("seconds", _num(s["seconds"], 2)),
            ("id column", s["id_column"]), ("task", s.get("task", "binary")),
            ("threshold (class_id)", _num(s["threshold"]))]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Batch prediction</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
             ".warn{color:#a60}</style></head><body>",
             f"<h1>Batch prediction: {esc(s['model_name'])} v{esc(str(s['model_version']))}</h1><table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table><h2>Warnings</h2>")
    parts.append("<ul>" + "".join(f"<li class='warn'>{esc(w)}</li>" for w in s["warnings"]) + "</ul>"
                 if s["warnings"] else "<p>None.</p>")
    sc = s["scores"]
    parts.append(f"<h2>Score distribution</h2><p>mean {_num(sc['mean'])}"
                 + (f" (at training {_num(sc['training_mean'])}); PSI against training {_num(sc['psi'])}"
                    if "psi" in sc else " (no training reference sample to compare with)") + "</p>")
    if "bins" in sc:
        edges = ["-inf"] + [f"{b:.3f}" for b in sc["bins"]] + ["inf"]
        parts.append("<table><tr><th>score bin</th><th>training</th><th>now</th></tr>")
        parts += [f"<tr><td>{edges[i]} .. {edges[i + 1]}</td><td>{t:.1%}</td><td>{n:.1%}</td></tr>"
                  for i, (t, n) in enumerate(zip(sc["training_bin_freq"], sc["bin_freq"], strict=True))]
        parts.append("</table>")
    live = s.get("live_metrics")
    if live:
        parts.append(f"<h2>Live metrics ({esc(str(s['label_column']))}, {_num(live['rows'])} labelled rows)</h2><table>")
        parts += [f"<tr><th>{k}</th><td>{_num(live.get(k))}</td></tr>" for k in LIVE_KEYS.get(s.get("task"), LIVE_KEYS["binary"])]
        parts.append("</table>")
    drift = s["drift"]
    parts.append(f"<h2>Feature drift (PSI on a {_num(drift['sample_rows'])}-row sample)</h2><p>drifted share "
                 f"{drift['share']:.0%}</p><table><tr><th>feature</th><th>PSI</th></tr>")
    parts += [f"<tr><td>{esc(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(drift["psi"].items())]
    parts.append("</table></body></html>")
    return "".join(parts)


def drift_report(schema: dict, reference_sample_path: Optional[str], sample_path: str, html_path: str,
                 sample_rows: int = DRIFT_SAMPLE_ROWS, seed: int = 0) -> dict:
    """evidently's drift tests of the scored table's sample against the version's reference sample.

    Returns the summary (``share``, ``features``), or ``{"error": ...}`` (also shown in the page).
    """
    summary: dict = {"reference": "the version's training reference sample", "current": "the scored table"}
    columns = []
    if not reference_sample_path:
        summary["error"] = "the version has no reference sample (data/reference.parquet)"
    else:
        names = set(io.read_parquet_schema_names(reference_sample_path)) & set(io.read_parquet_schema_names(sample_path))
        columns = [f for f in feature_names(schema) if f in names]
        if not columns:
            summary["error"] = "no feature columns in common with the reference sample"
    ref = cur = None
    if "error" not in summary:
        ref = io.sample_parquet(reference_sample_path, sample_rows, seed, columns)
        cur = io.sample_parquet(sample_path, sample_rows, seed, columns)
    return evidently_report(schema, ref, cur, columns, html_path, summary, seed=seed, max_rows=sample_rows)
