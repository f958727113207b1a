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


def test_tfx_comparison_is_reported_beside_our_steps():
    from tests.benchmarks.__main__ import TFX_EPOCHS, _parser
    from tests.benchmarks.report import markdown, targets

    args = _parser().parse_args(["--tfx", "--rows", "1000000", "--parts", "pipeline"])
    assert args.tfx and args.tfx_workers == 2 and not _parser().parse_args([]).tfx
    assert TFX_EPOCHS == 2
    from tests.benchmarks.bench import busy_seconds

    assert busy_seconds([(5.0, 12.0), (0.0, 10.0), (20.0, 21.0)]) == 13.0
    steps = {s: {"wall_s": w, "status": "SUCCESS"} for s, w in (("ingest", 5.0), ("train", 20.0), ("deploy", 3.0))}
    # evaluate and compare ran side by side: the job took 6 s, not 8.
    steps["evaluate"] = {"wall_s": 4.0, "start_s": 30.0, "end_s": 34.0}
    steps["compare"] = {"wall_s": 4.0, "start_s": 32.0, "end_s": 36.0}
    comps = {
        n: {"start": 100.0 + i, "end": 110.0 + i, "wall_s": w}
        for i, (n, w) in enumerate((("CsvExampleGen", 60.0), ("StatisticsGen", 40.0), ("SchemaGen", 5.0), ("Trainer", 200.0)))
    }
    entry = {
        "epochs": 2,
        "end_to_end": {"wall_s": 40.0, "steps": steps, "runner": {"total_s": 12.0}, "challenger": {"auc": 0.8130}},
        "tfx": {
            "wall_s": 500.0,
            "components": comps,
            "evaluation": {"auc": 0.8150, "blessed": True},
            "same_run_as_ours": True,
            "outside_components_s": 195.0,
            "before_first_component_s": 20.0,
        },
    }
    results = {"sizes": {"1000000": entry}, "commit": "abc1234"}
    by_target = {t["target"]: t for t in targets(results)}
    ratio = by_target["1M rows end to end: TFX peer's time / ours"]
    assert ratio["measured"] == 12.5 and ratio["met"]
    gap = by_target["1M rows: TFX peer's test AUC minus ours"]
    assert abs(gap["measured"] - 0.002) < 1e-9 and gap["met"]
    text = markdown(results)
    assert "TFX takes **12.5x** as long" in text and "commit abc1234" in text
    # Our steps and TFX's components side by side, by the job they do.
    assert "| statistics, schema, validation | — |  | StatisticsGen 40.0, SchemaGen 5.0 | 45.0 |" in text
    assert "| training | train | 20.0 | Trainer | 200.0 |" in text
    assert "| evaluation and the promotion gate | evaluate, compare | 6.0 | — |  |" in text
    assert "| **end to end** | | **40.0** | | **500.0** |" in text
    # A slower ours misses the target, and an earlier TFX run is labelled as such.
    entry["end_to_end"]["wall_s"] = 100.0
    entry["tfx"]["same_run_as_ours"] = False
    ratio = {t["target"]: t for t in targets(results)}["1M rows end to end: TFX peer's time / ours"]
    assert ratio["met"] is False and ratio["status"].startswith("missed by 5.0x")
    assert "earlier benchmark run" in markdown(results)
    # A peer stopped by --tfx-timeout: a lower bound, from the components that finished.
    entry["tfx"].update(error="KeyboardInterrupt: stopped by signal 15", wall_s=900.0)
    entry["tfx"]["components"]["Trainer"]["state"] = "RUNNING"
    entry["tfx"]["components"]["CsvExampleGen"]["state"] = "COMPLETE"
    text = markdown(results)
    assert "more than **9.0x** as long" in text and "with CsvExampleGen complete" in text
    assert "**900.0** (stopped)" in text
