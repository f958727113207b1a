"""Compare: the whole promotion rule.

A challenger is promoted iff
  1. it passes every configured absolute gate (minimum AUC, maximum calibration error,
     maximum AUC gap between slices), and
  2. when a champion exists, it beats the champion *re-scored on this run's test split*
     by at least ``min_improvement`` in AUC, and the lower bound of the paired-bootstrap
     95% interval of the difference is above zero (when ``require_significance``).

With no gate configured nothing is promoted (TFX's safe default): an unconfigured
pipeline never replaces a model by accident. "Challenger is worse" is a normal outcome,
reported in ``reasons``, not an exception.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

from components._shared import io, scoring
from components._shared.errors import ModelError
from components._shared.labels import labels
from components._shared.params import PARAMS

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Gates:
    """Promotion thresholds; a gate set to None is disabled."""

    min_auc: Optional[float] = PARAMS.min_auc
    max_ece: Optional[float] = PARAMS.max_ece
    max_auc_gap: Optional[float] = PARAMS.max_auc_gap
    min_improvement: float = PARAMS.min_improvement
    require_significance: bool = PARAMS.require_significance

    @classmethod
    def from_params(cls, min_auc: float, max_ece: float, max_auc_gap: float, min_improvement: float,
                    require_significance: bool) -> Gates:
        """Pipeline parameters use negative values for 'disabled' (KFP has no Optional float)."""
        def opt(v):
            return None if v is None or v < 0 else float(v)

        return cls(opt(min_auc), opt(max_ece), opt(max_auc_gap), float(min_improvement), bool(require_significance))


@dataclasses.dataclass
class Decision:
    promote: bool
    reasons: list
    challenger: dict
    champion: Optional[dict]
    champion_version: Optional[str]
    comparison: Optional[dict]
    gates: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def decide(
    challenger: dict,
    gates: Gates,
    champion: Optional[dict] = None,
    comparison: Optional[dict] = None,
    champion_version: Optional[str] = None,
    champion_error: Optional[str] = None,
) -> Decision:
    """Apply the promotion rule.

    Args:
        challenger: Challenger metrics on this run's test split (``auc``, ``ece``, ``max_auc_gap``).
        gates: Thresholds.
        champion: Champion metrics re-scored on the same test split, or None when there is none.
        comparison: Paired bootstrap of the AUC difference (``auc_diff``, ``ci_low``, ``ci_high``).
        champion_error: Why a registered champion could not be re-scored (blocks promotion).
    """
    reasons, ok = [], True
    configured = [g for g in (gates.min_auc, gates.max_ece, gates.max_auc_gap) if g is not None]
    if not configured:
        ok = False
        reasons.append("no absolute gate is configured (min_auc, max_ece, max_auc_gap): nothing is promoted by default")
    auc = challenger.get("auc")
    if auc is None or (isinstance(auc, float) and math.isnan(auc)):
        ok = False
        reasons.append("the challenger's AUC could not be computed on the test split")
    checks = (
        ("min_auc", "auc", lambda v, g: v >= g, "AUC {v} {cmp} the minimum {g}"),
        ("max_ece", "ece", lambda v, g: v <= g, "calibration error (ECE) {v} {cmp} the maximum {g}"),
        ("max_auc_gap", "max_auc_gap", lambda v, g: v <= g, "largest AUC gap between slices {v} {cmp} the maximum {g}"),
    )
    for gate_name, metric, passes, text in checks:
        g = getattr(gates, gate_name)
        if g is None:
            continue
        v = challenger.get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            ok = False
            reasons.append(f"gate {gate_name}: the challenger has no {metric}")
            continue
        good = passes(v, g)
        ok = ok and good
        reasons.append(("passes: " if good else "fails: ") + text.format(v=_fmt(v), g=_fmt(g), cmp="meets" if good else "misses"))
    if champion_error:
        ok = False
        reasons.append(f"the champion (version {champion_version}) could not be re-scored on this test split: {champion_error}")
    elif champion is None:
        reasons.append("no champion is registered: the absolute gates alone decide")
    else:
        diff = (comparison or {}).get("auc_diff", (auc or 0) - (champion.get("auc") or 0))
        if diff < gates.min_improvement or (gates.min_improvement == 0 and diff <= 0):
            ok = False
            reasons.append(
                f"does not beat the champion (version {champion_version}): AUC {_fmt(auc)} vs {_fmt(champion.get('auc'))} "
                f"on the same test rows, difference {diff:+.4f}; it must be "
                + (f"at least {gates.min_improvement:+.4f}" if gates.min_improvement > 0 else "above zero"))
        else:
            reasons.append(
                f"beats the champion (version {champion_version}): AUC {_fmt(auc)} vs {_fmt(champion.get('auc'))}, "
                f"difference {diff:+.4f} >= margin {gates.min_improvement:+.4f}")
            if gates.require_significance and comparison is not None:
                if comparison["ci_low"] <= 0:
                    ok = False
                    reasons.append(
                        f"the improvement is not significant: 95% bootstrap interval of the AUC difference "
                        f"[{comparison['ci_low']:+.4f}, {comparison['ci_high']:+.4f}] includes zero")
                else:
                    reasons.append(
                        f"the improvement is significant: 95% bootstrap interval [{comparison['ci_low']:+.4f}, "
                        f"{comparison['ci_high']:+.4f}] is above zero")
    if ok:
        reasons.insert(0, "promote: the challenger passes every gate" + (" and beats the champion" if champion else ""))
    else:
        reasons.insert(0, "keep the current model: " + _why_kept(reasons, champion, champion_version, champion_error))
    return Decision(ok, reasons, challenger, champion, champion_version, comparison, dataclasses.asdict(gates))


def _why_kept(reasons: list, champion: Optional[dict], champion_version: Optional[str],
              champion_error: Optional[str]) -> str:
    """The first line of a decision that keeps the current model: the reason that decided it."""
    failed = [r for r in reasons if r.startswith(("fails", "gate ", "no absolute gate", "the challenger's AUC"))]
    if failed:
        return "the challenger does not pass the gates"
    if champion_error:
        return (f"the champion (version {champion_version}) could not be re-scored on this test split, "
                "so the challenger cannot be shown to beat it")
    if champion is not None:
        return "the challenger is not better than the champion"
    return "the challenger does not pass the gates"


def run_metrics(d: Decision, evaluation: dict) -> dict:
    """The numbers of a decision as flat MLflow metric names (non-numbers are left out by the logger).

    ``test_<m>``: the challenger's evaluation on the test split; ``decision_promote`` (1/0);
    ``champion_<m>``: the champion re-scored on the same rows; ``comparison_<m>``: the paired
    comparison (``auc_diff``, ``ci_low``, ``ci_high``, ...).
    """
    out = {f"test_{k}": v for k, v in (evaluation.get("metrics") or {}).items()}
    out["decision_promote"] = bool(d.promote)
    out.update({f"champion_{k}": v for k, v in (d.champion or {}).items()})
    out.update({f"comparison_{k}": v for k, v in (d.comparison or {}).items()})
    return out


def decision_markdown(d: Decision) -> str:
    lines = [f"# Promotion decision: {'PROMOTE' if d.promote else 'KEEP CHAMPION'}", ""]
    lines += [f"- {r}" for r in d.reasons]
    lines += ["", "| metric | challenger | champion |", "|---|---|---|"]
    for k in ("auc", "pr_auc", "log_loss", "brier", "ece", "f1", "max_auc_gap"):
        lines.append(f"| {k} | {_fmt(d.challenger.get(k))} | {_fmt((d.champion or {}).get(k))} |")
    if d.comparison:
        c = d.comparison
        lines += ["", f"Paired bootstrap ({c['n_boot']} resamples of {c['rows']} rows): AUC difference "
                  f"{c['auc_diff']:+.4f}, 95% interval [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]."]
    lines += ["", "Gates: " + ", ".join(f"{k}={v}" for k, v in d.gates.items())]
    return "\n".join(lines) + "\n"


def compare_with_champion(
    challenger_metrics: dict,
    y_test,
    p_challenger,
    test_df,
    gates: Gates,
    champion_scorer=None,
    champion_version: Optional[str] = None,
    threshold: float = 0.5,
    n_boot: int = PARAMS.bootstrap_samples,
) -> Decision:
    """Re-score the champion on the same rows (``champion_scorer(test_df) -> probabilities``) and decide."""
    from components._shared.metrics import binary_metrics, bootstrap_auc_diff

    if champion_scorer is None:
        return decide(challenger_metrics, gates)
    try:
        p_champion = champion_scorer(test_df)
    except Exception as exc:  # a champion that cannot score today's data must not be replaced blindly
        logger.warning("champion %s could not be re-scored: %s", champion_version, exc)
        return decide(challenger_metrics, gates, champion_version=champion_version, champion_error=str(exc))
    champion = binary_metrics(y_test, p_champion, threshold)
    champion.pop("confusion", None)
    comparison = bootstrap_auc_diff(y_test, p_challenger, p_champion, n_boot=n_boot)
    return decide(challenger_metrics, gates, champion, comparison, champion_version)


def champion_scorer(model_dir: str):
    """``scorer(df) -> probabilities`` of a champion's downloaded model folder.

    A folder without a model fails when called, so :func:`compare_with_champion` reports it as
    a reason (and blocks promotion) instead of failing the run.
    """
    def scorer(df):
        if not scoring.has_model(model_dir):
            raise ModelError(f"champion artifacts at {model_dir} hold no model.keras")
        return scoring.score(model_dir, df)

    return scorer


def compare(
    model_dir: str,
    test_path: str,
    evaluation: dict,
    gates: Gates,
    champion_dir: Optional[str] = None,
    champion_version: Optional[str] = None,
    n_boot: int = PARAMS.bootstrap_samples,
) -> Decision:
    """Score the challenger (``model_dir``) and, if given, the champion (``champion_dir``) on the
    test split and decide.

    Args:
        evaluation: The evaluate step's result (``metrics``, ``threshold``).
        champion_dir: The champion's model folder (see ``_shared.champion``); None when there is none.
    """
    spec = scoring.model_spec(model_dir)
    test = io.read_parquet(test_path)
    p_new = scoring.score(model_dir, test, spec)
    scorer = champion_scorer(champion_dir) if champion_dir else None
    return compare_with_champion(evaluation["metrics"], labels(test, spec), p_new, test, gates, scorer,
                                 champion_version, threshold=evaluation["threshold"], n_boot=n_boot)
