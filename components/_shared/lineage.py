"""The champion's lineage against this run's: was it trained on splits made by the same rule?

Compare re-scores the champion on this run's test split. When the champion's splits were made by
another split rule (:func:`components._shared.split.rule_of`: another hash, id column or seed), rows
it trained on can sit in that test split, so its score is optimistic and the comparison favours it.
The decision does not change (a comparison that favours the champion only makes promotion harder);
the user is told, in the decision's reasons and the log.
"""

from __future__ import annotations

import logging
from typing import Optional

logger = logging.getLogger(__name__)


def split_rule_warning(champion_version: str, champion_rule: Optional[str], rule: Optional[str]) -> Optional[str]:
    """One sentence when the champion's split rule is unknown or not ``rule`` (this run's), else None.

    Args:
        champion_version: The champion's registry version.
        champion_rule: Its recorded split rule; None or empty when none was recorded.
        rule: This run's split rule (ingest's ``split_rule``); None or empty when unknown, then nothing is said.
    """
    if not rule or champion_rule == rule:
        return None
    theirs = f"recorded as {champion_rule}" if champion_rule else "none recorded"
    return (f"Warning: the champion v{champion_version} was trained on splits made by another rule ({theirs}; "
            f"this run's is {rule}): some of this run's test rows may be rows it trained on, so its score may be "
            "optimistic")


def note_champion_split_rule(decision, champion, rule: Optional[str], dest: str) -> Optional[str]:
    """Add :func:`split_rule_warning` for ``champion`` to ``decision.reasons`` (a compare Decision) and the log.

    Args:
        decision: Compare's decision; its promote is left as it is.
        champion: A :class:`components._shared.champion.Champion`, or None (nothing to say).
        rule: This run's split rule (the test split's ``split_rule`` metadata).
        dest: A folder for the champion's reports when its tags do not say.

    Returns:
        The warning, or None.
    """
    if champion is None or not rule:
        return None
    warning = split_rule_warning(champion.version, champion.split_rule(dest), rule)
    if warning:
        logger.warning("%s", warning)
        decision.reasons.append(warning)
    return warning
