"""KFP wrapper of ingest."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Metrics, Output

from components._shared.images import IMAGES


@dsl.component(base_image=IMAGES.data, install_kfp_package=False)
def ingest_data(
    data_uri: str,
    label: str,
    train_data: Output[Dataset],
    eval_data: Output[Dataset],
    test_data: Output[Dataset],
    ingest_info: Output[Artifact],
    metrics: Output[Metrics],
    id_column: str,
    positive_label: str,
    eval_fraction: float,
    test_fraction: float,
    seed: int,
    min_rows: int,
    task: str,
):
    """Read CSV/Parquet (path, folder of shards, gs://) or BigQuery (bq://) and split it.

    Args:
        data_uri: Table to train on: a CSV or Parquet file, a folder of shards, gs://..., or bq://project.dataset.table.
        label: Label column: two values (binary), classes (multiclass) or numbers (regression).
        id_column: Column whose hash assigns splits, so a record never changes split; empty to detect one (a unique integer or string column named like an id); none for a seeded split by row position (on a bq:// table, a hash of each row's values).
        positive_label: Label value that counts as positive; empty to infer (1/true/yes, else the larger value).
        eval_fraction: Share of rows in the eval split (early stopping, threshold choice).
        test_fraction: Share of rows in the test split (metrics, champion comparison).
        seed: Seed of the random split.
        min_rows: Fewest labelled rows the table may have.
        task: auto, binary, multiclass or regression; auto infers it from the label and asks for it when
            integers could be classes or numbers.
    """
    import logging

    from components._shared.io import write_json
    from components.ingest.core import ingest

    logging.basicConfig(level=logging.INFO)
    result = ingest(data_uri, label, train_data.path, eval_data.path, test_data.path,
                    id_column=id_column or None, positive_label=positive_label or None,
                    eval_fraction=eval_fraction, test_fraction=test_fraction, seed=seed,
                    min_rows=min_rows, task=task)
    write_json(result.to_dict(), ingest_info.path)
    for art, split in ((train_data, "train"), (eval_data, "eval"), (test_data, "test")):
        art.metadata.update({"rows": result.rows[split], "content_hash": result.content_hash, "source_uri": data_uri,
                             "split_rule": result.split_rule})
    ingest_info.metadata.update({"content_hash": result.content_hash, "positive_label": result.positive_label or "",
                                 "task": result.task,
                                 "id_column": result.id_column or "", "id_column_source": result.id_column_source or "",
                                 "split": result.split, "split_rule": result.split_rule, "warnings": result.warnings})
    for split, n in result.rows.items():
        metrics.log_metric(f"{split}_rows", n)
