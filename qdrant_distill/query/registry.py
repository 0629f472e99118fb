"""Which model belongs to which collection: read from the collection's metadata at query time.

A migrated collection records its query encoder under the metadata key ``qdrant_distill``. :func:`encoder_for`
resolves an alias *now* and returns the encoder of whatever collection it points to, so an application never queries
a collection with the wrong model, before or after a swap or a rollback.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from qdrant_distill.connectors.base import Connector, TextSource
from qdrant_distill.errors import ConfigError, DimensionError, StudentError
from qdrant_distill.folders import DistillFolder, ExportFolder, RunFolder
from qdrant_distill.inference.encoders import Encoder, load_encoder
from qdrant_distill.inference.formats import Backend, export_folder, rebuild_command
from qdrant_distill.migration.record import read as read_record
from qdrant_distill.migration.record import write as write_record
from qdrant_distill.vectors import row_cosines, unit_rows

__all__ = ["CollectionEncoder", "Repointed", "encoder_for", "repoint"]

logger = logging.getLogger(__name__)

PROOF_POINTS = 16  # stored points re-encoded by repoint to prove a model is the collection's own
# the mean cosine of their new vectors to the stored ones: the collection's own encoder reproduces them (an int8
# export of the model that wrote them: about 0.99); in project mode a query student approximates the documents'
# projected teacher vectors. Another run's export of the same size: about 0.1 to 0.2.
PROOF_MIN_COSINE = {"reembed": 0.9, "projection-only": 0.9, "project": 0.5}


@dataclass(frozen=True)
class CollectionEncoder:
    """The query encoder of one collection, with what it was resolved from."""

    collection: str
    requested: str
    vector_name: str
    dim: int
    mode: str
    model_path: str
    encoder: Encoder

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """Normalised float32 query vectors (one row per text; a single string gives one row)."""
        return self.encoder.encode(texts, kind="query")

    def describe(self) -> str:
        return f"{self.collection} ({self.mode}, {self.dim}-d): {self.encoder.describe()}"


def encoder_for(connector_or_client: Any, alias_or_collection: str, *, default: str | None = None,
                backend: Backend | str | None = None) -> CollectionEncoder:
    """The encoder for the collection behind ``alias_or_collection`` at this moment, on the backend the migration
    recorded (``backend`` overrides it: ``torch``, ``onnx``, ``onnx-int8`` or ``auto``).

    Accepts a :class:`qdrant_distill.connectors.base.Connector` or a ``QdrantClient``. A collection without qdrant-distill metadata
    (say the teacher's original collection after a rollback) uses ``default`` (any reference
    :func:`~qdrant_distill.inference.encoders.load_encoder` accepts) when given.
    """
    connector = _as_connector(connector_or_client)
    info = connector.describe(alias_or_collection)
    record = read_record(info.metadata)
    path = record.get("query_model")
    if not path:
        if default is None:
            raise ConfigError(
                f"collection {info.name!r} (behind {alias_or_collection!r}) records no qdrant-distill encoder",
                hint="it was not made by qdrant-distill: name the model its vectors came from "
                     "(serve --default-model MODEL; encoder_for(..., default=MODEL))",
            )
        spec = info.vector(None)
        return CollectionEncoder(info.name, alias_or_collection, spec.name, int(spec.size or 0), "original", default,
                                 _load(default, None, backend or Backend.AUTO))
    _check_recorded_files(info.name, record)
    return CollectionEncoder(
        collection=info.name,
        requested=alias_or_collection,
        vector_name=record.get("vector_name", ""),
        dim=int(record["dim"]),
        mode=record.get("mode", "reembed"),
        model_path=path,
        encoder=_load(path, record.get("query_projection"), backend or record.get("query_backend", Backend.AUTO)),
    )


def _check_recorded_files(collection: str, record: dict[str, Any]) -> None:
    """A recorded query model (or projection) that is no longer where the record says: one error whose hint is
    ``repoint`` (it moved), or ``export`` of its run when only the export is gone."""
    for key in ("query_model", "query_projection"):
        value = record.get(key)
        if not value or not Path(value).is_absolute() or Path(value).exists():
            continue
        option = "--model NEW_FOLDER" + ("" if key == "query_model" else " --projection FILE")
        hint = f"if it moved, point the collection at its new place: qdrant-distill repoint {shlex.quote(collection)} {option}"
        exported = Backend(record.get("query_backend", Backend.AUTO)).exported
        if key == "query_model" and exported and ExportFolder(Path(value)).owner() is not None:
            hint = f"rebuild it: {rebuild_command(value)}; or, {hint}"
        raise StudentError(f"the {key.replace('_', ' ')} recorded for collection {collection!r} is missing: {value}",
                           hint=hint, collection=collection, missing=value)


def _load(ref: str, projection: str | None, backend: Backend | str) -> Encoder:
    try:
        return load_encoder(ref, projection=projection, backend=backend)
    except StudentError as exc:
        raise type(exc)(f"cannot load the encoder recorded for this collection: {exc.message}", hint=exc.hint,
                        **exc.context) from exc


def _as_connector(obj: Any) -> Connector:
    if isinstance(obj, Connector):
        return obj
    from qdrant_distill.connectors.qdrant import QdrantConnector

    return QdrantConnector(obj)


# -- re-pointing a collection at a moved query model -----------------------------------------------------------------
class Repointed(BaseModel):
    """What :func:`repoint` changed in a collection's record: each key, from -> to (run it again with the old
    values to undo)."""

    collection: str
    changes: dict[str, tuple[str | None, str | None]]


def repoint(connector: Connector, alias_or_collection: str, model: str | Path, *,
            projection: str | Path | None = None) -> Repointed:
    """``qdrant-distill repoint``: record ``model`` (an export folder, or the run or distillation folder holding
    it; a model folder when the collection's queries run on torch) as the query model of the collection behind
    ``alias_or_collection``. The folder must load on the recorded backend and encode the collection's dimension;
    only the metadata record changes (``query_model``, and ``query_projection`` in projection-only mode)."""
    connector = _as_connector(connector)
    info = connector.describe(alias_or_collection)
    record = read_record(info.metadata)
    if not record.get("query_model"):
        raise ConfigError(f"collection {info.name!r} records no qdrant-distill query model: nothing to re-point",
                          hint="repoint a collection a migration made (the alias after a swap, or its target)")
    backend = Backend(record.get("query_backend", Backend.AUTO))
    given = Path(model).expanduser().resolve()
    if record.get("query_projection"):
        _check_projection_only(info.name, record, given, projection)
    new_model = _model_folder(given, backend)
    new_projection = _projection_for(new_model, projection) if record.get("query_projection") else None
    encoder = _load(str(new_model), str(new_projection) if new_projection else None, backend)
    if encoder.dim != int(record["dim"]):
        raise DimensionError(f"{new_model} encodes {encoder.dim}-d vectors; {info.name!r} holds {record['dim']}-d",
                             hint="give the export of the run that made this collection")
    _prove_own(connector, info.name, record, encoder, new_model)  # before anything is written
    changes = {"query_model": str(new_model)}
    if new_projection is not None:
        changes["query_projection"] = str(new_projection)
    diff = {key: (record.get(key), value) for key, value in changes.items() if record.get(key) != value}
    write_record(connector, info.name, changes)
    for key, (old, new) in diff.items():
        logger.info("repoint: %s of %r: %s -> %s", key, info.name, old, new)
    return Repointed(collection=info.name, changes=diff)


def _text_of(record: dict[str, Any]) -> TextSource:
    """Where the collection's texts are: the record's text source, else its run's journal's, else ``text``."""
    if record.get("text_field") or record.get("text_template"):
        return TextSource(field=record.get("text_field"), template=record.get("text_template"))
    journal = Path(str(record.get("journal") or ""))
    if journal.is_file():
        from qdrant_distill.migration.journal import Journal

        try:
            fingerprint = Journal.load(journal.parent).fingerprint
            if fingerprint.get("text_field") or fingerprint.get("text_template"):
                return TextSource(field=fingerprint.get("text_field"), template=fingerprint.get("text_template"))
        except Exception:  # noqa: BLE001 - a damaged journal: the default field
            logger.debug("repoint: the journal %s gives no text source", journal, exc_info=True)
    return TextSource(field="text")


def _prove_own(connector: Connector, collection: str, record: dict[str, Any], encoder: Encoder, model: Path) -> None:
    """A few stored points of ``collection``, encoded again by ``encoder``: their vectors must be the stored ones
    (:data:`PROOF_MIN_COSINE` for the collection's mode), or the model is another collection's."""
    mode = record.get("mode", "reembed")
    sample = connector.sample(collection, PROOF_POINTS, text=_text_of(record),
                              vector_name=record.get("vector_name") or None, seed=0)
    vectors = encoder.encode(sample.texts, kind="query" if mode == "project" else "document")
    cosine = float(row_cosines(unit_rows(vectors), unit_rows(sample.vectors)).mean())
    need = PROOF_MIN_COSINE.get(mode, PROOF_MIN_COSINE["reembed"])
    if cosine >= need:
        logger.info("repoint: %s re-encodes %d stored points of %r at mean cosine %.4f (at least %.2f)", model,
                    len(sample.texts), collection, cosine, need)
        return
    raise ConfigError(f"{model} is not the query model of {collection!r}: it re-encodes {len(sample.texts)} of its "
                      f"stored points at mean cosine {cosine:.2f} (its own model: at least {need}); nothing "
                      "was changed", hint=f"give the export of the run that made {collection!r} (run id "
                      f"{record.get('run_id', '?')})")


def _check_projection_only(collection: str, record: dict[str, Any], given: Path, projection: str | Path | None) -> None:
    """A projection-only collection's queries run on the teacher and a projection: a run or distill folder holds
    only the projection, so it needs the teacher named with it (said at once, not after a model fails to load)."""
    run = RunFolder(given)
    folder = run.distill.root if run.is_run() else given
    distilled = DistillFolder(folder)
    if distilled.projection.is_file() and not distilled.student.exists() and export_folder(folder) is None:
        raise ConfigError(f"{given} holds the projection of projection-only collection {collection!r}, not a model: "
                          "its queries run on the teacher followed by that projection",
                          hint=f"give the teacher and the projection: --model TEACHER_FOLDER --projection "
                          f"{distilled.projection}")
    if projection is not None:
        from qdrant_distill.inference.projection import PCAProjection

        try:
            loaded = PCAProjection.load(Path(projection).expanduser())
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
            raise ConfigError(f"--projection {str(projection)!r} is not a projection: {type(exc).__name__}: {exc}",
                              hint="give the projection.npz of the run that made this collection") from None
        if loaded.dim != int(record["dim"]):
            raise DimensionError(f"--projection {str(projection)!r} projects to {loaded.dim}-d; {collection!r} holds "
                                 f"{record['dim']}-d", hint="give the projection.npz of the run that made it")


def _model_folder(path: Path, backend: Backend) -> Path:
    """The folder to record for ``path`` on ``backend``: an export folder for the exported backends (a run or
    distillation folder stands for its ``onnx/``), the model folder for torch."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist", hint="give the folder the query model now lives in")
    run = RunFolder(path)
    if run.is_run():
        path = run.distill.root
    if backend is Backend.TORCH:
        distilled = DistillFolder(path)
        return distilled.student if distilled.is_distill_output() else path
    found = export_folder(path)
    if found is None:
        raise ConfigError(f"{path} is not an export folder (no {ExportFolder.MANIFEST}); this collection's queries "
                          f"run on {backend}", hint="give the folder that holds export.json (a run's student/onnx)")
    return found.resolve()


def _projection_for(model: Path, given: str | Path | None) -> Path:
    """The projection of a projection-only collection: the one given, else the one beside the model's export."""
    candidates = [Path(given).expanduser().resolve()] if given else [DistillFolder(model.parent).projection,
                                                                     DistillFolder(model).projection]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(f"this collection's queries are projected, and no projection was found at "
                          f"{', '.join(map(str, candidates))}", hint="give it: --projection FILE (projection.npz)")
    return found
