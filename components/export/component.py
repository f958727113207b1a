"""KFP wrapper of export."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def export_model(
    model: Input[Model],
    test_data: Input[Dataset],
    evaluation: Input[Artifact],
    saved_model: Output[Model],
    tflite_model: Output[Model],
    metrics: Output[Metrics],
    model_name: str,
    tflite_quantization: str,
    max_tflite_diff: float,
):
    """Export a TF Serving SavedModel (raw-feature and tf.Example signatures, the task's Classify or Regress
    signature, warm-up requests) and TFLite.

    Fails when the TFLite model's outputs differ from the SavedModel's by more than max_tflite_diff (in
    probability; for regression in label standard deviations).

    Args:
        model_name: Model name written into the warm-up requests.
        tflite_quantization: "float16", "dynamic" (int8 weights) or "none".
        max_tflite_diff: Largest allowed absolute probability difference TFLite vs SavedModel on the test split.
    """
    import logging

    from components._shared import io
    from components._shared.metrics import loggable
    from components.export.core import export

    logging.basicConfig(level=logging.INFO)
    ev = io.read_json(evaluation.path)
    # Only binary models have a decision threshold (multiclass takes the most likely class).
    result = export(model.path, test_data.path, saved_model.path, tflite_model.path, model_name,
                    threshold=ev.get("threshold", 0.5), quantization=tflite_quantization,
                    max_parity_diff=max_tflite_diff)
    saved_model.metadata.update({"format": "tf_saved_model", "task": result.metrics["task"],
                                 "signatures": ",".join(result.metrics["signatures"])})
    tflite_model.metadata.update({"format": "tflite", "quantization": tflite_quantization,
                                  "max_abs_diff": result.metrics["tflite_max_abs_diff"]})
    for k, v in loggable(result.metrics).items():
        metrics.log_metric(k, v)
    metrics.metadata["tflite_quantization"] = result.metrics["tflite_quantization"]  # the one shipped (model card)
