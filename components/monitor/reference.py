"""What a window is compared with: the champion's schema, training sample, model and its metrics
at training (``reports/evaluation.json``: AUC for binary, macro AUC for multiclass, RMSE for regression).

By default all four come from the registry (the version behind the ``champion`` alias, through
:mod:`components._shared.champion`); a given table (``reference_uri``) and schema
(``schema_uri``) can stand in for the sample and the schema.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Optional

from components._shared import io
from components._shared.errors import DataError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Reference:
    """What the window is compared with: a schema, a data sample, and (for decay) the model."""

    schema: dict
    data: object  # DataFrame
    source: str
    model_name: str
    version: Optional[str] = None
    auc_at_training: Optional[float] = None
    fetch_model: Optional[Callable[[str], str]] = dataclasses.field(default=None, repr=False)
    training_metrics: Optional[dict] = None  # the version's evaluation metrics, by name

    def at_training(self, metric: str) -> Optional[float]:
        """A metric of the champion at training (binary ``auc`` also from ``auc_at_training``)."""
        value = (self.training_metrics or {}).get(metric)
        if value is None and metric == "auc":
            value = self.auc_at_training
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None


def resolve_reference(
    model_name: str,
    tracking_uri: str,
    workdir: str,
    reference_uri: Optional[str] = None,
    schema_uri: Optional[str] = None,
    label: Optional[str] = None,
) -> Reference:
    """The champion's schema and reference sample from the registry, or a given table.

    Args:
        reference_uri: A table to compare with instead of the champion's reference sample.
        schema_uri: A schema JSON to use instead of the champion's (or an inferred one).
        label: Label column when the schema has to be inferred from ``reference_uri``.

    Raises:
        DataError: No champion and no reference given, or the champion lacks its data artifacts.
    """
    from components._shared.champion import find_champion
    from components._shared.schema import infer_schema

    champ = find_champion(tracking_uri, model_name) if tracking_uri else None
    schema = None
    if schema_uri:
        try:
            schema = io.read_json(schema_uri)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the schema {schema_uri}: {exc}") from exc
    version = auc = fetch = metrics = None
    if champ is not None:
        version = champ.version
        fetch = champ.model_dir
        try:
            metrics = dict(champ.evaluation(os.path.join(workdir, "reports"))["metrics"])
        except Exception as exc:  # an older version without reports: decay cannot be measured
            logger.warning("no training metrics for %s v%s: %s", model_name, version, exc)
            metrics = None
        auc = (metrics or {}).get("auc")
    if reference_uri:
        data = io.read_table(reference_uri)
        if len(data) == 0:
            raise DataError(f"the reference {reference_uri} has no rows")
        if schema is None and champ is not None:
            schema = _champion_data(champ, workdir)[0]
        if schema is None:
            schema = infer_schema(data, label or "", None)
        source = f"table {reference_uri}"
    else:
        if champ is None:
            raise DataError(
                f"model {model_name!r} has no champion in the registry at {tracking_uri or '(none)'}; "
                "train one first (python -m pipelines run) or pass --reference"
            )
        champ_schema, data = _champion_data(champ, workdir)
        schema = schema or champ_schema
        source = f"champion {model_name} v{version}"
    return Reference(
        schema=schema,
        data=data,
        source=source,
        model_name=model_name,
        version=version,
        auc_at_training=None if auc is None else float(auc),
        fetch_model=fetch,
        training_metrics=metrics,
    )


def _champion_data(champ, workdir: str):
    """(schema, reference sample) of the champion; both must be in its ``data/`` folder."""
    from components._shared.champion import REFERENCE_FILE, SCHEMA_FILE

    data = champ.data(os.path.join(workdir, "data"))
    for path, name in ((data.schema_path, SCHEMA_FILE), (data.sample_path, REFERENCE_FILE)):
        if path is None:
            raise DataError(
                f"{champ.name} v{champ.version} has no data/{name} in the registry; "
                "pass --reference (and --schema) to compare with another table"
            )
    return data.schema, io.read_parquet(data.sample_path)
