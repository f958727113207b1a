"""KFP wrapper of evaluate."""

from typing import List

from kfp import dsl
from kfp.dsl import (
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    test_data: Input[Dataset],
    eval_data: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
    report: Output[Markdown],
    slice_columns: List[str],
    min_slice_rows: int,
):
    """Test-split metrics (binary: at the threshold train chose on the eval split, ROC; multiclass: the
    K x K confusion matrix; regression: RMSE, MAE, R²), confusion matrix, slices.

    Args:
        slice_columns: Columns to slice by (sensitive attributes), e.g. ["gender"]; empty for every categorical feature.
        min_slice_rows: Slices smaller than this are not reported.
    """
    import logging

    from components._shared import io
    from components._shared.metrics import loggable
    from components._shared.values import str_list
    from components.evaluate.core import evaluate, report_markdown

    logging.basicConfig(level=logging.INFO)
    cols = str_list(slice_columns, "slice_columns")
    ev = evaluate(model.path, test_data.path, eval_data.path, slice_columns=cols or None, min_slice_rows=min_slice_rows)
    io.write_json(ev.to_dict(), evaluation.path)
    for k, v in loggable(ev.metrics).items():
        metrics.log_metric(k, v)
    if ev.roc is not None:  # binary
        fpr, tpr, thr = ev.roc
        classification_metrics.log_roc_curve(fpr, tpr, thr)
    if ev.confusion is not None:  # binary and multiclass (regression has none)
        classification_metrics.log_confusion_matrix([str(c) for c in ev.classes] if ev.classes
                                                    else ["negative", "positive"], ev.confusion)
    with open(report.path, "w") as fh:
        fh.write(report_markdown(ev))
