"""Every parameter of the training pipeline, once: its name, type, default and meaning.

The cores take their defaults from here (config dataclasses, keyword defaults), the pipeline
(``pipelines/training.py``) its parameters' defaults and descriptions, the CLI (``python -m
pipelines run``) its option defaults and help, and tests their expectations. Nothing else
writes these values.

A KFP wrapper cannot use them as signature defaults (a lightweight component ships only its
function's source text, where ``PARAMS`` is not defined): wrappers take tuning parameters
without defaults and the pipeline always passes them. Parameters with ``pipeline=False`` are
not pipeline parameters; the pipeline passes their table default as a constant.

Usage: ``PARAMS.epochs`` is the default, ``TABLE["epochs"].help`` the meaning, ``TABLE["epochs"].type``
the type the pipeline declares (``List[int]``, ``Dict[str, str]`` for lists and dicts). ``PARAMS`` hands
out a fresh copy of a list or dict default, so no caller can change the table's.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Optional


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any  # None: required (no default)
    help: str
    pipeline: bool = True  # a parameter of the training pipeline (else a constant it passes)
    # A gate that None disables. kfp.local (2.17) cannot run a pipeline whose parameter defaults to None
    # (nor pass None), so the pipeline parameter stays a number and a negative value is "disabled";
    # the cores take None. The CLI accepts "none" for it.
    optional: bool = False


_ROWS = (
    # --- data
    Param("data_uri", str, None, "Table to train on: a CSV or Parquet file, a folder of shards, gs://..., or "
          "bq://project.dataset.table."),
    Param("label", str, None, "Label column: two values (binary), classes (multiclass) or numbers (regression)."),
    Param("task", str, "auto", "auto, binary, multiclass or regression; auto infers it from the label (two values: "
          "binary; non-integer or many-valued numbers: regression; a few strings: multiclass) and asks for it when "
          "integers could be classes or numbers."),
    Param("id_column", str, "", "Column whose hash assigns splits, so a record never changes split (excluded from "
          "features); empty to detect one (a unique integer or string column named like an id); none for a seeded "
          "split by row position (on a bq:// table, a hash of each row's values)."),
    Param("exclude_columns", List[str], [], 'Columns that must not become features, e.g. ["notes", "signup_date"].'),
    Param("positive_label", str, "", "Label value that counts as positive; empty to infer (1/true/yes, else the "
          "larger value)."),
    Param("eval_fraction", float, 0.1, "Share of rows in the eval split (early stopping, threshold choice).",
          pipeline=False),
    Param("test_fraction", float, 0.2, "Share of rows in the test split (metrics, champion comparison).",
          pipeline=False),
    Param("min_rows", int, 50, "Fewest labelled rows a table may have to train on.", pipeline=False),
    # --- registry and serving
    Param("model_name", str, "churn-model", "Registered model name (MLflow, TF Serving, Vertex AI)."),
    Param("mlflow_tracking_uri", str, "", "MLflow tracking/registry server URI (e.g. http://mlflow.mlflow:5000). "
          "A compiled run refuses an empty, sqlite: or file URI in its first step (it would live in the "
          "pod); local runs default to SQLite under the runs dir."),
    Param("serving_base_dir", str, "", "TF Serving model base path; a promoted version goes to "
          "<base>/<model_name>/<version>/ (local, a PVC mount, or gs://). Empty to register only (a compiled "
          "run then needs vertex_project)."),
    # --- validate
    Param("schema_uri", str, "", "A schema JSON (local path or gs://...) enforced as well as the champion's, or "
          "alone before there is a champion."),
    Param("anomaly_severity", Dict[str, str], {}, 'Anomaly severities overriding the defaults (blocking, '
          'warning or ignore per kind), e.g. {"unseen_categories": "blocking"}.'),
    Param("psi_drift_share", float, 0.5, "Share of features drifted by PSI (against the champion's reference "
          "sample) above which validate raises a drift anomaly."),
    # --- engineer
    Param("bucketize_columns", List[str], [], 'Numeric features that also get quantile-bucket embeddings, e.g. '
          '["age", "tenure_months"], or ["*"] for all; empty for none.'),
    Param("num_buckets", int, 10, "Buckets per bucketized feature (fewer when quantiles coincide)."),
    Param("crosses", List[str], [], 'Feature crosses of categorical or bucketized features, each joined by "*", '
          'e.g. ["contract*payment_method"]; empty for none.'),
    Param("max_vocab", int, 1000, "Largest vocabulary per categorical feature; rarer values share an OOV bucket.",
          pipeline=False),
    Param("log_skew_threshold", float, 2.0, "Non-negative numeric features more skewed than this get log1p.",
          pipeline=False),
    # --- train
    Param("epochs", int, 10, "Maximum training epochs (early stopping on eval AUC may stop sooner)."),
    Param("batch_size", int, 0, "Examples per step; 0 picks about 50 steps per epoch (16..4096)."),
    Param("learning_rate", float, 0.002, "Adam learning rate."),
    Param("hidden_units", List[int], [64, 32], "Widths of the MLP head's hidden layers, e.g. [64, 32]."),
    Param("dropout", float, 0.1, "Dropout after each hidden layer."),
    Param("early_stopping_patience", int, 2, "Epochs without eval-AUC improvement before stopping; 0 disables.",
          pipeline=False),
    Param("class_weight", str, "none", '"balanced" to reweight classes (hurts calibration), "none" otherwise.',
          pipeline=False),
    Param("seed", int, 42, "Seed of the random split, initialisation and shuffling."),
    Param("checkpoint_root", str, "", "Durable folder (gs:// or a mounted path) for preemption checkpoints "
          "(<root>/checkpoints/<job id>/train, removed when train succeeds); empty for the pipeline root."),
    # --- evaluate and compare
    Param("slice_columns", List[str], [], 'Columns to slice metrics by (sensitive attributes), e.g. ["gender"]; '
          "empty for every categorical feature."),
    Param("min_slice_rows", int, 30, "Slices smaller than this are not reported.", pipeline=False),
    Param("min_auc", float, 0.6, "Promotion gate: minimum test AUC (multiclass: one-vs-rest macro AUC); a "
          "negative value disables it.", optional=True),
    Param("max_ece", float, 0.1, "Promotion gate: maximum expected calibration error (multiclass: of the top "
          "class's probability); a negative value disables it.", optional=True),
    Param("max_auc_gap", float, 0.25, "Promotion gate: maximum AUC gap between slices; a negative value disables "
          "it.", optional=True),
    Param("min_r2", float, 0.1, "Promotion gate of regression models: minimum test R²; a negative value disables "
          "it.", optional=True),
    Param("max_rmse", float, -1.0, "Promotion gate of regression models: maximum test RMSE in the label's units; "
          "negative (the default) disables it.", optional=True),
    Param("min_improvement", float, 0.0, "Required margin of the challenger over the champion in the task's primary "
          "metric: AUC (binary), log loss (multiclass), RMSE (regression, in the label's units)."),
    Param("require_significance", bool, True, "Also require the paired-bootstrap 95% interval of the primary "
          "metric's difference to exclude zero in the challenger's favour."),
    Param("bootstrap_samples", int, 200, "Bootstrap resamples of the champion comparison.", pipeline=False),
    # --- export
    Param("tflite_quantization", str, "auto", '"auto" (float16 unless its parity with the SavedModel misses '
          'max_tflite_diff, then float32 weights), "float16", "dynamic" (int8 weights) or "none" (float32).'),
    Param("max_tflite_diff", float, 0.001, "Largest allowed absolute difference TFLite vs SavedModel on the test "
          "split, over every output: probabilities (binary, multiclass), label standard deviations (regression)."),
    # --- deploy
    Param("require_approval", bool, False, 'Make a passing version "candidate" instead of "champion" (promote it '
          "later with `approve`)."),
    Param("vertex_project", str, "", "Google Cloud project for Vertex AI; empty to skip Vertex."),
    Param("vertex_location", str, "us-central1", "Vertex AI region."),
    Param("vertex_endpoint", str, "", "Vertex endpoint display name; empty to register without deploying."),
    Param("canary_traffic_percent", int, 100, "Share of endpoint traffic the new version receives (100 = full "
          "rollout)."),
    Param("model_card", str, "", "YAML or JSON file (local path or gs://...) with the model card's intended_use, "
          "limitations, ethical_considerations and owners; empty: the card says they are not filled in."),
)

TABLE: dict[str, Param] = {p.name: p for p in _ROWS}
assert len(TABLE) == len(_ROWS), "a parameter is listed twice"


class _Defaults:
    """Attribute access to the defaults: ``PARAMS.epochs``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return copy.deepcopy(TABLE[name].default)
        except KeyError:
            raise AttributeError(f"no training parameter {name!r}") from None

    def __dir__(self):
        return list(TABLE)


PARAMS = _Defaults()


def pipeline_params() -> list[Param]:
    """The training pipeline's parameters, in table order."""
    return [p for p in _ROWS if p.pipeline]


def args_doc(names: Optional[list] = None) -> str:
    """Google-style ``Args:`` lines for ``names`` (default: the pipeline's parameters)."""
    rows = [TABLE[n] for n in names] if names is not None else pipeline_params()
    return "\n".join(f"    {p.name}: {p.help}" for p in rows)


def with_defaults(component, **given) -> dict:
    """``given`` plus the table default of every other parameter of ``component`` (a KFP component
    or a plain function) that the table knows: for calling a wrapper outside the pipeline (tests,
    benchmarks), since wrappers declare no defaults of their own."""
    import inspect

    func = getattr(component, "python_func", component)
    names = inspect.signature(func).parameters
    return {**{n: copy.deepcopy(TABLE[n].default) for n in names if n in TABLE and TABLE[n].default is not None},
            **given}


def pipeline_value(name: str, value: Any) -> Any:
    """``value`` (a command-line string, or already typed) as the training pipeline declares its
    parameter ``name``: ``"64,32"`` or ``"[64, 32]"`` -> ``[64, 32]`` for hidden_units, ``"1"`` -> ``"1"``
    for positive_label. A gate given as "none" (or empty) takes its pipeline form of "disabled", -1.0.

    Raises:
        KeyError: ``name`` is not a parameter of the training pipeline.
        ValueError: ``value`` is not of the declared type; the message says what the parameter expects.
    """
    from components._shared.values import expected, parse

    row = TABLE.get(name)
    if row is None or not row.pipeline:
        raise KeyError(name)
    try:
        parsed = parse(value, row.type, optional=row.optional)
    except ValueError:
        raise ValueError(f"{expected(row.type)}{' or none' if row.optional else ''}") from None
    return -1.0 if parsed is None and row.optional else parsed
