"""What ingest returns and the pieces both of its paths (files, ``bq://``) share: the result record,
the id-column switch-off value and the multiclass unseen-class warning. ``core`` (files) and
``bigquery`` both import this module; neither imports the other for these."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from components._shared.task import BINARY

logger = logging.getLogger("components.ingest.core")  # the warnings' logger, as before the move


@dataclasses.dataclass
class IngestResult:
    source_uri: str
    label: str
    positive_label: Optional[str]  # binary only
    negative_label: Optional[str]
    rows: dict
    columns: list
    content_hash: str
    dropped_missing_label: int
    id_column: Optional[str] = None  # the column the split is hashed on
    id_column_source: Optional[str] = None  # "given" | "detected" | None (split by row position)
    split: str = ""  # how rows were assigned to splits, in a sentence
    split_rule: str = ""  # the rule's name, id column or seed, fractions (components._shared.split.rule_of)
    warnings: list = dataclasses.field(default_factory=list)
    task: str = BINARY
    task_reason: str = ""  # how the task was decided, in a sentence
    classes: Optional[list] = None  # multiclass: the train split's classes, sorted as strings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_ID = "none"  # id_column value that turns detection off: split by row position (bq://: row hash)


def class_warnings(seen: dict, warnings: list) -> list:
    """Multiclass: the train split's classes (sorted), appending a warning for each other split
    whose classes the train split lacks. ``seen`` maps split code (0 train, 1 eval, 2 test) to a set
    of class keys; shared by the file path and the BigQuery path."""
    classes = sorted(seen[0])
    for name, code in (("eval", 1), ("test", 2)):
        unseen = sorted(set(seen[code]) - set(classes))
        if unseen:
            warnings.append(f"the {name} split has label class(es) the train split lacks: "
                            f"{', '.join(map(repr, unseen[:5]))}")
            logger.warning("%s", warnings[-1])
    return classes
