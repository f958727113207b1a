"""KFP wrapper of engineer."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def engineer_features(
    train_data: Input[Dataset],
    schema: Input[Artifact],
    transform_spec: Output[Artifact],
    max_vocab: int = 1000,
    log_skew_threshold: float = 2.0,
):
    """Fit imputation, normalisation and vocabularies on the train split into a transform spec.

    Args:
        max_vocab: Largest vocabulary per categorical feature; rarer values share an OOV bucket.
        log_skew_threshold: Non-negative numeric features more skewed than this get log1p.
    """
    import logging

    from components._shared import io
    from components.engineer.core import fit_transform_spec

    logging.basicConfig(level=logging.INFO)
    sch = io.read_json(schema.path)
    spec = fit_transform_spec(io.read_parquet(train_data.path), sch, max_vocab=max_vocab,
                              log_skew_threshold=log_skew_threshold)
    spec["negative_label"] = sch.get("negative_label")
    io.write_json(spec, transform_spec.path)
    transform_spec.metadata.update({"numeric": len(spec["numeric"]), "categorical": len(spec["categorical"])})
