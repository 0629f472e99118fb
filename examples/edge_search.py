"""Search a distilled collection on a device: no Qdrant server, no torch.

Write the Edge folder once, where the migrated collection is (a run folder, or the alias it swapped):

    qdrant-distill export-edge runs/docs-128 --out ./edge --path ./qdrant_data

then copy ./edge to the device and query it there. The device needs ``pip install 'qdrant-distill[onnx,edge]'`` for
an ONNX student (int8 or fp32), or only ``'qdrant-distill[edge]'`` for a static one:

    python examples/edge_search.py "a large natural stream of water" --folder ./edge
    python examples/edge_search.py - --folder ./edge < queries.txt      # one query a line, the folder opened once
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qdrant_distill import DistillError, edge


def search(index: edge.EdgeIndex, query: str, *, limit: int = 5, text_field: str = "text") -> list[tuple]:
    """Top hits for ``query`` as (score, id, text): the student encodes it, the shard answers, in this process."""
    return [(hit.score, hit.id, hit.payload.get(text_field)) for hit in index.search(query, limit=limit)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="search an Edge folder written by qdrant-distill export-edge")
    parser.add_argument("query", help="the query, or - to read one query a line from stdin")
    parser.add_argument("--folder", default="./edge")
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--text-field", default="text", help="the payload key to print")
    args = parser.parse_args(argv)
    queries = [line.strip() for line in sys.stdin if line.strip()] if args.query == "-" else [args.query]
    try:
        with edge.open(args.folder) as index:
            print(index.describe(), file=sys.stderr)
            for query in queries:
                print(f"# {query}")
                for score, pid, text in search(index, query, limit=args.limit, text_field=args.text_field):
                    print(f"{score:.3f}  {pid}  {text}")
    except DistillError as exc:  # a folder that is not one, damaged, in use: one line, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
