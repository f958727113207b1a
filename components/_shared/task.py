"""The task types, in one place: what a label is, what the model outputs, what it is trained,
stopped, measured and compared on.

=============  ==========================  ================================  =====================
task           label column (ingest out)   core model output                 primary metric
=============  ==========================  ================================  =====================
binary         0/1 int8                    (N, 1) P(positive), "probability" ``auc`` (higher)
multiclass     class value as a string     (N, K) softmax, "probabilities"   ``log_loss`` (lower)
regression     float64                     (N, 1) label units, "prediction"  ``rmse`` (lower)
=============  ==========================  ================================  =====================

The transform spec records the task (``"task"``; a spec without it is binary, as older models
are), for multiclass ``"classes"`` (class index i = ``classes[i]``, the train split's values
sorted as strings) and for regression ``"label_mean"`` / ``"label_std"`` (the model standardises
its target with them and undoes it in its last layer, so it serves values in the label's units).

Every stage asks :func:`task_of` and :data:`TASKS` instead of testing the task name itself.
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from components._shared.errors import DataError

BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
TASK_NAMES = (BINARY, MULTICLASS, REGRESSION)
AUTO = "auto"
MAX_AUTO_CLASSES = 20  # a string label with more values is refused by auto (set --task multiclass)
MAX_AMBIGUOUS_INTEGERS = 20  # integer labels with 3..this many values could be classes or numbers


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    primary: str  # the comparison metric
    higher_is_better: bool
    monitor: str  # the Keras early-stopping quantity
    monitor_mode: str
    headline: tuple  # metrics shown first in reports and decisions
    gates: tuple  # the Gates fields that apply to this task
    fit_metrics: tuple  # Keras metrics reported by train as train_<m> / eval_<m>

    def improvement(self, new: float, old: float) -> float:
        """How much better ``new`` is than ``old`` in the primary metric (positive = better)."""
        return (new - old) if self.higher_is_better else (old - new)


TASKS = {
    BINARY: Task(BINARY, "auc", True, "val_auc", "max",
                 ("auc", "pr_auc", "log_loss", "brier", "ece", "f1", "max_auc_gap"),
                 ("min_auc", "max_ece", "max_auc_gap"), ("auc",)),
    MULTICLASS: Task(MULTICLASS, "log_loss", False, "val_loss", "min",
                     ("accuracy", "macro_f1", "weighted_f1", "log_loss", "macro_auc", "ece"),
                     ("min_auc", "max_ece"), ("accuracy",)),
    REGRESSION: Task(REGRESSION, "rmse", False, "val_rmse", "min",
                     ("rmse", "mae", "r2", "mape"),
                     ("min_r2", "max_rmse"), ("rmse", "mae")),
}


def task_of(spec: Optional[dict]) -> Task:
    """The task of a transform spec (or schema, or ingest record); binary when it names none."""
    name = (spec or {}).get("task") or BINARY
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}: use one of {', '.join(TASK_NAMES)}")
    return TASKS[name]


def check_task_name(task: Optional[str]) -> str:
    """``task`` normalised ("" -> auto); DataError for an unknown name."""
    t = (task or AUTO).strip().lower()
    if t not in TASK_NAMES + (AUTO,):
        raise DataError(f"unknown task {task!r}: use auto, binary, multiclass or regression")
    return t


def _is_integer_valued(values) -> bool:
    import numpy as np

    return bool(np.all(np.isfinite(values)) and np.all(np.floor(values) == values))


def infer_task(series, label: str, task: Optional[str] = AUTO) -> tuple[str, str]:
    """(task, a sentence saying how it was decided) for a label column without missing values.

    ``auto``: two values -> binary; a float or a many-valued numeric label -> regression; a
    string or boolean label with a few values -> multiclass. An integer label with 3 to
    :data:`MAX_AMBIGUOUS_INTEGERS` values could be classes or a count: auto refuses to guess.

    Raises:
        DataError: The task is ambiguous or unknown.
    """
    import numpy as np
    import pandas as pd

    t = check_task_name(task)
    if t != AUTO:
        return t, f"the task is {t} (given)"
    s = series if isinstance(series, pd.Series) else pd.Series(series)
    n_values = int(s.nunique(dropna=True))
    if n_values <= 2:  # one value: binary's own check says what is wrong
        return BINARY, f"the task is binary (inferred: the label {label!r} has two values)"
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if numeric:
        values = s.to_numpy(dtype=np.float64)
        if not _is_integer_valued(values[np.isfinite(values)]) or n_values > MAX_AMBIGUOUS_INTEGERS:
            kind = "non-integer numbers" if not _is_integer_valued(values[np.isfinite(values)]) else f"{n_values} numeric values"
            return REGRESSION, f"the task is regression (inferred: the label {label!r} has {kind})"
        if n_values > 2:
            lo, hi = int(np.nanmin(values)), int(np.nanmax(values))
            raise DataError(f"the label {label!r} has {n_values} integer values ({lo} to {hi}), which could be "
                            f"classes or numbers: set --task multiclass or --task regression")
    if n_values > MAX_AUTO_CLASSES:
        raise DataError(f"the label {label!r} has {n_values} distinct non-numeric values, too many to infer "
                        f"multiclass classification safely: set --task multiclass")
    return MULTICLASS, f"the task is multiclass (inferred: the label {label!r} has {n_values} values)"


def class_key(value) -> str:
    """A class value as the string the spec's ``classes`` hold (1.0 and 1 are the same class)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def class_keys(series):
    """A label column as class strings (pandas object Series, None for missing)."""
    import pandas as pd

    s = series if isinstance(series, pd.Series) else pd.Series(series)
    return s.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else class_key(v)).astype(object)


def regression_values(series, label: str):
    """A regression label as float64; DataError for non-numbers or infinite values."""
    import numpy as np
    import pandas as pd

    s = series if isinstance(series, pd.Series) else pd.Series(series)
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        example = s[bad].iloc[0]
        raise DataError(f"the regression label {label!r} has {int(bad.sum())} value(s) that are not finite "
                        f"numbers, e.g. {example!r}")
    return values


def heavy_tail_warning(values, label: str) -> Optional[str]:
    """A warning sentence when a regression label is heavy-tailed (excess kurtosis > 10 or values
    more than 10 standard deviations out); None otherwise."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 10 or v.std() == 0:
        return None
    z = (v - v.mean()) / v.std()
    kurt = float(np.mean(z ** 4) - 3.0)
    if kurt > 10 or np.abs(z).max() > 10:
        return (f"the regression label {label!r} is heavy-tailed (excess kurtosis {kurt:.1f}, largest value "
                f"{np.abs(z).max():.1f} standard deviations from the mean): RMSE is dominated by a few rows; "
                "consider predicting log1p of it")
    return None


def keras_loss_and_metrics(task: Task) -> tuple:
    """(loss, metrics) the trainer compiles the core model with; the metric names make the
    early-stopping quantity :attr:`Task.monitor` (``val_auc``, ``val_loss``, ``val_rmse``).

    Regression trains with MSE on the label's units: the head's last layer undoes the target
    standardisation, so the model's own output before it is a standardised target, and Adam's
    updates do not depend on the label's scale."""
    import keras

    if task.name == MULTICLASS:
        return "sparse_categorical_crossentropy", [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if task.name == REGRESSION:
        return "mean_squared_error", [keras.metrics.RootMeanSquaredError(name="rmse"),
                                      keras.metrics.MeanAbsoluteError(name="mae")]
    return "binary_crossentropy", [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]


def class_weights(task: Task, y, mode: str) -> Optional[dict]:
    """Keras class weights for ``class_weight="balanced"`` (binary, multiclass); None otherwise."""
    import numpy as np

    if mode != "balanced" or task.name == REGRESSION or len(y) == 0:
        return None
    if task.name == BINARY:
        pos = float(np.mean(y))
        return {0: 0.5 / (1 - pos), 1: 0.5 / pos} if 0 < pos < 1 else None
    counts = np.bincount(np.asarray(y, dtype=int))
    k = int((counts > 0).sum())
    return {i: float(len(y) / (k * c)) for i, c in enumerate(counts) if c > 0}


def label_spec(train_labels, task: str, label: str) -> dict:
    """The transform spec's task fields, fitted on the train split's label column (as ingest
    wrote it): ``task``, and ``classes`` (multiclass) or ``label_mean`` / ``label_std`` (regression).

    Raises:
        DataError: A multiclass train split with fewer than two classes, or a constant regression label.
    """

    name = task_of({"task": task}).name
    out: dict = {"task": name}
    if name == MULTICLASS:
        classes = sorted({k for k in class_keys(train_labels).dropna()})
        if len(classes) < 2:
            raise DataError(f"the train split's label {label!r} has {len(classes)} class(es); at least two are needed")
        out["classes"] = classes
    elif name == REGRESSION:
        values = regression_values(train_labels, label)
        std = float(values.std())
        if not std > 0:
            raise DataError(f"the regression label {label!r} is constant ({values[0] if len(values) else 'no rows'}) "
                            "in the train split: there is nothing to learn")
        out["label_mean"], out["label_std"] = float(values.mean()), std
    return out
