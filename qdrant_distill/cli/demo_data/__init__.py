"""Real texts shipped for the demo: 2,000 WordNet 3.0 glosses (licence in COPYRIGHT.wordnet)."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

DEMO_FILE = "wordnet_glosses.jsonl.gz"


def load_demo_texts(limit: int | None = None) -> list[dict[str, Any]]:
    """Rows ``{"_id", "title", "text", "pos"}`` of the shipped demo corpus, in a fixed order."""
    path = resources.files(__name__).joinpath(DEMO_FILE)
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return rows if limit is None else rows[:limit]
