"""Alias moves: swap to the new collection, roll back, finalize. Each is one recorded, reversible step.

The previous target is written to the journal *before* the single ``update_collection_aliases`` request, so a crash
between the two never loses the way back.
"""

from __future__ import annotations

import logging

from connectors.base import Connector
import qdrant_distill.record as record
from qdrant_distill.errors import AliasConflict, MigrationError
from qdrant_distill.journal import Journal, Stage

__all__ = ["abandon", "finalize", "rollback", "swap"]

logger = logging.getLogger(__name__)

def swap(connector: Connector, journal: Journal) -> str | None:
    """Point ``journal.alias`` at the target in one request; returns the previous target (None for a new alias)."""
    if not journal.alias:
        raise MigrationError(
            f"no alias to swap: the source {journal.source_collection!r} is a plain collection",
            hint="pass --alias NAME to create an alias for the new collection",
        )
    if not (journal.done(Stage.VERIFIED)):
        raise MigrationError(f"cannot swap before the target is verified (stage {journal.stage.value})")
    if journal.stage is Stage.FINALIZED:
        raise MigrationError("this migration is finalized; nothing to swap")
    current = connector.alias_target(journal.alias)
    if current == journal.target:  # the request went through before a crash: only the journal lags behind
        logger.info("alias %r already points to %r", journal.alias, journal.target)
    else:
        journal.previous_target = current
        journal.save()
        logger.warning("moving alias %r: %s -> %s", journal.alias, current, journal.target)
        connector.swap_alias(journal.alias, journal.target)
    journal.advance(Stage.SWAPPED)
    mirror_stage(connector, journal)
    return journal.previous_target


def rollback(connector: Connector, journal: Journal) -> str | None:
    """Move the alias back to the collection it pointed to before the swap (one request). Returns that collection."""
    if journal.stage is Stage.FINALIZED:
        raise MigrationError(f"cannot roll back: {journal.previous_target!r} was dropped by finalize")
    if journal.stage is not Stage.SWAPPED:
        raise MigrationError(f"nothing to roll back: the migration is at stage {journal.stage.value!r}, not swapped")
    assert journal.alias is not None
    current = connector.alias_target(journal.alias)
    if current not in (journal.target, journal.previous_target):
        raise AliasConflict(
            f"alias {journal.alias!r} points to {current!r}, neither the target nor the previous collection",
            hint="someone moved it since the swap; fix it by hand",
        )
    if journal.previous_target is None:
        logger.warning("rollback: deleting alias %r (it did not exist before the swap)", journal.alias)
        connector.delete_alias(journal.alias)
    elif current != journal.previous_target:
        logger.warning("rollback: moving alias %r: %s -> %s", journal.alias, current, journal.previous_target)
        connector.swap_alias(journal.alias, journal.previous_target)
    journal.advance(Stage.ROLLED_BACK)
    mirror_stage(connector, journal)
    return journal.previous_target


def finalize(connector: Connector, journal: Journal, *, drop: bool = True) -> str | None:
    """After a swap: drop the previous collection (only when nothing points to it). Not reversible. Returns the
    collection this call dropped (None when there was none, or the migration was finalized before)."""
    if journal.stage is Stage.FINALIZED:
        logger.info("finalize: already finalized; nothing more to drop")
        return None
    if journal.stage is not Stage.SWAPPED:
        raise MigrationError(f"finalize needs a swapped migration; this one is at stage {journal.stage.value!r}")
    old = journal.previous_target
    if old is not None and drop:
        if connector.alias_target(journal.alias or "") == old:
            raise AliasConflict(f"refusing to drop {old!r}: alias {journal.alias!r} points to it")
        if connector.collection_exists(old):
            logger.warning("finalize: dropping the previous collection %r", old)
            connector.delete_collection(old)
    journal.advance(Stage.FINALIZED)
    mirror_stage(connector, journal)
    return old


def abandon(connector: Connector, journal: Journal) -> str | None:
    """Give up a migration that was never swapped in (or was rolled back): drop the target collection this run
    created. Refuses while the new collection is live or an alias points to it. Returns the dropped collection."""
    if journal.stage in (Stage.SWAPPED, Stage.FINALIZED):
        raise MigrationError(f"the migration is {journal.stage.value}: the new collection is live",
                             hint="roll back first (qdrant-distill rollback RUN_DIR), then abandon")
    target = journal.target
    if not target or not connector.collection_exists(target):
        return None
    pointing = sorted(alias for alias, name in connector.aliases().items() if name == target)
    if pointing:
        raise AliasConflict(f"refusing to drop {target!r}: alias {', '.join(map(repr, pointing))} points to it")
    if record.read_from(connector, target).get("run_id") != journal.run_id:
        raise MigrationError(f"refusing to drop {target!r}: this run did not create it")
    logger.warning("abandon: dropping %r, the target of a migration that was never swapped in", target)
    connector.delete_collection(target)
    return target


def mirror_stage(connector: Connector, journal: Journal) -> None:
    """Record the stage in the target's metadata too (best effort: the journal is the source of truth)."""
    try:
        record.write(connector, journal.target, {"previous_target": journal.previous_target, "alias": journal.alias,
                                                 "stage": journal.stage.value})
    except Exception:  # noqa: BLE001 - metadata is a mirror; the journal already holds the state
        logger.warning("could not record the stage in %r's metadata", journal.target, exc_info=True)

