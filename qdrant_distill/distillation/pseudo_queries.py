"""Query-like texts cut from documents: the training signal for the query side when no real queries exist.

:func:`pseudo_query` gives one cut of one document (used by the training loop and the holdout's query metrics);
:func:`cut_queries` gives many cuts of many documents (titles or first sentences, other sentences, short spans), the
texts a teacher at hand labels (:mod:`qdrant_distill.distillation.teacher`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

__all__ = ["PSEUDO_QUERY_MAX_CHARS", "cut_queries", "pseudo_query"]

PSEUDO_QUERY_MAX_CHARS = 300
MIN_WORDS = 3
SPAN_WORDS = (4, 12)  # a short span: between 4 and 12 words
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` with at least :data:`MIN_WORDS` words."""
    return [s for s in _SENTENCE_END.split(text.strip()) if len(s.split()) >= MIN_WORDS]


def pseudo_query(text: str, rng: random.Random) -> str:
    """A query-like cut of a document: its first sentence (often the title) or, half the time, another sentence."""
    found = sentences(text)
    if not found:
        words = text.split()
        return " ".join(words[: max(1, min(len(words), 16))])
    pick = found[0] if len(found) == 1 or rng.random() < 0.5 else rng.choice(found[1:])
    return pick[:PSEUDO_QUERY_MAX_CHARS]


def _span(text: str, rng: random.Random) -> str:
    words = text.split()
    size = min(len(words), rng.randint(*SPAN_WORDS))
    start = rng.randint(0, max(0, len(words) - size))
    return " ".join(words[start : start + size])


def _cut(text: str, turn: int, rng: random.Random) -> str:
    """Cut number ``turn`` of a document: first sentence, then another sentence, then a short span, in turn."""
    found = sentences(text)
    if turn % 3 == 0 and found:
        return found[0][:PSEUDO_QUERY_MAX_CHARS]
    if turn % 3 == 1 and len(found) > 1:
        return rng.choice(found[1:])[:PSEUDO_QUERY_MAX_CHARS]
    return _span(text, rng)[:PSEUDO_QUERY_MAX_CHARS]


def cut_queries(texts: Sequence[str], n: int, *, seed: int = 0) -> list[str]:
    """``n`` distinct query-like cuts of ``texts`` (fewer when the texts do not hold that many), deterministic for a
    seed. Documents are visited in a shuffled order, round after round; round r takes cut kind r mod 3 of each."""
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    out: dict[str, None] = {}
    rounds = 0
    while len(out) < n and order and rounds < 3 * max(1, -(-n // len(order))) + 3:
        for i in order:
            cut = _cut(texts[i], rounds, rng).strip()
            if cut:
                out.setdefault(cut)
            if len(out) >= n:
                break
        rounds += 1
    return list(out)
