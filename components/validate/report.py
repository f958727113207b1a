"""Validate's HTML report: status, anomalies, and a table of every column with its PSI.

The page is ``templates/report.html.j2`` (shipped as package data). Values are escaped with
:func:`html.escape` through the template's ``h`` filter, as the KFP UI shows the page as is.
"""

from __future__ import annotations

import functools
import html
import os

from components._shared import io
from components._shared.drift import DRIFT_SAMPLE_ROWS

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


@functools.lru_cache(maxsize=1)
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                             undefined=jinja2.StrictUndefined)
    env.filters["h"] = lambda value: html.escape(str(value))
    return env.get_template("report.html.j2")


def _range(entry: dict) -> str:
    if entry.get("min") is not None:
        return f"{entry['min']:.4g} .. {entry['max']:.4g}"
    if entry.get("domain"):
        return ", ".join(entry["domain"][:8]) + (" ..." if len(entry["domain"]) > 8 else "")
    return ""


def render_report_html(result) -> str:
    """The page of a :class:`components.validate.core.ValidationResult`."""
    psi = result.drift.get("psi", {})
    rows = [
        (name, e.get("kind"), e.get("role"), e.get("reason") or "", f"{e['missing_rate']:.2%}", _range(e),
         "" if psi.get(name) is None else f"{psi[name]:.3f}")
        for name, e in result.schema["columns"].items()
    ]
    psi_share = (result.drift.get("psi_drift") or {}).get("share")
    return _template().render(
        status="FAILED" if result.blocking else result.status.upper(),
        row_count=result.schema["row_count"],
        reference=result.drift.get("reference", ""),
        psi_share="n/a" if psi_share is None else f"{psi_share:.0%}",
        sample_rows=DRIFT_SAMPLE_ROWS,
        anomalies=result.anomalies,
        rows=rows,
    )


def write_report_html(result, path: str) -> None:
    """Write the page of ``result`` to ``path`` (atomically)."""
    io.write_text_atomic(render_report_html(result), path)
