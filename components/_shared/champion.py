"""The champion: the one registry lookup, and the one artifact layout of a registered version.

A registered model version's artifacts (deploy writes them with :func:`stage_artifacts`;
compare, validate's ``champion_reference`` and the monitor read them through :class:`Champion`)::

    model/        the trained model folder: model.keras, transform_spec.json, scorer.tflite
    data/         schema.json (the schema validate enforced), reference.parquet (a train sample)
    saved_model/  the TF Serving SavedModel
    reports/      evaluation.json, decision.json, ingest.json
    card/         model_card.md

These folders are artifacts of the version's run, the training run (train logs ``model/``,
deploy the rest). The version's registry ``source`` is the MLflow model train logged in that
run (``components._shared.pyfunc``), so ``mlflow.pyfunc.load_model("models:/<name>@champion")``
scores raw rows; a version registered without a training run (older versions, or train not
tracked in this registry) has them in a ``register-<name>`` run and its ``source`` is ``model/``.
MLflow is imported only when a registry is actually read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Optional

from components._shared import io, registry
from components._shared.errors import DataError, PipelineError

logger = logging.getLogger(__name__)

# Folders of a registered version.
MODEL = "model"
DATA = "data"
SAVED_MODEL = "saved_model"
REPORTS = "reports"
CARD = "card"
# Files inside them.
SCHEMA_FILE = "schema.json"
REFERENCE_FILE = "reference.parquet"
EVALUATION_FILE = "evaluation.json"
DECISION_FILE = "decision.json"
INGEST_FILE = "ingest.json"
CARD_FILE = "model_card.md"
# Rows of the train split kept as the reference sample later runs and the monitor compare with.
REFERENCE_ROWS = 20_000
# Where a version's split rule (components._shared.split.rule_of) is recorded: a version tag, train's
# lineage tag on the version's training run, and ingest's record in reports/ingest.json.
SPLIT_RULE_TAG = "split_rule"
LINEAGE_SPLIT_RULE_TAG = "lineage.split_rule"


def stage_artifacts(dest: str, model_dir: str, saved_model_dir: str, schema: dict, train_data_path: str,
                    evaluation: dict, decision: dict, ingest_info: dict) -> dict:
    """Write a version's ``data/`` and ``reports/`` under ``dest``.

    Returns:
        Registry folder -> local path for every folder of the layout except ``card/`` (deploy adds it).
    """
    data_dir, reports = os.path.join(dest, DATA), os.path.join(dest, REPORTS)
    io.write_json(schema, os.path.join(data_dir, SCHEMA_FILE))
    io.write_parquet(io.sample_parquet(train_data_path, REFERENCE_ROWS, seed=0), os.path.join(data_dir, REFERENCE_FILE))
    io.write_json(evaluation, os.path.join(reports, EVALUATION_FILE))
    io.write_json(decision, os.path.join(reports, DECISION_FILE))
    io.write_json(ingest_info, os.path.join(reports, INGEST_FILE))
    return {MODEL: model_dir, SAVED_MODEL: saved_model_dir, DATA: data_dir, REPORTS: reports}


@dataclasses.dataclass
class ChampionData:
    """The ``data/`` folder of a version: either file may be missing (an older version)."""

    folder: str
    schema_path: Optional[str]
    sample_path: Optional[str]

    @property
    def schema(self) -> Optional[dict]:
        return io.read_json(self.schema_path) if self.schema_path else None


@dataclasses.dataclass
class Champion:
    """A registered version behind an alias (``champion`` unless asked otherwise)."""

    client: Any = dataclasses.field(repr=False)
    ref: registry.ModelRef

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def tags(self) -> dict:
        return self.ref.tags

    def download(self, folder: str, dest: str) -> str:
        """Download one folder of the layout to ``dest``; returns the local path.

        Raises:
            DataError: The registry's artifact store could not deliver it.
        """
        try:
            return registry.download(self.client, self.ref, dest, folder)
        except Exception as exc:
            raise DataError(f"cannot download the {folder} artifacts of {self.name} v{self.version}: {exc}") from exc

    def model_dir(self, dest: str) -> str:
        """The trained model folder (``model/``), scorable with :func:`components._shared.scoring.score`."""
        return self.download(MODEL, dest)

    def data(self, dest: str) -> ChampionData:
        """The schema and reference sample (``data/``)."""
        local = self.download(DATA, dest)
        schema, sample = os.path.join(local, SCHEMA_FILE), os.path.join(local, REFERENCE_FILE)
        return ChampionData(local, schema if os.path.exists(schema) else None,
                            sample if os.path.exists(sample) else None)

    def split_rule(self, dest: str) -> Optional[str]:
        """The split rule of the data the version was trained on, or None when none was recorded
        (a version trained before split rules were named).

        The version's tag, else its training run's lineage tag (train sets it; a version registered
        from that run has the run's id), else ``reports/ingest.json`` (downloaded to ``dest``).
        """
        rule = self.tags.get(SPLIT_RULE_TAG)
        if not rule and self.ref.run_id:
            try:
                rule = self.client.get_run(self.ref.run_id).data.tags.get(LINEAGE_SPLIT_RULE_TAG)
            except Exception as exc:  # the run was deleted: the reports may still say
                logger.warning("cannot read run %s of %s v%s: %s", self.ref.run_id, self.name, self.version, exc)
        if not rule:
            try:
                rule = io.read_json(os.path.join(self.download(REPORTS, dest), INGEST_FILE)).get("split_rule")
            except (DataError, OSError, ValueError):  # no reports (an older version): nothing recorded
                rule = None
        return rule or None

    def evaluation(self, dest: str) -> dict:
        """The version's evaluation at training time (``reports/evaluation.json``)."""
        return io.read_json(os.path.join(self.download(REPORTS, dest), EVALUATION_FILE))


def absent_reason(tracking_uri: str) -> Optional[str]:
    """Why there can be no champion without asking the registry, or None.

    A local SQLite store that does not exist yet holds no model: saying so skips MLflow's
    import (about 2 s) and does not create the file.
    """
    if not tracking_uri:
        return "no registry configured"
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri[len("sqlite:///"):]
        if path and path != ":memory:" and not os.path.exists(path):
            return "no registry yet"
    return None


def find_champion(tracking_uri: str, model_name: str, alias: str = registry.CHAMPION) -> Optional[Champion]:
    """The version behind ``alias`` of ``model_name``, or None when there is none.

    Raises:
        DataError: The registry could not be read (one sentence naming it).
    """
    if absent_reason(tracking_uri):
        return None
    try:
        client = registry.configure(tracking_uri)
        ref = registry.get_alias(client, model_name, alias)
    except PipelineError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read the model registry at {tracking_uri}: {first}") from exc
    if ref is not None:
        logger.info("%s of %s is version %s", alias, model_name, ref.version)
    return Champion(client, ref) if ref is not None else None


def find_version(tracking_uri: str, model_name: str, version: str = "", alias: str = registry.CHAMPION) -> Champion:
    """Registered version ``version`` (a number) of ``model_name``, or the one behind ``alias``.

    For users who ask for a version (``python -m pipelines predict``, the prediction pipeline):
    unlike :func:`find_champion`, a missing model, version or alias is an error, not "none yet".

    Raises:
        DataError: No registry, no such model, version or alias, or the registry could not be read
            (one sentence naming it).
    """
    from components._shared.names import check_model_name

    check_model_name(model_name)  # it goes into a registry search filter
    version, alias = str(version or "").strip(), (alias or registry.CHAMPION).strip()
    why = absent_reason(tracking_uri)
    if why:
        raise DataError(f"there is no model {model_name!r} to score with: {why} ({tracking_uri or 'no tracking URI'})")
    if version and not version.isdigit():
        raise DataError(f"the model version must be a number, got {version!r}")
    try:
        client = registry.configure(tracking_uri)
        known = [str(mv.version) for mv in client.search_model_versions(f"name = '{model_name}'")]
        ref = registry.get_alias(client, model_name, alias) if (known and not version) else None
    except PipelineError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read the model registry at {tracking_uri}: {first}") from exc
    if not known:
        raise DataError(f"the model registry at {tracking_uri} has no model {model_name!r}")
    if version:
        if version not in known:
            shown = ", ".join(sorted(known, key=int))
            raise DataError(f"model {model_name!r} has no version {version} (registered versions: {shown})")
        mv = client.get_model_version(model_name, version)
        ref = registry.ModelRef(model_name, str(mv.version), mv.run_id, mv.source, dict(mv.tags or {}))
    elif ref is None:
        raise DataError(f"model {model_name!r} has no version with the alias {alias!r}")
    logger.info("%s v%s (%s)", model_name, ref.version, f"version {version}" if version else f"alias {alias}")
    return Champion(client, ref)
