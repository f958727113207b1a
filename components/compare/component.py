"""KFP wrapper of compare."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def compare_models(
    model: Input[Model],
    test_data: Input[Dataset],
    evaluation: Input[Artifact],
    decision: Output[Artifact],
    decision_report: Output[Markdown],
    model_name: str,
    mlflow_tracking_uri: str,
    serving_base_dir: str,
    min_auc: Optional[float],
    max_ece: Optional[float],
    max_auc_gap: Optional[float],
    min_improvement: float,
    require_significance: bool,
    bootstrap_samples: int,
    min_r2: Optional[float],
    max_rmse: Optional[float],
) -> bool:
    """Decide whether the challenger replaces the champion; returns promote.

    The champion (registry alias "champion") is re-scored on this run's test split and the
    difference of the task's primary metric (binary AUC, multiclass log loss, regression RMSE) is
    bootstrapped on the same rows; a champion of another task type is never compared. A gate set to
    None (or, as the pipeline passes it, a negative value) is disabled; only the gates of the model's
    task apply.
    First, what TF Serving serves as "stable" must be that champion, byte for byte, and must load
    and answer its warm-up requests; otherwise the task fails with one sentence and decides nothing.
    When the champion was trained on splits made by another split rule than this test split's (or
    none was recorded), a warning among the reasons says its score may be optimistic; the decision
    itself is unchanged.

    Args:
        model_name: Registered model whose champion is the baseline.
        mlflow_tracking_uri: MLflow registry URI; empty means no champion lookup.
        serving_base_dir: TF Serving model base whose served champion is checked; empty to skip.
        min_auc: Absolute gate: minimum test AUC (multiclass: one-vs-rest macro AUC).
        max_ece: Absolute gate: maximum expected calibration error (multiclass: of the top class).
        max_auc_gap: Absolute gate: maximum AUC gap between slices.
        min_improvement: Required margin over the champion in the task's primary metric.
        require_significance: Also require the bootstrap 95% interval of the difference to exclude zero.
        bootstrap_samples: Bootstrap resamples.
        min_r2: Regression gate: minimum test R².
        max_rmse: Regression gate: maximum test RMSE in the label's units.
    """
    import logging
    import tempfile

    from components._shared import io
    from components._shared.champion import find_champion
    from components._shared.errors import attempt_marker, fail_fast
    from components._shared.lineage import note_champion_split_rule
    from components._shared.served_check import check_served_champion
    from components.compare.core import Gates, compare, decision_markdown

    logging.basicConfig(level=logging.INFO)
    with fail_fast(attempt_marker(decision.uri)):  # a retry repeats a deterministic error at once
        champ = find_champion(mlflow_tracking_uri, model_name)
        version = champ.version if champ else None
        check_served_champion(serving_base_dir, model_name, version,
                              champ.tags.get("fingerprint") if champ else None, mlflow_tracking_uri)
        d = compare(model.path, test_data.path, io.read_json(evaluation.path),
                    Gates.from_params(min_auc, max_ece, max_auc_gap, min_improvement, require_significance,
                                      min_r2, max_rmse),
                    champion_dir=champ.model_dir(tempfile.mkdtemp(prefix="champion-")) if champ else None,
                    champion_version=version, n_boot=bootstrap_samples)
        # Said, not decided: a comparison that favours the champion only makes promotion harder.
        split_warning = note_champion_split_rule(d, champ, test_data.metadata.get("split_rule"),
                                                 tempfile.mkdtemp(prefix="champion-reports-"))
    io.write_json(d.to_dict(), decision.path)
    with open(decision_report.path, "w") as fh:
        fh.write(decision_markdown(d))
    decision.metadata.update({"promote": d.promote, "champion_version": version or ""})
    if split_warning:
        decision.metadata["warnings"] = [split_warning]
    run_id = model.metadata.get("mlflow_run_id") or ""
    if mlflow_tracking_uri and run_id:  # evaluation and decision as metrics of the training run
        from components._shared import registry
        from components.compare.core import run_metrics

        try:
            client = registry.configure(mlflow_tracking_uri)
            n = registry.log_run_metrics(client, run_id, run_metrics(d, io.read_json(evaluation.path)))
            logging.getLogger(__name__).info("logged %d metrics on training run %s", n, run_id)
        except Exception as exc:  # the decision stands; its record is in the decision artifact
            logging.getLogger(__name__).warning("could not log metrics on training run %s: %s", run_id, exc)
    logging.getLogger(__name__).info("decision: %s", "; ".join(d.reasons))
    return d.promote
