"""A maintenance job: migrate the collection behind an alias to a distilled 128-d student, resumably.

Run it from cron or CI; run it again after a crash and it resumes from its journal. Exit code 0 on success, 1 when
the quality gate refuses the student (nothing was changed then), 2 on any other expected failure.

    QDRANT_URL=https://qdrant.example:6333 QDRANT_API_KEY=... python examples/migrate_job.py docs
    python examples/migrate_job.py demo_docs --path ./qdrant_data --student models/all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import logging
import sys

import qdrant_distill as qd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("alias")
    parser.add_argument("--path", help="embedded Qdrant folder (default: QDRANT_URL, else ./qdrant_data)")
    parser.add_argument("--student", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--sample-size", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    overrides = {"qdrant": {"path": args.path}} if args.path else {}
    config = qd.load_config(  # environment variables (QDRANT_URL, QDRANT_API_KEY, QDRANT_DISTILL_*) apply too
        source=args.alias,
        dim=args.dim,
        sample_size=args.sample_size,
        student={"base_model": args.student},
        progress=False,
        **overrides,
    )
    try:
        report = qd.migrate(config)
    except qd.GateFailed as exc:
        logging.error("gate refused the student: %s", exc)
        return 1
    except qd.DistillError as exc:
        logging.error("%s", exc)
        return 2
    logging.info("stage %s: %s -> %s, %d points, metrics %s", report.stage.value, report.source_collection,
                 report.target, report.points_written, report.metrics)
    logging.info("roll back with: qdrant-distill rollback %s", report.journal.rsplit("/", 1)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
