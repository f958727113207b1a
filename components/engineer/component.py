"""KFP wrapper of engineer."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def engineer_features(
    train_data: Input[Dataset],
    schema: Input[Artifact],
    transform_spec: Output[Artifact],
    max_vocab: int,
    log_skew_threshold: float,
    bucketize_columns: List[str],
    num_buckets: int,
    crosses: List[str],
):
    """Fit imputation, normalisation and vocabularies on the train split into a transform spec.

    Args:
        max_vocab: Largest vocabulary per categorical feature; rarer values share an OOV bucket.
        log_skew_threshold: Non-negative numeric features more skewed than this get log1p.
        bucketize_columns: Numeric features to bucketize by train-split quantiles (each bucket gets
            an embedding, in addition to the normalised value), e.g. ["age"], or ["*"] for all
            numeric features; empty for none.
        num_buckets: Buckets per bucketized feature (fewer when quantiles coincide).
        crosses: Feature crosses, each two or more categorical or bucketized features joined by "*",
            e.g. ["contract*payment_method", "region*internet_service"]; crosses with more than
            10000 combinations are hashed into 10000 buckets. Empty for none.
    """
    import logging

    from components._shared import io
    from components.engineer.core import fit_transform_spec, parse_column_list, parse_crosses

    logging.basicConfig(level=logging.INFO)
    sch = io.read_json(schema.path)
    # A path, not a frame: the spec is fitted batch by batch, whatever the rows.
    spec = fit_transform_spec(train_data.path, sch, max_vocab=max_vocab,
                              log_skew_threshold=log_skew_threshold,
                              bucketize=parse_column_list(bucketize_columns), num_buckets=num_buckets,
                              crosses=parse_crosses(crosses))
    spec["negative_label"] = sch.get("negative_label")
    io.write_json(spec, transform_spec.path)
    transform_spec.metadata.update({"numeric": len(spec["numeric"]), "categorical": len(spec["categorical"])})
    # Only when used, so specs and metadata without them stay as they were.
    if spec.get("buckets"):
        transform_spec.metadata["bucketized"] = len(spec["buckets"])
    if spec.get("crosses"):
        transform_spec.metadata["crosses"] = len(spec["crosses"])
