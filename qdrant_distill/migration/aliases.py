"""Alias moves: swap to the new collection, roll back, finalize. Each is one recorded, reversible step.

The previous target is written to the journal *before* the single ``update_collection_aliases`` request, so a crash
between the two never loses the way back. Each command first checks the store against the journal (the target is
this run's, the previous collection is there and is the one the target's metadata records) and refuses when they
disagree; what it did is read back from the store (:class:`AliasMove`), not taken from the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel

import qdrant_distill.migration.record as record
from qdrant_distill.connectors.base import Connector
from qdrant_distill.errors import AliasConflict, MigrationError, StoreMismatch
from qdrant_distill.migration.journal import Journal, Stage

__all__ = ["AliasMove", "abandon", "finalize", "rollback", "swap"]

logger = logging.getLogger(__name__)


class AliasMove(BaseModel):
    """What an alias command did, as the store shows it: where the alias pointed before the command and after."""

    alias: str
    before: str | None
    after: str | None

    @property
    def moved(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        if not self.moved:
            return f"alias {self.alias!r} already points to {self.after!r}; nothing moved"
        if self.after is None:
            return f"alias {self.alias!r} removed (it did not exist before the swap; it pointed to {self.before!r})"
        return f"alias {self.alias!r} moved: {self.before} -> {self.after}"


def alias_move(connector: Connector, journal: Journal, command: Callable[[], object]) -> AliasMove:
    """Run ``command`` (swap or rollback of ``journal``) and read back where its alias pointed before and after."""
    alias = journal.alias
    before = connector.alias_target(alias) if alias else None
    command()
    return AliasMove(alias=alias or "", before=before, after=connector.alias_target(alias) if alias else None)


def swap(connector: Connector, journal: Journal) -> str | None:
    """Point ``journal.alias`` at the target in one request; returns the previous target (None for a new alias)."""
    if not journal.alias:
        raise MigrationError(
            f"no alias to swap: the source {journal.source_collection!r} is a plain collection",
            hint="rerun migrate with --new-alias NAME (alias= in a config) to create an alias for the new collection",
        )
    if not (journal.done(Stage.VERIFIED)):
        raise MigrationError(f"cannot swap before the target is verified (stage {journal.stage.value})")
    if journal.stage is Stage.FINALIZED:
        raise MigrationError("this migration is finalized; nothing to swap")
    check_target(connector, journal)
    current = connector.alias_target(journal.alias)
    if current == journal.target and journal.stage is Stage.SWAPPED:
        logger.info("alias %r already points to %r; nothing to do", journal.alias, journal.target)
        return journal.previous_target
    if current == journal.target:  # the request went through before a crash: only the journal lags behind
        logger.info("alias %r already points to %r", journal.alias, journal.target)
    else:
        journal.previous_target = current
        journal.save()
        logger.info("moving alias %r: %s -> %s", journal.alias, current, journal.target)
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
    check_target(connector, journal)
    current = connector.alias_target(journal.alias)
    if current not in (journal.target, journal.previous_target):
        raise AliasConflict(
            f"alias {journal.alias!r} points to {current!r}, neither the target nor the previous collection",
            hint="someone moved it since the swap; fix it by hand",
        )
    if journal.previous_target is not None and not connector.collection_exists(journal.previous_target):
        raise StoreMismatch(f"cannot roll back: the previous collection {journal.previous_target!r} does not exist "
                            "in this store", hint="the journal does not match this store; move the alias by hand")
    if journal.previous_target is None:
        logger.info("rollback: deleting alias %r (it did not exist before the swap)", journal.alias)
        connector.delete_alias(journal.alias)
    elif current != journal.previous_target:
        logger.info("rollback: moving alias %r: %s -> %s", journal.alias, current, journal.previous_target)
        connector.swap_alias(journal.alias, journal.previous_target)
    journal.advance(Stage.ROLLED_BACK)
    mirror_stage(connector, journal)
    return journal.previous_target


def finalize(connector: Connector, journal: Journal, *, drop: bool = True) -> str | None:
    """After a swap: drop the previous collection (only when nothing points to it, and the store shows the swap:
    the alias on this run's target, whose metadata records the same previous collection). Not reversible. Returns the
    collection this call dropped (None when there was none, it was gone already, or the migration was finalized
    before)."""
    if journal.stage is Stage.FINALIZED:
        logger.info("finalize: already finalized; nothing more to drop")
        return None
    if journal.stage is not Stage.SWAPPED:
        raise MigrationError(f"finalize needs a swapped migration; this one is at stage {journal.stage.value!r}")
    check_live(connector, journal)
    old = journal.previous_target
    dropped = None
    if old is not None and drop:
        if connector.alias_target(journal.alias or "") == old or old == journal.target:
            raise AliasConflict(f"refusing to drop {old!r}: alias {journal.alias!r} points to it")
        if connector.collection_exists(old):
            pointing = sorted(alias for alias, name in connector.aliases().items() if name == old)
            if pointing:  # checked before a word is said about dropping it
                raise AliasConflict(f"refusing to drop {old!r}: alias {', '.join(map(repr, pointing))} points to it",
                                    hint="move or delete that alias first; nothing was dropped")
            logger.warning("finalize: dropping the previous collection %r", old)
            connector.delete_collection(old)
            dropped = old
        else:
            logger.info("finalize: the previous collection %r no longer exists; nothing to drop", old)
    journal.advance(Stage.FINALIZED)
    mirror_stage(connector, journal)
    return dropped


def abandon(connector: Connector, journal: Journal) -> str | None:
    """Give up a migration that was never swapped in (or was rolled back): drop the target collection this run
    created. Refuses while the new collection is live or an alias points to it. Returns the dropped collection."""
    if journal.stage is Stage.FINALIZED:
        raise MigrationError(f"the migration is finalized: {journal.target!r} is live and the previous collection "
                             "is gone, so there is nothing to abandon",
                             hint="keep the new collection; the run folder may be deleted by hand")
    if journal.stage is Stage.SWAPPED:
        raise MigrationError("the migration is swapped: the new collection is live",
                             hint="roll back first (qdrant-distill rollback RUN_DIR), then abandon")
    target = journal.target
    if not target or not connector.collection_exists(target):
        return None
    pointing = sorted(alias for alias, name in connector.aliases().items() if name == target)
    if pointing:
        raise AliasConflict(f"refusing to drop {target!r}: alias {', '.join(map(repr, pointing))} points to it")
    if record.read_from(connector, target).get("run_id") != journal.run_id:
        raise MigrationError(f"refusing to drop {target!r}: this run did not create it")
    logger.info("abandon: dropping %r, the target of a migration that was never swapped in", target)
    connector.delete_collection(target)
    return target


def check_target(connector: Connector, journal: Journal) -> None:
    """Refuse unless the journal's target is a collection of this store that this run created."""
    if not journal.target or not connector.collection_exists(journal.target):
        raise StoreMismatch(f"the run's target {journal.target!r} does not exist in this store",
                            hint="pass the store the migration ran on (--path or --url)")
    if record.read_from(connector, journal.target).get("run_id") != journal.run_id:
        raise StoreMismatch(f"{journal.target!r} was not created by this run (its metadata names another run)",
                            hint="the journal does not match this store; pass the store the migration ran on")


def check_live(connector: Connector, journal: Journal) -> None:
    """Refuse unless the store shows the swap the journal records: the alias on this run's target, and the target's
    metadata naming the same previous collection (when it records the swap; the mirror is best effort)."""
    check_target(connector, journal)
    if journal.alias:
        current = connector.alias_target(journal.alias)
        if current != journal.target:
            raise AliasConflict(f"alias {journal.alias!r} points to {current!r}, not to the run's target "
                                f"{journal.target!r}: the store does not show the swap the journal records",
                                hint="swap again (qdrant-distill swap RUN_DIR), or fix the alias by hand")
    mirrored = record.read_from(connector, journal.target)
    if mirrored.get("stage") == Stage.SWAPPED.value and mirrored.get("previous_target") != journal.previous_target:
        raise StoreMismatch(f"the journal's previous collection {journal.previous_target!r} is not the one "
                            f"{journal.target!r}'s metadata records ({mirrored.get('previous_target')!r})",
                            hint="the journal does not match this store; nothing was dropped")
    elif mirrored.get("stage") != Stage.SWAPPED.value:
        logger.info("the metadata of %r does not record the swap yet: the previous collection is the journal's",
                    journal.target)


def mirror_stage(connector: Connector, journal: Journal) -> None:
    """Record the stage in the target's metadata too (best effort: the journal is the source of truth)."""
    try:
        record.write(connector, journal.target, {"previous_target": journal.previous_target, "alias": journal.alias,
                                                 "stage": journal.stage.value})
    except Exception:  # noqa: BLE001 - metadata is a mirror; the journal already holds the state
        logger.warning("could not record the stage in %r's metadata", journal.target, exc_info=True)

