"""The demo: a real collection in the embedded Qdrant (shipped WordNet glosses, real teacher vectors) behind an alias,
migrated end to end to a distilled 128-d student."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_distill.cli.demo_data import load_demo_texts
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.connectors.qdrant import QdrantConnector
from qdrant_distill.distillation.config import DistillConfig
from qdrant_distill.folders import RunFolder
from qdrant_distill.inference.encoders import encode_with_progress, load_encoder
from qdrant_distill.migration.config import GateConfig, MigrationConfig
from qdrant_distill.migration.dims import DimsReport
from qdrant_distill.migration.pipeline import MigrationReport, migrate
from qdrant_distill.query.registry import encoder_for

__all__ = ["DEMO_ALIAS", "DEMO_COLLECTION", "build_demo_collection", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_ALIAS = "demo_docs"
DEMO_COLLECTION = "demo_docs_v1"
DEMO_SAMPLE = 1000  # points the student learns from; the whole collection (2,000) is re-embedded
DEMO_QUERIES = ("a large natural stream of water", "a device for measuring time", "to feel great sorrow")


def teacher_vectors(texts: list[str], teacher: str, cache_dir: Path) -> np.ndarray:
    """The teacher's vectors of ``texts``, computed once and cached (keyed by model and texts)."""
    key = hashlib.sha256((str(Path(teacher).name) + "\n".join(texts)).encode()).hexdigest()[:16]
    cache = cache_dir / f"demo_teacher_{key}.npy"
    if cache.exists():
        return np.load(cache)
    logger.info("embedding %d demo texts with the teacher %s (once; cached in %s)", len(texts), teacher, cache)
    vectors = encode_with_progress(load_encoder(teacher, batch_size=32), texts, kind="document",
                                   description="teacher: demo texts")
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def build_demo_collection(conn: QdrantConnector, vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
    """(Re)create ``demo_docs_v1`` with the texts and teacher vectors, behind the alias ``demo_docs``."""
    from qdrant_client import models

    for alias, target in conn.aliases().items():
        if alias == DEMO_ALIAS or target.startswith(DEMO_ALIAS):
            conn.delete_alias(alias)
    for name in conn.collections():
        if name.startswith(DEMO_ALIAS):
            logger.info("demo: dropping the previous demo collection %r", name)
            conn.delete_collection(name)
    conn.client.create_collection(
        DEMO_COLLECTION, vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE)
    )
    points = [Point(id=i, payload={"text": r["text"], "title": r["title"], "pos": r["pos"], "wordnet_id": r["_id"]},
                    vectors={UNNAMED: v}) for i, (r, v) in enumerate(zip(rows, vectors))]
    for start in range(0, len(points), 256):
        conn.upsert(DEMO_COLLECTION, points[start : start + 256])
    conn.create_alias(DEMO_ALIAS, DEMO_COLLECTION)


def run_demo(
    *,
    path: str = "./qdrant_data",
    teacher: str = "models/all-mpnet-base-v2",
    student: str = "models/all-MiniLM-L6-v2",
    cache_dir: str = "models/cache",
    run_dir: str = "runs/demo",
    limit: int | None = None,
    dim: int = 128,
    gate: GateConfig | None = None,
    progress: bool = True,
) -> tuple[MigrationReport, list[tuple[str, list[str], list[str]]]]:
    """Build the demo collection, migrate it, print its dimension table, and answer a few queries with the teacher
    (old collection) and with the student (through the alias, with ``encoder_for``)."""
    rows = load_demo_texts(limit)
    texts = [r["text"] for r in rows]
    vectors = teacher_vectors(texts, teacher, Path(cache_dir))
    shutil.rmtree(run_dir, ignore_errors=True)
    with QdrantConnector.open(path=path) as conn:
        build_demo_collection(conn, vectors, rows)
        config = MigrationConfig(
            source=DEMO_ALIAS,
            dim=dim,
            gate=gate or GateConfig(),
            sample_size=min(DEMO_SAMPLE, len(rows)),
            student=DistillConfig(base_model=student, epochs=1, max_seq_length=64),
            teacher_model=teacher,
            run_dir=run_dir,
            progress=progress,
        )
        report = migrate(config, connector=conn)
        show_dims(Path(run_dir))
        # the same queries, answered by the student through the alias and by the teacher on the old collection
        student_enc = encoder_for(conn, DEMO_ALIAS)
        teacher_enc = load_encoder(teacher)
        answers = []
        for query in DEMO_QUERIES:
            by_student = _titles(conn, student_enc.collection, student_enc.encode(query)[0], student_enc.vector_name)
            by_teacher = _titles(conn, DEMO_COLLECTION, teacher_enc.encode(query, kind="query")[0], "")
            answers.append((query, by_teacher, by_student))
    return report, answers


def show_dims(run_dir: Path) -> None:
    """Print the dimension table the migration wrote: what each size keeps and costs, PCA only."""
    path = RunFolder(run_dir).dims
    if path.exists():
        print(DimsReport.read(path).render(), flush=True)


def _titles(conn: QdrantConnector, collection: str, vector: np.ndarray, vector_name: str) -> list[str]:
    hits = conn.search(collection, vector, limit=3, vector_name=vector_name or None)
    found = {p.id: p.payload.get("title", "") for p in conn.retrieve(collection, [pid for pid, _ in hits])}
    return [found[pid] for pid, _ in hits]
