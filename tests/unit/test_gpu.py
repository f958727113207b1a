"""GPU-only checks: skipped cleanly on machines without a GPU (like this project's CI)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def _gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


@pytest.fixture(scope="module")
def gpus():
    found = _gpus()
    if not found:
        pytest.skip("no GPU on this machine")
    return found


def test_training_uses_gpu_with_mixed_precision(gpus, tmp_path, churn_df):
    import keras

    from components._shared import io
    from components.engineer.core import fit_transform_spec
    from components.ingest.core import ingest
    from components.train.core import TrainConfig, train
    from components.validate.core import validate

    churn_df.to_csv(tmp_path / "d.csv", index=False)
    paths = [str(tmp_path / f"{s}.parquet") for s in ("train", "eval", "test")]
    info = ingest(str(tmp_path / "d.csv"), "churned", *paths)
    tr = io.read_parquet(paths[0])
    spec = fit_transform_spec(tr, validate(tr, {}, "churned", info.positive_label).schema)
    result = train(paths[0], paths[1], spec, str(tmp_path / "model"), TrainConfig(epochs=1))
    assert "GPU" in result.device
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
