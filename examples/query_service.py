"""The query path of an application: always encode with the model that belongs to the collection behind the alias.

Before a migration, after the swap, after a rollback: ``encoder_for`` reads the collection's metadata at that moment,
so the query vectors always match the stored ones.

    python examples/query_service.py "a large natural stream of water" --path ./qdrant_data --alias demo_docs \
        --fallback models/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse

import qdrant_distill as qd
from qdrant_distill.connectors import QdrantConnector


def search(conn: QdrantConnector, alias: str, query: str, *, fallback: str | None, limit: int = 5) -> list[tuple]:
    """Top hits for ``query`` as (score, title, text); ``fallback`` is the original model for unmigrated collections."""
    encoder = qd.encoder_for(conn, alias, default=fallback)
    hits = conn.search(encoder.collection, encoder.encode(query)[0], limit=limit, vector_name=encoder.vector_name)
    points = {p.id: p for p in conn.retrieve(encoder.collection, [pid for pid, _ in hits])}
    return [(score, points[pid].payload.get("title"), points[pid].payload.get("text")) for pid, score in hits]


def main() -> None:
    parser = argparse.ArgumentParser(description="search through an alias with the right encoder")
    parser.add_argument("query")
    parser.add_argument("--path", default="./qdrant_data")
    parser.add_argument("--alias", default="demo_docs")
    parser.add_argument("--fallback", default=None, help="model of collections not made by qdrant-distill")
    args = parser.parse_args()
    with QdrantConnector.open(path=args.path) as conn:
        for score, title, text in search(conn, args.alias, args.query, fallback=args.fallback):
            print(f"{score:.3f}  {title}: {text}")


if __name__ == "__main__":
    main()
