"""Reading a collection in Qdrant's own order, over any :class:`~qdrant_distill.connectors.base.Connector`: the id order scrolls
follow, contiguous id ranges (the Ray engine's unit of work), the pages of one range, which vectors a scroll must
fetch, and the stored vectors of given ids. The one home of Qdrant's id order (re-embed, verify and the Ray engine
use it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from qdrant_distill.connectors.base import UNNAMED, Connector, Page, PointId
from qdrant_distill.errors import ConfigError

__all__ = ["as_point_id", "existing_ids", "id_key", "id_ranges", "read_vectors", "scroll_range", "stored_vectors"]

ID_SCROLL_PAGE = 10_000  # ids per request of the boundary scroll (ids only: a few hundred KB a page)
RETRIEVE_BATCH = 256


def id_key(pid: PointId) -> tuple[int, int | str]:
    """A point id's place in Qdrant's scroll order: integer ids first, by value, then UUIDs (as canonical strings)."""
    return (0, pid) if isinstance(pid, int) else (1, str(pid).lower())


def as_point_id(text: str) -> PointId | None:
    """The point id a document id written as text stands for: an unsigned integer, or a UUID (canonical form);
    None when it can be neither."""
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def existing_ids(connector: Connector, collection: str, doc_ids: Sequence[str]) -> set[str]:
    """Which of ``doc_ids`` (ids as text, e.g. a labelled corpus's) are point ids of ``collection``: retrieved in
    batches, without payloads or vectors."""
    wanted = {d: pid for d in doc_ids if (pid := as_point_id(d)) is not None}
    by_id = {str(pid): d for d, pid in wanted.items()}
    ids = list(wanted.values())
    found: set[str] = set()
    for start in range(0, len(ids), RETRIEVE_BATCH):
        for p in connector.retrieve(collection, ids[start : start + RETRIEVE_BATCH], with_payload=False,
                                    with_vectors=False):
            if str(p.id) in by_id:
                found.add(by_id[str(p.id)])
    return found


def read_vectors(info_vectors: Sequence[str], vector_name: str, need_teacher: bool) -> list[str] | bool:
    """Which vectors a scroll must fetch: the others kept unchanged, plus the teacher's when needed."""
    names = [v for v in info_vectors if v != vector_name]
    if need_teacher:
        names.append(vector_name)
    if not names:
        return False
    if names == [UNNAMED]:
        return True
    return names


def id_ranges(connector: Connector, collection: str, size: int) -> list[tuple[PointId, PointId | None]]:
    """Split ``collection`` into contiguous id ranges of ``size`` points: one scroll of ids only (no payload, no
    vectors) takes every ``size``-th id as a boundary. Returns ``(start, end)`` pairs, ``end`` exclusive (None: to
    the end); an empty collection gives none."""
    starts: list[PointId] = []
    seen = 0
    for page in connector.scroll(collection, page_size=ID_SCROLL_PAGE, with_payload=False, with_vectors=False):
        for p in page.points:
            if seen % size == 0:
                starts.append(p.id)
            seen += 1
    return list(zip(starts, [*starts[1:], None]))


def scroll_range(
    connector: Connector, collection: str, start: PointId, end: PointId | None, *, page_size: int,
    vectors: list[str] | bool,
) -> Iterator[Page]:
    """The pages of one id range: a scroll from ``start`` that stops before ``end`` (points added or deleted
    meanwhile move no boundary: the order decides, not a count). The last page has ``next_offset`` None."""
    limit = None if end is None else id_key(end)
    for page in connector.scroll(collection, page_size=page_size, with_payload=True, with_vectors=vectors,
                                 offset=start):
        points = page.points if limit is None else [p for p in page.points if id_key(p.id) < limit]
        last = page.next_offset is None or len(points) < len(page.points) or (
            limit is not None and id_key(page.next_offset) >= limit)
        yield Page(points=points, offset=page.offset, next_offset=None if last else page.next_offset)
        if last:
            return


def stored_vectors(connector: Connector, collection: str, vector_name: str, doc_ids: list[str]) -> np.ndarray:
    """The stored vectors of documents whose ids are point ids of ``collection`` (a labelled corpus in the project
    modes, where the new collection answers with their projections). Missing ones are one :class:`ConfigError`."""
    as_ids = {d: as_point_id(d) for d in doc_ids}  # one reading of a document id as a point id (existing_ids')
    point_ids: list[Any] = [pid for pid in dict.fromkeys(as_ids.values()) if pid is not None]
    wanted = read_vectors([vector_name], vector_name, True)
    found: dict[str, Any] = {}
    for start in range(0, len(point_ids), RETRIEVE_BATCH):
        for p in connector.retrieve(collection, point_ids[start : start + RETRIEVE_BATCH], with_payload=False,
                                    with_vectors=wanted):
            if p.vectors.get(vector_name) is not None:
                found[str(p.id)] = p.vectors[vector_name]
    found = {d: found[str(pid)] for d, pid in as_ids.items() if pid is not None and str(pid) in found}
    missing = [d for d in doc_ids if d not in found]
    if missing:
        raise ConfigError(
            f"{len(missing)} of {len(doc_ids)} labelled documents have no stored vector in {collection} "
            f"(first ids: {', '.join(missing[:3])})",
            hint="in project modes the labelled corpus ids must be point ids of the source collection",
        )
    return np.asarray([found[d] for d in doc_ids], dtype=np.float32)
