"""Run the data stages' cores on a small table, for tests that need splits, a schema and a spec.

Plain functions (no fixtures) so each test module decides its own scope and folder.
"""

from __future__ import annotations

import dataclasses
import os

LABEL = "churned"
ID_COLUMN = "customer_id"


@dataclasses.dataclass
class Prepared:
    train: str
    eval: str
    test: str
    info: dict
    schema: dict
    spec: dict


def prepare(df, out_dir: str, id_column: str = ID_COLUMN) -> Prepared:
    """ingest -> schema -> transform spec, as the ingest/validate/engineer wrappers chain them."""
    from components._shared import io
    from components._shared.schema import infer_schema
    from components.engineer.core import fit_transform_spec
    from components.ingest.core import ingest

    os.makedirs(out_dir, exist_ok=True)
    src = os.path.join(out_dir, "data.csv")
    df.to_csv(src, index=False)
    paths = {s: os.path.join(out_dir, f"{s}.parquet") for s in ("train", "eval", "test")}
    info = ingest(
        src, LABEL, paths["train"], paths["eval"], paths["test"], id_column=id_column
    ).to_dict()
    train = io.read_parquet(paths["train"])
    schema = infer_schema(train, LABEL, info["positive_label"], id_column=id_column)
    schema["negative_label"] = info["negative_label"]
    spec = fit_transform_spec(train, schema)
    spec["negative_label"] = info["negative_label"]
    return Prepared(paths["train"], paths["eval"], paths["test"], info, schema, spec)


def train_small(
    prepared: Prepared,
    model_dir: str,
    epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    **config,
):
    """A short real training run (a few hundred rows per step batch: enough signal to beat chance)."""
    from components.train.core import TrainConfig, train

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, **config)
    return train(prepared.train, prepared.eval, prepared.spec, model_dir, cfg)
