"""KFP wrapper of export."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.trainer, install_kfp_package=False)
def export_model(
    model: Input[Model],
    test_data: Input[Dataset],
    saved_model: Output[Model],
    tflite_model: Output[Model],
    metrics: Output[Metrics],
    model_name: str,
    tflite_quantization: str,
    max_tflite_diff: float,
):
    """Export a TF Serving SavedModel (raw-feature and tf.Example signatures, the task's Classify or Regress
    signature, warm-up requests) and TFLite.

    A binary model's class_id uses the decision threshold train recorded with the model (max F1 on the
    eval split), so export runs beside evaluate. Fails when the TFLite model's outputs differ from the
    SavedModel's by more than max_tflite_diff (in probability; for regression in label standard
    deviations) on a seeded sample of the test split.

    Args:
        model_name: Model name written into the warm-up requests.
        tflite_quantization: "float16", "dynamic" (int8 weights) or "none".
        max_tflite_diff: Largest allowed absolute probability difference TFLite vs SavedModel on the test split
            (a seeded sample of it).
    """
    import logging

    from components._shared.metrics import loggable
    from components.export.core import export

    logging.basicConfig(level=logging.INFO)
    # A binary model's threshold comes from the model folder (train recorded it).
    result = export(model.path, test_data.path, saved_model.path, tflite_model.path, model_name,
                    quantization=tflite_quantization, max_parity_diff=max_tflite_diff)
    saved_model.metadata.update({"format": "tf_saved_model", "task": result.metrics["task"],
                                 "signatures": ",".join(result.metrics["signatures"])})
    tflite_model.metadata.update({"format": "tflite", "quantization": tflite_quantization,
                                  "max_abs_diff": result.metrics["tflite_max_abs_diff"]})
    for k, v in loggable(result.metrics).items():
        metrics.log_metric(k, v)
    metrics.metadata["tflite_quantization"] = result.metrics["tflite_quantization"]  # the one shipped (model card)
    # The bytes that answered the warm-up requests: deploy skips the replay on an identical pushed copy.
    metrics.metadata["saved_model_digest"] = result.metrics["saved_model_digest"]
