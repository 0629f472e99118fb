"""The migration journal: one JSON file per run, written atomically after every step, so a killed run resumes.

Stages are recorded in order; a stage counts as done only once its entry is written. The essentials are mirrored into
the target collection's metadata (key ``qdrant_distill``) by the migration. A file that is not one of these journals
is refused as a whole (:class:`~qdrant_distill.errors.JournalError`), and a process working in the run folder holds
its lock (:func:`run_lock`).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from qdrant_distill.connectors.base import PointId
from qdrant_distill.errors import JournalError, MigrationError, RunBusy
from qdrant_distill.folders import RunFolder, recorded_path, stored_path
from qdrant_distill.inference.formats import Backend

try:
    import fcntl
except ImportError:  # no flock on this platform: runs are not locked
    fcntl = None  # type: ignore[assignment]

__all__ = ["Counts", "IdRange", "Journal", "Stage", "run_lock"]

logger = logging.getLogger(__name__)

STORED = ("run_id", "stage", "fingerprint")  # every journal ever written holds these: a file without them is not one
# the files of the run: recorded relative to the run folder (``./sample.npz``), absolute in memory
PATH_FIELDS = ("sample_path", "student_path", "projection_path", "export_path")


class Stage(str, enum.Enum):
    """Migration stages in the order they complete."""

    PLANNED = "planned"
    SAMPLED = "sampled"
    DISTILLED = "distilled"
    GATED = "gated"
    CREATED = "created"
    REEMBEDDED = "reembedded"
    VERIFIED = "verified"
    SWAPPED = "swapped"
    ROLLED_BACK = "rolled_back"
    FINALIZED = "finalized"

    @property
    def order(self) -> int:
        return list(Stage).index(self)


class IdRange(BaseModel):
    """One contiguous id range of the source (the Ray engine's unit of work and of resume): the points from ``start``
    (inclusive, in scroll order) up to ``end`` (exclusive; None: to the end). ``done`` once all of it is written."""

    start: PointId
    end: PointId | None = None
    done: bool = False
    written: int = 0
    projected: int = 0
    skipped: list[Any] = Field(default_factory=list)
    written_at: float | None = None


@dataclass(frozen=True)
class Counts:
    """Points written, projected and skipped by a re-embed (a pass, or the run so far)."""

    written: int = 0
    projected: int = 0
    skipped: list[Any] = field(default_factory=list)


class Journal(BaseModel):
    """State of one migration run. ``path`` is where it lives; every ``save`` replaces the file atomically. The
    :data:`PATH_FIELDS` are absolute here and written relative to the run folder, so a copied or moved run folder
    uses its own files (an older journal's absolute paths: :func:`~qdrant_distill.folders.recorded_path`)."""

    path: str
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    source_collection: str = ""
    source_alias: str | None = None
    target: str = ""
    alias: str | None = None  # the alias moved (or created) by the swap
    stage: Stage = Stage.PLANNED
    stage_times: dict[str, float] = Field(default_factory=dict)
    sample_path: str | None = None
    sample_size: int = 0
    student_path: str | None = None
    projection_path: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    baseline_metrics: dict[str, float] = Field(default_factory=dict)
    selection: dict[str, Any] = Field(default_factory=dict)  # the holdout's comparison of trained and plain states
    export_path: str | None = None  # the student's export (qdrant_distill.inference.export), when it has one
    backend: Backend = Backend.TORCH  # how the student runs: its export's checked choice, or the gate's fallback
    checkpoint: Any = None  # scroll offset of the next page to re-embed
    reembed_finished: bool = False  # the last page is written (checkpoint is None again)
    ranges: list[IdRange] = Field(default_factory=list)  # the Ray engine's id ranges (the local engine: checkpoint)
    points_written: int = 0
    skipped_ids: list[Any] = Field(default_factory=list)
    # points whose vector is the projection of their stored one (earlier versions wrote this count as projected_ids)
    projected: int = Field(0, validation_alias=AliasChoices("projected", "projected_ids"))
    catch_up: dict[str, int] = Field(default_factory=dict)
    verify: dict[str, Any] = Field(default_factory=dict)
    previous_target: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    store: str | None = None  # the store the run belongs to (QdrantSettings.identity); None: not known (older runs)

    @model_validator(mode="before")
    @classmethod
    def _stored(cls, data: Any, info: ValidationInfo) -> Any:
        """A journal read from a file (``context={"path": ...}``) is an object holding what every journal holds; its
        ``path`` is where it was read."""
        path = (info.context or {}).get("path")
        if path is None:
            return data
        if not isinstance(data, dict):
            raise ValueError(f"it holds a JSON {_json_kind(data)}, not an object")
        missing = [key for key in STORED if key not in data]
        if missing:
            raise ValueError(f"it has no {', '.join(missing)}")
        return {**data, **_recorded_paths(Path(path).parent, data), "path": path}

    @classmethod
    def earlier(cls, run_dir: Path, fingerprint: dict[str, Any]) -> Journal | None:
        """The journal of an earlier attempt at this same migration, or None; reads only. A journal of a different
        migration in that folder is an error."""
        path = RunFolder(Path(run_dir)).journal.resolve()
        if not path.exists():
            return None
        journal = cls.load(path)
        if journal.fingerprint != fingerprint:
            changed = sorted(k for k in {*journal.fingerprint, *fingerprint}
                             if journal.fingerprint.get(k) != fingerprint.get(k))
            raise MigrationError(
                f"{path} belongs to a migration with other settings (differs in {changed})",
                hint="rerun with the same settings to resume, or use another --run-dir",
                changed=changed,
            )
        return journal

    @classmethod
    def open(cls, run_dir: Path, fingerprint: dict[str, Any]) -> Journal:
        """Load the run's journal (:meth:`earlier`), or start one; clears what a kill in the middle of a save left."""
        path = RunFolder(Path(run_dir)).journal.resolve()
        for stale in path.parent.glob(".journal-*"):  # left by a kill in the middle of a save
            stale.unlink(missing_ok=True)
        journal = cls.earlier(run_dir, fingerprint)
        if journal is not None:
            logger.info("resuming migration from %s (stage %s)", path, journal.stage.value)
            return journal
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MigrationError(f"cannot create the run folder {str(path.parent)!r}: {exc.strerror or exc}",
                                 hint="choose another --run-dir") from exc
        journal = cls(path=str(path), fingerprint=fingerprint, stage_times={Stage.PLANNED.value: time.time()})
        journal.save()
        return journal

    @classmethod
    def load(cls, path: str | Path) -> Journal:
        p = Path(path).resolve()
        if p.is_dir():
            p = RunFolder(p).journal
        try:
            raw = p.read_bytes()
        except FileNotFoundError as exc:
            raise JournalError(f"no migration journal at {str(p)!r}", hint="pass the run folder of a migration") from exc
        except OSError as exc:
            raise JournalError(f"cannot read migration journal {str(p)!r}: {exc.strerror or exc}") from exc
        try:
            return cls.model_validate(json.loads(raw.decode("utf-8")), context={"path": str(p)})
        except UnicodeDecodeError:
            raise _foreign(p, "it is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise _foreign(p, f"it is not JSON ({exc.msg}, line {exc.lineno})") from None
        except ValidationError as exc:
            raise _foreign(p, _problems(exc)) from None

    @property
    def run_dir(self) -> Path:
        return Path(self.path).parent

    def done(self, stage: Stage) -> bool:
        """Whether ``stage`` was reached (rollback and finalize are not on the forward path)."""
        return self.stage.order >= stage.order

    def save(self) -> None:
        """Write atomically: a temporary file in the same folder, fsync, rename."""
        target = Path(self.path)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".journal-", dir=target.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self._stored_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:  # a full disk, a folder gone or read-only: one line, the last good journal kept
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise MigrationError(f"cannot write the journal {str(target)!r}: {exc.strerror or exc}",
                                 hint="free space or fix the folder, then rerun the same command to resume") from exc
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise

    def _stored_json(self) -> str:
        data = self.model_dump(mode="json", exclude={"path"})
        for key in PATH_FIELDS:
            data[key] = stored_path(self.run_dir, data[key])
        return json.dumps(data, indent=2)

    # -- the re-embed's counters: written here only ------------------------------------------------------------
    def restart_reembed(self, ranges: list[IdRange] | None = None) -> None:
        """Nothing durable is written yet: count from zero (with the Ray engine's new ``ranges``); not saved."""
        self.points_written, self.skipped_ids, self.projected = 0, [], 0
        if ranges is not None:
            self.ranges = ranges

    def record_offset(self, offset: Any, counts: Counts, since: Counts) -> None:
        """The local engine wrote every page before scroll ``offset`` (None: the last one): totals are ``since`` (what
        the journal held when this pass started) plus ``counts`` (this pass so far); saved at once."""
        self.checkpoint = offset
        self.points_written = since.written + counts.written
        self.skipped_ids = [*since.skipped, *counts.skipped]
        self.projected = since.projected + counts.projected
        self.reembed_finished = offset is None
        self.save()

    def record_range(self, index: int, *, written: int, projected: int, skipped: list[Any]) -> None:
        """Record that range ``index`` is written (``wait=True``), totals updated; saved at once."""
        r = self.ranges[index]
        r.done, r.written, r.projected, r.skipped, r.written_at = True, written, projected, list(skipped), time.time()
        done = [x for x in self.ranges if x.done]
        self.points_written = sum(x.written for x in done)
        self.projected = sum(x.projected for x in done)
        self.skipped_ids = [i for x in done for i in x.skipped]
        self.reembed_finished = len(done) == len(self.ranges)
        self.save()

    def record_skipped(self, ids: Sequence[Any]) -> None:
        """Points the catch-up pass skipped too (no text); not saved."""
        self.skipped_ids = sorted({*self.skipped_ids, *ids}, key=str)

    def counts(self) -> Counts:
        """The re-embed's totals so far."""
        return Counts(written=self.points_written, projected=self.projected, skipped=list(self.skipped_ids))

    def advance(self, stage: Stage, **fields: Any) -> None:
        """Record that ``stage`` is complete, with its results, and save."""
        for key, value in fields.items():
            setattr(self, key, value)
        self.stage = stage
        self.stage_times[stage.value] = time.time()
        self.history.append({"stage": stage.value, "at": time.time()})
        self.save()
        logger.info("stage %s done", stage.value)


# -- a file that is not a journal -----------------------------------------------------------------------------------
def _recorded_paths(root: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The run's file paths as recorded in ``root``'s journal, made absolute (:func:`recorded_path`; a value that
    is not text is left for validation to name)."""
    written_in = RunFolder.of_sample(data.get("sample_path") if isinstance(data.get("sample_path"), str) else None)
    return {key: recorded_path(root, data[key], written_in=written_in)
            for key in PATH_FIELDS if isinstance(data.get(key), str)}


def _foreign(path: Path, what: str) -> JournalError:
    return JournalError(f"{str(path)!r} is not a qdrant-distill journal: {what}",
                        hint="nothing was changed; pass the run folder of a migration")


def _json_kind(data: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(data), "null")


def _problems(exc: ValidationError, shown: int = 3) -> str:
    """What is wrong with the fields, on one line: the first ``shown`` of pydantic's errors."""
    parts = []
    for error in exc.errors()[:shown]:
        where = ".".join(map(str, error["loc"]))
        if error["type"] == "value_error":
            parts.append(str(error["ctx"]["error"]))
            continue
        got = repr(error["input"])
        parts.append(f"{where}: {error['msg']}, got {got if len(got) <= 40 else got[:37] + '...'}")
    more = exc.error_count() - shown
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -- the run folder's lock ------------------------------------------------------------------------------------------
@contextmanager
def run_lock(run_dir: str | Path, command: str) -> Iterator[None]:
    """Hold the run folder's lock while ``command`` works in it: an exclusive ``flock`` on its lock file, which then
    names this process. When another process holds it, raise :class:`RunBusy` at once, naming that process. The
    kernel drops the lock when the holder ends, even by SIGKILL."""
    folder = RunFolder(Path(run_dir))
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MigrationError(f"cannot lock the run folder {str(folder.root)!r}: {exc.strerror or exc}",
                             hint="choose another --run-dir") from exc
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                raise RunBusy(f"the run folder {str(folder.root)!r} is in use by {holder}; {command} refused",
                              hint="wait until it ends (qdrant-distill status shows its progress), or stop it",
                              holder=holder) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """Who holds the lock, as it wrote into the lock file."""
    try:
        held = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        since = time.strftime("%H:%M:%S UTC", time.gmtime(float(held["since"])))
        return f"qdrant-distill {held['command']} (pid {int(held['pid'])}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):  # written a moment ago, not yet named
        return "another process"
