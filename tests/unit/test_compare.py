"""Compare core: the whole promotion rule, decided without a model or a registry."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components._shared.metrics import binary_metrics
from components.compare.core import Gates, compare_with_champion, decide, decision_markdown

GOOD = {"auc": 0.82, "ece": 0.03, "max_auc_gap": 0.05}


def test_no_gates_configured_never_promotes():
    d = decide(GOOD, Gates(min_auc=None, max_ece=None, max_auc_gap=None))
    assert d.promote is False
    assert d.reasons[0] == "keep the current model: the challenger does not pass the gates"
    assert (
        "no absolute gate is configured (min_auc, max_ece, max_auc_gap): nothing is promoted by default"
        in d.reasons
    )


def test_first_model_passing_every_gate_is_promoted():
    d = decide(GOOD, Gates())
    assert d.promote is True
    assert d.reasons == [
        "promote: the challenger passes every gate",
        "passes: AUC 0.8200 meets the minimum 0.6000",
        "passes: calibration error (ECE) 0.0300 meets the maximum 0.1000",
        "passes: largest AUC gap between slices 0.0500 meets the maximum 0.2500",
        "no champion is registered: the absolute gates alone decide",
    ]
    assert d.champion is None and d.champion_version is None
    assert d.gates == {
        "min_auc": 0.6,
        "max_ece": 0.1,
        "max_auc_gap": 0.25,
        "min_improvement": 0.0,
        "require_significance": True,
    }


@pytest.mark.parametrize(
    "metric, value, reason",
    [
        ("auc", 0.55, "fails: AUC 0.5500 misses the minimum 0.6000"),
        ("ece", 0.2, "fails: calibration error (ECE) 0.2000 misses the maximum 0.1000"),
        (
            "max_auc_gap",
            0.4,
            "fails: largest AUC gap between slices 0.4000 misses the maximum 0.2500",
        ),
    ],
)
def test_each_failing_gate_blocks_and_is_named(metric, value, reason):
    d = decide({**GOOD, metric: value}, Gates())
    assert d.promote is False
    assert reason in d.reasons
    assert d.reasons[0] == "keep the current model: the challenger does not pass the gates"


def test_gate_boundaries_are_inclusive():
    d = decide({"auc": 0.6, "ece": 0.1, "max_auc_gap": 0.25}, Gates())
    assert d.promote is True


def test_nan_auc_is_not_promoted():
    d = decide({**GOOD, "auc": float("nan")}, Gates())
    assert d.promote is False
    assert "the challenger's AUC could not be computed on the test split" in d.reasons
    assert "gate min_auc: the challenger has no auc" in d.reasons


def test_missing_metric_for_a_configured_gate_blocks():
    d = decide({"auc": 0.8, "max_auc_gap": 0.0}, Gates())
    assert d.promote is False and "gate max_ece: the challenger has no ece" in d.reasons


def test_a_disabled_gate_is_not_checked():
    gates = Gates.from_params(
        min_auc=0.6, max_ece=-1, max_auc_gap=-1, min_improvement=0.0, require_significance=False
    )
    assert (gates.max_ece, gates.max_auc_gap) == (None, None)
    d = decide({"auc": 0.7, "ece": 0.9, "max_auc_gap": 0.9}, gates)
    assert d.promote is True
    assert not any("ECE" in r or "gap" in r for r in d.reasons)


def test_all_gates_disabled_by_parameters_means_no_promotion():
    gates = Gates.from_params(-1, -1, -1, 0.0, True)
    assert decide(GOOD, gates).promote is False


def test_worse_than_champion_is_kept():
    d = decide(
        GOOD,
        Gates(),
        champion={"auc": 0.85},
        comparison={"auc_diff": -0.03, "ci_low": -0.05, "ci_high": -0.01},
        champion_version="4",
    )
    assert d.promote is False
    assert d.reasons[0] == "keep the current model: the challenger is not better than the champion"
    assert (
        "does not beat the champion (version 4): challenger AUC 0.8200 vs champion 0.8500 (version 4) "
        "on the same test rows: 0.0300 worse; needed: better by any amount (min_improvement +0.0000)"
    ) in d.reasons


def test_equal_to_champion_is_kept():
    d = decide(
        GOOD,
        Gates(),
        champion={"auc": 0.82},
        comparison={"auc_diff": 0.0, "ci_low": 0.0, "ci_high": 0.0},
        champion_version="1",
    )
    assert d.promote is False


def test_better_but_not_significant_is_kept():
    d = decide(
        GOOD,
        Gates(),
        champion={"auc": 0.81},
        comparison={"auc_diff": 0.01, "ci_low": -0.004, "ci_high": 0.02},
        champion_version="2",
    )
    assert d.promote is False
    assert (
        "the difference is not significant: the 95% bootstrap interval of the AUC difference "
        "(challenger - champion) [-0.0040, +0.0200] includes zero"
    ) in d.reasons


def test_better_and_significant_is_promoted():
    d = decide(
        GOOD,
        Gates(),
        champion={"auc": 0.78},
        comparison={"auc_diff": 0.04, "ci_low": 0.02, "ci_high": 0.06},
        champion_version="2",
    )
    assert d.promote is True
    assert d.reasons[0] == "promote: the challenger passes every gate and beats the champion"
    assert (
        "beats the champion (version 2): challenger AUC 0.8200 vs champion 0.7800 (version 2) on the "
        "same test rows: 0.0400 better; needed: better by any amount (min_improvement +0.0000)"
        in d.reasons
    )


def test_significance_can_be_waived():
    d = decide(
        GOOD,
        Gates(require_significance=False),
        champion={"auc": 0.81},
        comparison={"auc_diff": 0.01, "ci_low": -0.004, "ci_high": 0.02},
        champion_version="2",
    )
    assert d.promote is True


def test_margin_over_the_champion():
    gates = Gates(min_improvement=0.02, require_significance=False)
    small = decide(
        GOOD,
        gates,
        champion={"auc": 0.81},
        comparison={"auc_diff": 0.01, "ci_low": 0.001, "ci_high": 0.02},
    )
    assert small.promote is False
    assert any(r.endswith(": 0.0100 better; needed: at least 0.0200 better (min_improvement +0.0200)")
               for r in small.reasons)
    enough = decide(
        GOOD,
        gates,
        champion={"auc": 0.79},
        comparison={"auc_diff": 0.03, "ci_low": 0.01, "ci_high": 0.05},
    )
    assert enough.promote is True


def test_a_negative_margin_never_reads_beats():
    """min_improvement -0.01 lets a challenger 0.0055 worse through: the reasons say it is worse."""
    d = decide(
        {**GOOD, "auc": 0.8012},
        Gates(min_improvement=-0.01, require_significance=False),
        champion={"auc": 0.8067},
        comparison={"auc_diff": -0.0055, "ci_low": -0.01, "ci_high": -0.001},
        champion_version="3",
    )
    assert d.promote is True
    assert not any("beats" in r for r in d.reasons), d.reasons
    assert d.reasons[0] == ("promote: the challenger passes every gate and is within min_improvement of the "
                            "champion, though not better")
    assert (
        "is within the allowed margin of the champion (version 3), though not better: challenger AUC 0.8012 vs "
        "champion 0.8067 (version 3) on the same test rows: 0.0055 worse; needed: at most 0.0100 worse "
        "(min_improvement -0.0100)"
    ) in d.reasons
    assert d.comparison_text.endswith("0.0055 worse; needed: at most 0.0100 worse (min_improvement -0.0100)")
    assert decide(GOOD, Gates()).comparison_text is None  # no champion, nothing compared
    worse = decide({**GOOD, "auc": 0.79}, Gates(min_improvement=-0.01, require_significance=False),
                   champion={"auc": 0.81}, comparison={"auc_diff": -0.02}, champion_version="3")
    assert not worse.promote and any(r.startswith("does not beat") and "0.0200 worse" in r for r in worse.reasons)


def test_better_than_champion_but_failing_a_gate_is_kept():
    d = decide(
        {**GOOD, "ece": 0.3},
        Gates(),
        champion={"auc": 0.7},
        comparison={"auc_diff": 0.12, "ci_low": 0.1, "ci_high": 0.14},
        champion_version="3",
    )
    assert d.promote is False
    assert d.reasons[0] == "keep the current model: the challenger does not pass the gates"


def test_champion_that_cannot_be_rescored_blocks_promotion():
    d = decide(
        GOOD, Gates(), champion_version="7", champion_error="the test split has no column 'region'"
    )
    assert d.promote is False
    assert (
        "the champion (version 7) could not be re-scored on this test split: "
        "the test split has no column 'region'"
    ) in d.reasons


# --------------------------------------------------------------------------- with re-scoring


@pytest.fixture(scope="module")
def test_split():
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.3).astype(int)
    signal = y + rng.normal(0, 0.6, n)
    df = pd.DataFrame({"signal": signal, "churned": y})
    strong = 1 / (1 + np.exp(-3 * (signal - 0.5)))
    weak = 1 / (1 + np.exp(-3 * (signal + rng.normal(0, 1.2, n) - 0.5)))
    return df, y, strong, weak


def _metrics(y, p):
    m = binary_metrics(y, p, 0.5)
    m.pop("confusion")
    return {**m, "max_auc_gap": 0.0}


def test_champion_is_rescored_on_the_same_rows(test_split):
    df, y, strong, weak = test_split
    seen = []

    def champion(frame):
        seen.append(frame)
        return weak

    gates = Gates(max_ece=None)
    d = compare_with_champion(_metrics(y, strong), y, strong, df, gates, champion, "3", n_boot=100)
    assert seen[0] is df
    assert d.promote is True
    assert d.champion["auc"] == pytest.approx(binary_metrics(y, weak)["auc"])
    assert "confusion" not in d.champion
    assert d.comparison["rows"] == len(y) and d.comparison["ci_low"] > 0
    assert d.champion_version == "3"


def test_weaker_challenger_against_a_stronger_champion(test_split):
    df, y, strong, weak = test_split
    d = compare_with_champion(
        _metrics(y, weak), y, weak, df, Gates(max_ece=None), lambda frame: strong, "3", n_boot=100
    )
    assert d.promote is False
    assert d.comparison["auc_diff"] < 0
    assert d.reasons[0] == "keep the current model: the challenger is not better than the champion"


def test_same_model_as_champion_is_not_promoted(test_split):
    df, y, strong, _ = test_split
    d = compare_with_champion(
        _metrics(y, strong),
        y,
        strong,
        df,
        Gates(max_ece=None),
        lambda frame: strong,
        "5",
        n_boot=50,
    )
    assert d.promote is False and d.comparison["auc_diff"] == 0.0


def test_champion_scorer_error_becomes_a_reason_not_an_exception(test_split):
    df, y, strong, _ = test_split

    def broken(frame):
        raise KeyError("region")

    d = compare_with_champion(_metrics(y, strong), y, strong, df, Gates(max_ece=None), broken, "2")
    assert d.promote is False
    assert any(
        r.startswith("the champion (version 2) could not be re-scored on this test split: ")
        and "region" in r
        for r in d.reasons
    )


def test_no_champion_scorer_means_gates_alone(test_split):
    df, y, strong, _ = test_split
    d = compare_with_champion(_metrics(y, strong), y, strong, df, Gates(max_ece=None))
    assert d.promote is True and d.comparison is None


def test_decision_markdown(test_split):
    df, y, strong, weak = test_split
    d = compare_with_champion(
        _metrics(y, strong), y, strong, df, Gates(max_ece=None), lambda frame: weak, "3", n_boot=20
    )
    text = decision_markdown(d)
    assert text.startswith("# Promotion decision: PROMOTE\n")
    assert "Paired bootstrap (20 resamples of 2000 rows)" in text
    assert f"| auc | {d.challenger['auc']:.4f} | {d.champion['auc']:.4f} |" in text
    kept = decision_markdown(decide({**GOOD, "auc": float("nan")}, Gates()))
    assert (
        kept.startswith("# Promotion decision: KEEP CHAMPION\n") and "| auc | n/a | n/a |" in kept
    )
    assert d.to_dict()["promote"] is True and not math.isnan(d.to_dict()["challenger"]["auc"])


def test_a_champion_folder_without_a_model_is_a_reason(test_split, tmp_path):
    from components.compare.core import champion_scorer

    df, y, strong, _ = test_split
    d = compare_with_champion(_metrics(y, strong), y, strong, df, Gates(max_ece=None),
                              champion_scorer(str(tmp_path)), "4")
    assert d.promote is False
    assert any(r.startswith("the champion (version 4) could not be re-scored") and "hold no model.keras" in r
               for r in d.reasons)
