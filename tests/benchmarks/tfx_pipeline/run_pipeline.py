"""The TFX peer pipeline, run once under LocalDagRunner; writes a JSON of times and the test AUC.

Runs under the TFX virtualenv's Python 3.10 (tests/benchmarks/tfx_peer.py creates it and calls
this file); it does not import this project. The pipeline:

    CsvExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer
    -> Evaluator (AUC >= --min-auc on the test split) -> Pusher (a filesystem folder)

CsvExampleGen splits by a hash of ``customer_id`` into train/eval/test 7:1:2 (ours: 70/10/20 by
a hash of the id column). Beam runs on the direct runner in multi-process mode with
``--workers`` processes. Caching is off and every run gets a fresh pipeline root and MLMD store.

    python run_pipeline.py --csv churn-1000000.csv --root /tmp/tfx-run --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time

T_START = time.time()
# TFX 1.16's Transform and Evaluator work with Keras 2 (tf_keras); TensorFlow 2.16's own tf.keras
# is Keras 3 unless this is set before TensorFlow is imported (Beam workers inherit it).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
COMPONENT_ORDER = (
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", required=True, help="the churn CSV (the same file ours trains on)")
    p.add_argument("--root", required=True, help="work folder (emptied first)")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--rows", type=int, required=True, help="data rows in the CSV")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--learning-rate", type=float, default=0.002)
    p.add_argument("--hidden-units", default="64,32")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--min-auc", type=float, default=0.6)
    p.add_argument("--workers", type=int, default=2, help="Beam direct-runner worker processes")
    return p


def build(args, data_dir: str, pipeline_root: str, metadata_path: str, serving_dir: str):
    import tensorflow_model_analysis as tfma
    from tfx import v1 as tfx

    split = tfx.proto.SplitConfig(
        splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=7),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1),
            tfx.proto.SplitConfig.Split(name="test", hash_buckets=2),
        ],
        partition_feature_name="customer_id",
    )
    example_gen = tfx.components.CsvExampleGen(
        input_base=data_dir, output_config=tfx.proto.Output(split_config=split)
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    module = os.path.join(HERE, "churn_module.py")
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=module,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )
    train_rows = int(args.rows * 0.7)
    steps_per_epoch = max(1, -(-train_rows // args.batch_size))
    trainer = tfx.components.Trainer(
        module_file=module,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=steps_per_epoch * args.epochs),
        eval_args=tfx.proto.EvalArgs(num_steps=max(1, -(-int(args.rows * 0.1) // 16384))),
        custom_config={
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "hidden_units": [int(u) for u in args.hidden_units.split(",") if u],
            "dropout": args.dropout,
            "train_rows": train_rows,
            "eval_rows": int(args.rows * 0.1),
            "seed": 42,
        },
    )
    eval_config = tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key="churned_xf",
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="AUC",
                        threshold=tfma.MetricThreshold(
                            value_threshold=tfma.GenericValueThreshold(
                                lower_bound={"value": args.min_auc}
                            )
                        ),
                    ),
                ]
            )
        ],
    )
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=eval_config,
        example_splits=["test"],
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name="churn-tfx-peer",
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            trainer,
            evaluator,
            pusher,
        ],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path
        ),
        beam_pipeline_args=[
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={args.workers}",
        ],
    )


def component_times(metadata_path: str) -> dict:
    """Per component: MLMD's execution create and last-update times (ms since the epoch)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = 1  # READONLY
    store = metadata_store.MetadataStore(cfg)
    types = {t.id: t.name for t in store.get_execution_types()}
    out = {}
    for ex in store.get_executions():
        name = types.get(ex.type_id, "?").rsplit(".", 1)[-1]
        start, end = ex.create_time_since_epoch / 1000, ex.last_update_time_since_epoch / 1000
        out[name] = {
            "start": start,
            "end": end,
            "wall_s": end - start,
            "state": metadata_store_pb2.Execution.State.Name(ex.last_known_state),
        }
    return out


def evaluation(pipeline_root: str) -> dict:
    """Test AUC and example count from the Evaluator's output; blessing and push from their folders."""
    import glob

    import tensorflow_model_analysis as tfma

    out: dict = {}
    evals = sorted(glob.glob(os.path.join(pipeline_root, "Evaluator", "evaluation", "*")))
    if evals:
        result = tfma.load_eval_result(evals[-1])
        for _slice, metrics in result.slicing_metrics:
            for _output, by_class in metrics.items():
                for _sub, values in by_class.items():
                    for key, v in values.items():
                        num = v.get("doubleValue", v.get("int64Value"))
                        if num is not None:
                            out[key] = float(num)
            break
    blessings = sorted(glob.glob(os.path.join(pipeline_root, "Evaluator", "blessing", "*")))
    out["blessed"] = bool(blessings) and os.path.exists(os.path.join(blessings[-1], "BLESSED"))
    return out


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    root = os.path.abspath(args.root)
    shutil.rmtree(root, ignore_errors=True)
    data_dir = os.path.join(root, "data")
    os.makedirs(data_dir)
    # CsvExampleGen reads every file of a folder: a link to the shared CSV, not a copy.
    os.symlink(os.path.abspath(args.csv), os.path.join(data_dir, os.path.basename(args.csv)))
    pipeline_root = os.path.join(root, "pipeline_root")
    metadata_path = os.path.join(root, "metadata.sqlite")
    serving_dir = os.path.join(root, "serving")
    t_import = time.time()
    from tfx import v1 as tfx

    import_s = time.time() - t_import
    pipeline = build(args, data_dir, pipeline_root, metadata_path, serving_dir)
    t0 = time.time()
    error = None

    def stop(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except (Exception, KeyboardInterrupt) as e:  # the JSON still records what ran
        error = f"{type(e).__name__}: {e}"
    t1 = time.time()
    comps = component_times(metadata_path) if os.path.exists(metadata_path) else {}
    result = {
        "versions": _versions(),
        "beam_args": ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"],
        "settings": {
            k: getattr(args, k)
            for k in ("rows", "epochs", "batch_size", "learning_rate", "hidden_units", "dropout", "min_auc", "workers")
        },
        "process_start": T_START,
        "run_start": t0,
        "run_end": t1,
        "tfx_import_s": import_s,
        "before_run_s": t0 - T_START,
        "run_s": t1 - t0,
        "components": {c: comps[c] for c in COMPONENT_ORDER if c in comps},
        "error": error,
    }
    if error is None:
        result["evaluation"] = evaluation(pipeline_root)
        pushed = os.path.isdir(serving_dir) and any(os.scandir(serving_dir))
        result["pushed"] = pushed
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps({k: result[k] for k in ("run_s", "error")}))
    return 1 if error else 0


def _versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("tfx", "tensorflow", "tensorflow-transform", "tensorflow-model-analysis", "apache-beam", "tf-keras"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    sys.exit(main())
