"""The real ``qdrant-distill`` command with one crash point: SIGKILL this process at an exact moment.

``QD_CRASH_AT`` names the moment; nothing is flushed or closed, exactly as with ``kill -9`` from outside:

    sample-drawn        the sample is drawn, not yet saved
    before:<stage>      the stage's work is done, its journal entry not yet written (e.g. before:created)
    after:<stage>       the journal entry is written, nothing after it (e.g. after:swapped: metadata not mirrored)
    upsert:<n>          the n-th page is written to the target, its checkpoint not yet in the journal
    journal-write:<n>   the n-th journal save has written its temporary file but not renamed it
    verify              the catch-up pass has run, verification not yet
    alias-request       the previous alias target is in the journal, the alias request not yet sent

Run as ``python -m tests.reliability.crashpoints migrate ...`` from the repository root. With ``QD_CRASH_SIGNAL=STOP``
the process stops itself (SIGSTOP) there instead, holding everything it holds, until it is continued or killed.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def die() -> None:
    os.kill(os.getpid(), signal.SIGSTOP if os.environ.get("QD_CRASH_SIGNAL") == "STOP" else signal.SIGKILL)


def install(spec: str) -> None:
    if not spec:
        return
    name, _, arg = spec.partition(":")
    import qdrant_distill.connectors.qdrant as cq
    from qdrant_distill.migration import journal as jr
    from qdrant_distill.migration import pipeline as mg

    if name == "sample-drawn":
        mg.save_sample = lambda *a, **k: die()  # type: ignore[assignment]
    elif name in ("before", "after"):
        advance = jr.Journal.advance

        def traced(self: Any, stage: Any, **fields: Any) -> None:
            if name == "before" and stage.value == arg:
                die()
            advance(self, stage, **fields)
            if name == "after" and stage.value == arg:
                die()

        jr.Journal.advance = traced  # type: ignore[method-assign]
    elif name == "upsert":
        upsert, count = cq.QdrantConnector.upsert, [0]

        def counted(self: Any, collection: str, points: Any, *, wait: bool = True) -> None:
            upsert(self, collection, points, wait=wait)
            count[0] += 1
            if count[0] == int(arg):
                die()

        cq.QdrantConnector.upsert = counted  # type: ignore[method-assign]
    elif name == "journal-write":
        replace, saves = os.replace, [0]

        def interrupted(src: Any, dst: Any, *a: Any, **k: Any) -> None:
            if str(dst).endswith("journal.json"):
                saves[0] += 1
                if saves[0] == int(arg):
                    die()
            replace(src, dst, *a, **k)

        jr.os.replace = interrupted  # type: ignore[attr-defined]  # journal.py calls os.replace
    elif name == "verify":
        mg.verify = lambda *a, **k: die()  # type: ignore[assignment]
    elif name == "alias-request":
        cq.QdrantConnector.swap_alias = lambda *a, **k: die()  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown crash point {spec!r}")


if __name__ == "__main__":
    install(os.environ.get("QD_CRASH_AT", ""))
    from qdrant_distill.cli.app import main

    sys.argv[0] = "qdrant-distill"
    main()
