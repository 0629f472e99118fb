"""The one reader of BEIR folders (``corpus.jsonl(.gz)``, ``queries.jsonl(.gz)``, ``qrels/<split>.tsv``), used by
``plan``'s checks, the gate's labelled queries and ``evaluate``.

A file that cannot be read is one :class:`~qdrant_distill.errors.ConfigError` naming the file and, for a malformed
line, its line number: not JSON, not an object, no ``_id``, a query without text, not UTF-8 (a binary file), a qrels
row without three tab-separated columns or with a score that is not a number. Judgements that can never score are
refused too: no query with qrels, or no judged document in the corpus (every metric would be 0). Judged documents
partly missing from the corpus are logged as a warning.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_distill.errors import ConfigError

__all__ = ["BeirDataset", "load_beir"]

logger = logging.getLogger(__name__)

LAYOUT = "a BEIR folder: corpus.jsonl, queries.jsonl (one JSON object with an \"_id\" a line), qrels/<split>.tsv"
SHOWN = 3  # ids quoted in a message


@dataclass
class BeirDataset:
    """A BEIR folder in memory. ``doc_text(i)`` is ``title + " " + text``, the BEIR protocol."""

    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, float]]

    @property
    def doc_texts(self) -> list[str]:
        return [f"{t} {x}".strip() for t, x in zip(self.titles, self.texts)]

    @property
    def judged_doc_ids(self) -> list[str]:
        """The corpus ids the qrels of the kept queries name, in first-seen order."""
        seen: dict[str, None] = {}
        for qid in self.query_ids:
            seen.update(dict.fromkeys(self.qrels.get(qid, {})))
        return list(seen)


def _bad(path: Path, line: int | None, problem: str) -> ConfigError:
    where = f"{path}, line {line}" if line else str(path)
    return ConfigError(f"cannot read {where}: {problem}", hint=LAYOUT)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a text file (gzip when it ends in ``.gz``); unreadable or not UTF-8 is one error."""
    number = 0
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz"
              else open(path, encoding="utf-8")) as fh:
            for number, line in enumerate(fh, 1):
                yield number, line
    except UnicodeDecodeError as exc:
        raise _bad(path, number + 1, f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}); a binary "
                   "file?") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise _bad(path, None, f"not a gzip file ({exc})") from None
    except OSError as exc:
        raise _bad(path, None, f"{type(exc).__name__}: {exc.strerror or exc}") from None


def _rows(path: Path, *, need_text: bool) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, each with an ``_id`` (and a string ``text`` when ``need_text``)."""
    rows = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise _bad(path, number, f"not JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(row, dict):
            raise _bad(path, number, f"a JSON {type(row).__name__}, not an object")
        if row.get("_id") in (None, ""):
            raise _bad(path, number, "no \"_id\"")
        if need_text and not isinstance(row.get("text"), str):
            raise _bad(path, number, "no \"text\" string")
        rows.append(row)
    return rows


def _jsonl(folder: Path, stem: str, *, need_text: bool = False) -> tuple[Path, list[dict[str, Any]]]:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        path = folder / name
        if path.is_file():
            return path, _rows(path, need_text=need_text)
    raise ConfigError(f"no {stem}.jsonl or {stem}.jsonl.gz in {folder}", hint=LAYOUT)


def _qrels(path: Path) -> dict[str, dict[str, float]]:
    """``query-id, corpus-id, score`` rows after a header line."""
    qrels: dict[str, dict[str, float]] = {}
    for number, line in _lines(path):
        if number == 1 or not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) < 3:
            raise _bad(path, number, f"{len(cols)} tab-separated column(s), expected query-id, corpus-id, score")
        try:
            score = float(cols[2])
        except ValueError:
            raise _bad(path, number, f"score {cols[2]!r} is not a number") from None
        qrels.setdefault(cols[0], {})[cols[1]] = score
    return qrels


def _first(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")


def _check_judgements(data: BeirDataset, qrels_path: Path, queries_path: Path, corpus_path: Path) -> None:
    """Refuse judgements that cannot score (every metric 0); warn when part of them cannot."""
    if not data.doc_ids:
        raise _bad(corpus_path, None, "no documents")
    if not data.query_ids:
        raise ConfigError(f"none of the queries in {queries_path} has judgements in {qrels_path} (its query ids: "
                          f"{_first(list(data.qrels)) or 'none'})", hint="the qrels' query-id column holds the "
                          "queries' \"_id\" values")
    judged = data.judged_doc_ids
    corpus = set(data.doc_ids)
    missing = [d for d in judged if d not in corpus]
    if len(missing) == len(judged):
        raise ConfigError(f"none of the {len(judged)} documents judged in {qrels_path} is in {corpus_path} (judged "
                          f"ids: {_first(judged)}; corpus ids: {_first(data.doc_ids)}); every metric would be 0",
                          hint="the qrels' corpus-id column holds the corpus' \"_id\" values")
    if missing:
        logger.warning("%d of the %d documents judged in %s are not in %s (%s): no query can find them",
                       len(missing), len(judged), qrels_path, corpus_path, _first(missing))


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder: ``corpus.jsonl(.gz)``, ``queries.jsonl(.gz)``, ``qrels/<split>.tsv`` (with a header).

    Only queries that appear in the split's qrels are kept, in file order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"BEIR folder {str(folder)!r} does not exist", hint=LAYOUT)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise ConfigError(f"no qrels file {qrels_path}", hint=LAYOUT)
    corpus_path, corpus = _jsonl(folder, "corpus")
    queries_path, queries = _jsonl(folder, "queries", need_text=True)
    qrels = _qrels(qrels_path)
    kept = [q for q in queries if str(q["_id"]) in qrels]
    data = BeirDataset(
        doc_ids=[str(d["_id"]) for d in corpus],
        titles=[str(d.get("title") or "") for d in corpus],
        texts=[str(d.get("text") or "") for d in corpus],
        query_ids=[str(q["_id"]) for q in kept],
        queries=[q["text"] for q in kept],
        qrels=qrels,
    )
    _check_judgements(data, qrels_path, queries_path, corpus_path)
    return data
