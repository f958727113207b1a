"""Compare: the whole promotion rule.

A challenger is promoted iff
  1. it passes every configured absolute gate of its task (binary: minimum AUC, maximum
     calibration error, maximum AUC gap between slices; multiclass: minimum one-vs-rest macro
     AUC, maximum top-label calibration error; regression: minimum R², maximum RMSE), and
  2. when a champion exists, it beats the champion *re-scored on this run's test split*
     by at least ``min_improvement`` in the task's primary metric (binary AUC, multiclass log
     loss, regression RMSE; see ``_shared/task.py``), and the paired-bootstrap 95% interval of
     the difference excludes zero in the challenger's favour (when ``require_significance``).

A champion of another task type is never compared: it blocks promotion, with one sentence.

With no gate configured nothing is promoted (TFX's safe default): an unconfigured
pipeline never replaces a model by accident. "Challenger is worse" is a normal outcome,
reported in ``reasons``, not an exception.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

from components._shared import scoring
from components._shared.errors import ModelError
from components._shared.params import PARAMS
from components._shared.task import BINARY, MULTICLASS, TASKS, task_of
from components._shared.values import gate

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Gates:
    """Promotion thresholds; a gate set to None is disabled."""

    min_auc: Optional[float] = PARAMS.min_auc
    max_ece: Optional[float] = PARAMS.max_ece
    max_auc_gap: Optional[float] = PARAMS.max_auc_gap
    min_improvement: float = PARAMS.min_improvement
    require_significance: bool = PARAMS.require_significance
    min_r2: Optional[float] = PARAMS.min_r2  # regression
    max_rmse: Optional[float] = gate(PARAMS.max_rmse)  # regression

    @classmethod
    def from_params(cls, min_auc: Optional[float], max_ece: Optional[float], max_auc_gap: Optional[float],
                    min_improvement: float, require_significance: bool, min_r2: Optional[float] = None,
                    max_rmse: Optional[float] = None) -> Gates:
        """None disables a gate; so does a negative value, the form the pipeline passes (kfp.local cannot
        run a pipeline parameter that defaults to None)."""
        return cls(gate(min_auc), gate(max_ece), gate(max_auc_gap), float(min_improvement),
                   bool(require_significance), gate(min_r2), gate(max_rmse))


@dataclasses.dataclass
class Decision:
    promote: bool
    reasons: list
    challenger: dict
    champion: Optional[dict]
    champion_version: Optional[str]
    comparison: Optional[dict]
    gates: dict
    # The champion comparison in words (:func:`comparison_sentence`); None without a compared champion.
    comparison_text: Optional[str] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


_GATES = {  # gate -> (metric per task, passes, sentence)
    "min_auc": ({BINARY: "auc", MULTICLASS: "macro_auc"}, lambda v, g: v >= g, "{name} {v} {cmp} the minimum {g}"),
    "max_ece": ({BINARY: "ece", MULTICLASS: "ece"}, lambda v, g: v <= g,
                "calibration error (ECE{top}) {v} {cmp} the maximum {g}"),
    "max_auc_gap": ({BINARY: "max_auc_gap"}, lambda v, g: v <= g,
                    "largest AUC gap between slices {v} {cmp} the maximum {g}"),
    "min_r2": ({"regression": "r2"}, lambda v, g: v >= g, "R² {v} {cmp} the minimum {g}"),
    "max_rmse": ({"regression": "rmse"}, lambda v, g: v <= g, "RMSE {v} {cmp} the maximum {g}"),
}
_NAMES = {"auc": "AUC", "macro_auc": "macro AUC (one-vs-rest)", "log_loss": "log loss", "rmse": "RMSE"}


def gates_of(gates: Gates, task: str = BINARY) -> dict:
    """The gates that apply to ``task``, plus the champion margin and significance (the decision record)."""
    out = {g: getattr(gates, g) for g in TASKS[task].gates}
    return {**out, "min_improvement": gates.min_improvement, "require_significance": gates.require_significance}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def decide(
    challenger: dict,
    gates: Gates,
    champion: Optional[dict] = None,
    comparison: Optional[dict] = None,
    champion_version: Optional[str] = None,
    champion_error: Optional[str] = None,
    task: str = BINARY,
    incomparable: Optional[str] = None,
) -> Decision:
    """Apply the promotion rule.

    Args:
        challenger: Challenger metrics on this run's test split (binary ``auc``, ``ece``,
            ``max_auc_gap``; multiclass ``log_loss``, ``macro_auc``, ``ece``; regression ``rmse``, ``r2``).
        gates: Thresholds; only the task's gates apply.
        champion: Champion metrics re-scored on the same test split, or None when there is none.
        comparison: Paired bootstrap of the primary metric's difference (binary ``auc_diff``,
            ``ci_low``, ``ci_high``; otherwise also ``improvement``, ``improvement_low``).
        champion_error: Why a registered champion could not be re-scored (blocks promotion).
        task: The challenger's task type.
        incomparable: Why the champion is never compared (another task type; blocks promotion).
    """
    t = TASKS[task]
    reasons, ok = [], True
    if not [g for g in t.gates if getattr(gates, g) is not None]:
        ok = False
        reasons.append(f"no absolute gate is configured ({', '.join(t.gates)}): nothing is promoted by default")
    primary = challenger.get(t.primary)
    if _missing(primary):
        ok = False
        reasons.append(f"the challenger's {_NAMES.get(t.primary, t.primary) if task != BINARY else 'AUC'} "
                       "could not be computed on the test split")
    for gate_name in t.gates:
        g = getattr(gates, gate_name)
        if g is None:
            continue
        metrics, passes, text = _GATES[gate_name]
        metric = metrics[task]
        v = challenger.get(metric)
        if _missing(v):
            ok = False
            reasons.append(f"gate {gate_name}: the challenger has no {metric}")
            continue
        good = passes(v, g)
        ok = ok and good
        reasons.append(("passes: " if good else "fails: ") + text.format(
            v=_fmt(v), g=_fmt(g), cmp="meets" if good else "misses", name=_NAMES.get(metric, metric),
            top=" of the top class" if task == MULTICLASS else ""))
    if incomparable:
        ok = False
        reasons.append(incomparable)
    elif champion_error:
        ok = False
        reasons.append(f"the champion (version {champion_version}) could not be re-scored on this test split: {champion_error}")
    elif champion is None:
        reasons.append("no champion is registered: the absolute gates alone decide")
    else:
        ok = _beats(reasons, ok, task, challenger, champion, comparison, gates, champion_version)
    if ok:
        better = champion is None or _gain(task, challenger, champion, comparison) > 0
        reasons.insert(0, "promote: the challenger passes every gate" + (
            "" if champion is None else " and beats the champion" if better
            else " and is within min_improvement of the champion, though not better"))
    else:
        reasons.insert(0, "keep the current model: " + _why_kept(reasons, champion, champion_version,
                                                                 champion_error, incomparable))
    compared = champion is not None and not (incomparable or champion_error)
    text = (comparison_sentence(task, challenger, champion, champion_version, comparison, gates.min_improvement)
            if compared else None)
    return Decision(ok, reasons, challenger, champion, champion_version, comparison, gates_of(gates, task), text)


def _gain(task: str, challenger: dict, champion: dict, comparison: Optional[dict]) -> float:
    """How much better the challenger is in the primary metric (positive = better), the paired
    comparison's figure when there is one."""
    t = TASKS[task]
    new, old = challenger.get(t.primary), champion.get(t.primary)
    if task == BINARY:
        return (comparison or {}).get("auc_diff", (new or 0) - (old or 0))
    return (comparison or {}).get("improvement", t.improvement(new or 0.0, old or 0.0))


def _amount(gain: float) -> str:
    if _missing(gain):
        return "no difference could be measured"
    if gain == 0:
        return "no better and no worse"
    return f"{abs(gain):.4f} {'better' if gain > 0 else 'worse'}"


def _needed(margin: float) -> str:
    if margin > 0:
        return f"at least {margin:.4f} better"
    if margin == 0:
        return "better by any amount"
    return f"at most {-margin:.4f} worse"


def _passes_margin(gain: float, margin: float) -> bool:
    return not _missing(gain) and gain >= margin and not (margin == 0 and gain <= 0)


def comparison_sentence(task: str, challenger: dict, champion: dict, champion_version, comparison: Optional[dict],
                        min_improvement: float) -> str:
    """What the champion comparison's numbers mean, in one sentence, e.g. "challenger AUC 0.8012 vs
    champion 0.8067 (version 3) on the same test rows: 0.0055 worse; needed: better by any amount
    (min_improvement +0.0000)". Never says "beats" for a challenger that is not better."""
    t = TASKS[task]
    name = _NAMES.get(t.primary, t.primary)
    gain = _gain(task, challenger, champion, comparison)
    order = "" if task == BINARY else f" ({'higher' if t.higher_is_better else 'lower'} is better)"
    return (f"challenger {name} {_fmt(challenger.get(t.primary))} vs champion {_fmt(champion.get(t.primary))} "
            f"(version {champion_version}) on the same test rows{order}: {_amount(gain)}; needed: "
            f"{_needed(min_improvement)} (min_improvement {min_improvement:+.4f})")


def _beats(reasons, ok, task, challenger, champion, comparison, gates, champion_version) -> bool:
    """The champion rule: the primary metric's gain over the champion against ``min_improvement``,
    then (when required) the paired-bootstrap interval above zero."""
    gain = _gain(task, challenger, champion, comparison)
    said = comparison_sentence(task, challenger, champion, champion_version, comparison, gates.min_improvement)
    if not _passes_margin(gain, gates.min_improvement):
        reasons.append(f"does not beat the champion (version {champion_version}): {said}")
        return False
    if gain > 0:
        reasons.append(f"beats the champion (version {champion_version}): {said}")
    else:  # a negative min_improvement lets a slightly worse challenger through: say so, never "beats"
        reasons.append(f"is within the allowed margin of the champion (version {champion_version}), "
                       f"though not better: {said}")
    if gates.require_significance and comparison is not None:
        name = _NAMES.get(TASKS[task].primary, TASKS[task].primary)
        low, high = ((comparison["ci_low"], comparison["ci_high"]) if task == BINARY
                     else (comparison["improvement_low"], comparison["improvement_high"]))
        what = (f"the 95% bootstrap interval of the {name} difference (challenger - champion) [{low:+.4f}, {high:+.4f}]"
                if task == BINARY else
                f"the 95% bootstrap interval of the {name} improvement over the champion [{low:+.4f}, {high:+.4f}]")
        if not low > 0:
            reasons.append(f"the difference is not significant: {what} "
                           + ("includes zero" if high > 0 else "is not above zero"))
            return False
        reasons.append(f"the improvement is significant: {what} is above zero")
    return ok


def _why_kept(reasons: list, champion: Optional[dict], champion_version: Optional[str],
              champion_error: Optional[str], incomparable: Optional[str] = None) -> str:
    """The first line of a decision that keeps the current model: the reason that decided it."""
    failed = [r for r in reasons if r.startswith(("fails", "gate ", "no absolute gate", "the challenger's "))]
    if failed:
        return "the challenger does not pass the gates"
    if incomparable:
        return f"the champion (version {champion_version}) is of another task type, so it is never compared"
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
    task = d.challenger.get("task") or BINARY
    for k in TASKS[task].headline:
        lines.append(f"| {k} | {_fmt(d.challenger.get(k))} | {_fmt((d.champion or {}).get(k))} |")
    if d.comparison:
        c = d.comparison
        metric = c.get("metric", "auc")
        name = _NAMES.get(metric, metric)
        lines += ["", f"Paired bootstrap ({c['n_boot']} resamples of {c['rows']} rows): {name} difference "
                  f"(challenger - champion) {c[f'{metric}_diff']:+.4f}, 95% interval [{c['ci_low']:+.4f}, "
                  f"{c['ci_high']:+.4f}]."]
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
    spec: Optional[dict] = None,
) -> Decision:
    """Re-score the champion on the same rows (``champion_scorer(test_df) -> outputs``, for
    multiclass (N, K) probabilities in the challenger's class order) and decide.

    Args:
        spec: The challenger's transform spec (its task and classes); binary when None.
    """
    task = task_of(spec).name
    if champion_scorer is None:
        return decide(challenger_metrics, gates, task=task)
    try:
        p_champion = champion_scorer(test_df)
    except Exception as exc:  # a champion that cannot score today's data must not be replaced blindly
        return _unscorable(challenger_metrics, gates, champion_version, exc, task)
    return decide_with_champion(challenger_metrics, y_test, p_challenger, p_champion, gates, champion_version,
                                threshold, n_boot, spec)


def _unscorable(challenger_metrics: dict, gates: Gates, champion_version: Optional[str], exc: Exception,
                task: str) -> Decision:
    logger.warning("champion %s could not be re-scored: %s", champion_version, exc)
    return decide(challenger_metrics, gates, champion_version=champion_version, champion_error=str(exc), task=task)


def decide_with_champion(challenger_metrics: dict, y_test, p_challenger, p_champion, gates: Gates,
                         champion_version: Optional[str] = None, threshold: float = 0.5,
                         n_boot: int = PARAMS.bootstrap_samples, spec: Optional[dict] = None) -> Decision:
    """The champion's metrics and the paired bootstrap from both models' outputs on the same rows
    (in the same order), then :func:`decide`."""
    from components._shared.metrics import (
        binary_metrics,
        bootstrap_auc_diff,
        bootstrap_loss_diff,
        multiclass_metrics,
        regression_metrics,
    )

    task = task_of(spec).name
    if task == BINARY:
        champion = binary_metrics(y_test, p_champion, threshold)
        comparison = bootstrap_auc_diff(y_test, p_challenger, p_champion, n_boot=n_boot)
    else:
        champion = (multiclass_metrics(y_test, p_champion, spec["classes"]) if task == MULTICLASS
                    else regression_metrics(y_test, p_champion))
        comparison = bootstrap_loss_diff(task, y_test, p_challenger, p_champion, n_boot=n_boot)
    for key in ("confusion", "per_class", "residual_quantiles"):
        champion.pop(key, None)
    return decide(challenger_metrics, gates, champion, comparison, champion_version, task=task)


def champion_scorer(model_dir: str, spec: Optional[dict] = None):
    """``scorer(df) -> outputs`` of a champion's downloaded model folder; with the challenger's
    multiclass ``spec``, its probabilities are put in the challenger's class order (a class the
    champion does not know gets probability 0).

    A folder without a model fails when called, so :func:`compare_with_champion` reports it as
    a reason (and blocks promotion) instead of failing the run.
    """
    loaded = []  # the champion's model, loaded once however many batches it scores

    def scorer(df):
        if not scoring.has_model(model_dir):
            raise ModelError(f"champion artifacts at {model_dir} hold no model.keras")
        if not loaded:
            loaded.append(scoring.scorer(model_dir))
        out = loaded[0](df)
        if task_of(spec).name == MULTICLASS:
            return _align_classes(out, scoring.model_spec(model_dir).get("classes") or [], spec["classes"])
        return out

    return scorer


def _align_classes(p, theirs: list, ours: list):
    import numpy as np

    out = np.zeros((len(p), len(ours)))
    for i, c in enumerate(ours):
        if c in theirs:
            out[:, i] = p[:, theirs.index(c)]
    return out


def incomparable_champion(spec: dict, champion_dir: str, champion_version: Optional[str]) -> Optional[str]:
    """The sentence saying why a champion of another task type is never compared; None when it is
    of the same task (or has no readable spec: scoring it then reports the problem)."""
    try:
        theirs = task_of(scoring.model_spec(champion_dir)).name
    except Exception:
        return None
    ours = task_of(spec).name
    if theirs == ours:
        return None
    return (f"the champion (version {champion_version}) is a {theirs} model and the challenger a {ours} one: models of "
            "different task types are never compared, so nothing is promoted (register it under another model_name)")


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
    task = task_of(spec).name
    metrics = dict(evaluation["metrics"])
    if task != BINARY:
        metrics["task"] = task
    if champion_dir:
        why = incomparable_champion(spec, champion_dir, champion_version)
        if why:
            return decide(metrics, gates, champion_version=champion_version, task=task, incomparable=why)
    if not champion_dir:  # the gates alone decide: the test split need not be scored again
        return decide(metrics, gates, task=task)
    # Both models score the test split batch by batch, on the same rows in the same order: only the
    # features they need and the label are read, and only labels and both outputs are kept.
    try:
        extra = scoring.feature_columns(scoring.model_spec(champion_dir))
    except Exception:  # no readable spec: the champion's scorer reports the problem
        extra = []
    scored = scoring.score_split(test_path, spec, {"challenger": scoring.scorer(model_dir, spec),
                                                   "champion": champion_scorer(champion_dir, spec)},
                                 extra_columns=extra, tolerate=("champion",))
    if "champion" in scored.errors:
        return _unscorable(metrics, gates, champion_version, scored.errors["champion"], task)
    return decide_with_champion(metrics, scored.labels, scored.outputs["challenger"], scored.outputs["champion"],
                                gates, champion_version, threshold=evaluation["threshold"], n_boot=n_boot, spec=spec)
