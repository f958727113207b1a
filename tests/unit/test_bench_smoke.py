"""The benchmark (``make bench``) on tiny data, so its code does not rot between real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_readme_section_is_replaced_between_the_markers(tmp_path):
    from tests.benchmarks.report import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{README_START}\nold\n{README_END}\n\n## Next\n")
    assert update_readme(str(readme), "| new | table |\n")
    text = readme.read_text()
    assert "| new | table |" in text and "old" not in text
    assert text.endswith(f"{README_END}\n\n## Next\n")
    missing = tmp_path / "OTHER.md"
    missing.write_text("# no markers\n")
    assert not update_readme(str(missing), "x")


@pytest.mark.slow
def test_smoke_mode_reports_every_step(tmp_path):
    from tests.benchmarks.__main__ import SMOKE_ROWS
    from tests.benchmarks.stage import ORDER, PIPELINE_STAGES

    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    size = results["sizes"][str(SMOKE_ROWS)]

    e2e = size["end_to_end"]
    assert e2e["returncode"] == 0 and e2e["summary"]["promoted"] is True
    for stage in PIPELINE_STAGES:
        step = e2e["steps"][stage]
        assert step["status"] == "SUCCESS" and step["wall_s"] > 0, stage
        assert step["peak_rss_bytes"] > 0, f"no process of {stage} was seen by the RSS monitor"
    assert e2e["runner"]["total_s"] >= 0 and 0 < e2e["outside_training_share"] < 1
    again = size["end_to_end_with_champion"]  # the steady state: a champion to check against
    assert again["returncode"] == 0 and again["steps"]["compare"]["status"] == "SUCCESS"
    assert "Second run on the same runs dir" in (tmp_path / "results.md").read_text()
    assert e2e["train"]["examples_per_second"] > 0
    for key in ("tflite_latency_ms", "saved_model_latency_ms", "tflite_bytes", "saved_model_bytes"):
        assert e2e["export"][key] > 0, key

    stages = size["stages"]
    for stage in ORDER:
        r = stages[stage]
        assert "error" not in r, r.get("stderr_tail")
        assert r["startup_s"] > 0 and r["work_s"] >= 0 and r["peak_rss_bytes"] > 0, stage
    # After deploy the registry lookup finds the champion and imports MLflow for it.
    assert "mlflow" in stages["reference_champion"]["heavy_modules"]
    assert "mlflow" not in stages["validate"]["heavy_modules"]
    assert "evidently" not in stages["validate"]["heavy_modules"]
    for stage in ("ingest", "validate", "engineer"):
        assert stages[stage]["tensorflow_imported"] is False, f"{stage} imported TensorFlow"
    assert stages["train"]["tensorflow_imported"] is True  # the check can see an import
    stall = stages["train"]["stall"]
    assert "error" not in stall, stall
    assert stall["stall_seconds_per_epoch"] >= 0

    assert {t["issue"] for t in results["targets"]} == {"3", "4", "8"}
    for stage in ORDER:
        assert f"| {stage} |" in markdown
    assert "Targets:" in markdown and "Machine:" in markdown
