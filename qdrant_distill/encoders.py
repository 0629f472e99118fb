"""The one seam for models: every stage that turns text into vectors gets an :class:`Encoder` from here.

:func:`load_encoder` decides once, from the reference it is given, which backend runs the model; re-embed, verify,
the gate, :func:`qdrant_distill.encoder_for`, projection-only mode, the teacher check, teacher labels, the demo and
the benchmarks only call :meth:`Encoder.encode`. Backends:

- ``StaticEncoder``: a static student (a ``StaticEmbedding`` [+ ``Normalize``] folder): the tokenizer and a mean of
  token vectors in numpy. Loaded without torch, so a query service with a static student never imports it.
- ``SentenceTransformerEncoder``: any sentence-transformers folder or hub name (torch, imported here on first use).
  Queries and documents go through ``encode_query`` / ``encode_document``, so a model's prompts are honoured.
- ``ProjectedEncoder``: another encoder followed by a PCA projection (projection-only mode: the teacher + PCA).
- ``HttpEncoder`` (:mod:`connectors.http_embeddings`): an embeddings endpoint, for references
  ``openai+http(s)://...?model=M``, ``tei+http(s)://...`` and ``ollama+http(s)://...?model=M`` (httpx, no torch).

:func:`as_encoder` wraps a model already in memory (a student being trained) in the same interface. Importing this
module imports neither torch nor sentence-transformers.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from qdrant_distill.errors import StudentError

if TYPE_CHECKING:
    from qdrant_distill.projection import PCAProjection

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Encoder",
    "EncodeKind",
    "ProjectedEncoder",
    "SentenceTransformerEncoder",
    "StaticEncoder",
    "as_encoder",
    "encode_with_progress",
    "load_encoder",
    "local_modules",
]

logger = logging.getLogger(__name__)

EncodeKind = Literal["query", "document"]
DEFAULT_BATCH_SIZE = 64
STUDENT_DIR = "student"  # distill() saves the student in this subfolder of its output folder
_STATIC_TYPE = "StaticEmbedding"
_NORMALIZE_TYPE = "Normalize"


@runtime_checkable
class Encoder(Protocol):
    """Text in, float32 vectors out. ``kind`` says whether the texts are queries or documents (models and APIs may
    treat them differently: prompts, prefixes). ``describe()`` is safe to print: it never holds a key."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: str | Sequence[str], *, kind: EncodeKind = "document") -> np.ndarray: ...

    def describe(self) -> str: ...


def _as_list(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _unit(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------------------------------------------------ static
class StaticEncoder:
    """A bag of token vectors: tokenize (no special tokens), average the rows of ``table``, normalise.

    Computes what sentence-transformers' ``StaticEmbedding`` (an ``EmbeddingBag`` mean) + ``Normalize`` compute,
    without torch and without its per-call overhead (most of a static model's single-query latency).
    """

    def __init__(self, tokenizer: Any, table: np.ndarray, *, name: str, normalize: bool = True) -> None:
        self.tokenizer = tokenizer
        self.table = np.asarray(table, dtype=np.float32)
        self.name = name
        self.normalize = normalize

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def encode(self, texts: str | Sequence[str], *, kind: EncodeKind = "document") -> np.ndarray:
        items = _as_list(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        ids = [enc.ids for enc in self.tokenizer.encode_batch(items, add_special_tokens=False)]
        lengths = np.array([len(i) for i in ids])
        filled = lengths > 0
        if filled.any():
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[filled]
            flat = np.fromiter((t for i in ids for t in i), dtype=np.int64, count=int(lengths.sum()))
            out[filled] = np.add.reduceat(self.table[flat], starts, axis=0) / lengths[filled, None]
        return _unit(out) if self.normalize else out

    def describe(self) -> str:
        return f"static {self.name} ({self.dim}-d, numpy)"


def local_modules(ref: str | Path | None) -> tuple[Path, list[dict[str, Any]]] | None:
    """A local sentence-transformers folder and its ``modules.json`` entries, read without loading the model (None
    for a hub name, or a folder that is not one)."""
    folder = Path(ref).expanduser() if ref else None
    if folder is None or not (folder / "modules.json").is_file():
        return None
    try:
        return folder, json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _static_module_folder(path: Path) -> Path | None:
    """The ``StaticEmbedding`` folder of a sentence-transformers model that is only that [+ ``Normalize``]."""
    found = local_modules(path)
    if found is None:
        return None
    mods = found[1]
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in mods]
    if not types or types[0] != _STATIC_TYPE or any(t != _NORMALIZE_TYPE for t in types[1:]):
        return None
    folder = path / str(mods[0].get("path", ""))
    if not (folder / "tokenizer.json").is_file() or not (folder / "model.safetensors").is_file():
        return None
    return folder


def _load_static(path: Path, name: str, normalize: bool) -> StaticEncoder | None:
    """A static student read straight from its files (tokenizer.json, model.safetensors), or None if it is not one."""
    folder = _static_module_folder(path)
    if folder is None:
        return None
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    weights = load_file(str(folder / "model.safetensors"))
    if "embedding.weight" not in weights:  # model2vec-style weights: leave them to sentence-transformers
        return None
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return StaticEncoder(tokenizer, weights["embedding.weight"], name=name, normalize=normalize)


# ---------------------------------------------------------------------------------------------- sentence-transformers
class SentenceTransformerEncoder:
    """A ``SentenceTransformer`` (torch). Queries through ``encode_query``, documents through ``encode_document``
    (each applies the model's prompt of that name, when it has one); no progress bar; float32."""

    def __init__(self, model: Any, *, name: str, batch_size: int = DEFAULT_BATCH_SIZE, normalize: bool = True) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.normalize = normalize

    @property
    def dim(self) -> int:
        from qdrant_distill._compat import embedding_dimension

        return embedding_dimension(self.model)

    @property
    def max_seq_length(self) -> int:
        """Tokens kept per text (longer texts are truncated); settable."""
        return self.model.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.model.max_seq_length = value

    def encode(self, texts: str | Sequence[str], *, kind: EncodeKind = "document") -> np.ndarray:
        items = _as_list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        method = getattr(self.model, f"encode_{kind}", None) or self.model.encode  # encode_query: ST >= 5
        vecs = method(items, batch_size=self.batch_size, normalize_embeddings=self.normalize, convert_to_numpy=True,
                      show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    def describe(self) -> str:
        return f"sentence-transformers {self.name} ({self.dim}-d, torch, {self.model.device})"


# ----------------------------------------------------------------------------------------------------------- projected
class ProjectedEncoder:
    """``inner`` followed by a PCA projection into the target space (projection-only mode's query encoder)."""

    def __init__(self, inner: Encoder, projection: PCAProjection, *, normalize: bool = True) -> None:
        if inner.dim != projection.in_dim:
            from qdrant_distill.errors import DimensionError

            raise DimensionError(
                f"{inner.name} encodes {inner.dim}-d vectors, the projection expects {projection.in_dim}-d",
                hint="the projection was fitted on another model's vectors",
            )
        self.inner = inner
        self.projection = projection
        self.normalize = normalize

    @property
    def name(self) -> str:
        return f"{self.inner.name} + PCA-{self.projection.dim}"

    @property
    def dim(self) -> int:
        return self.projection.dim

    def encode(self, texts: str | Sequence[str], *, kind: EncodeKind = "document") -> np.ndarray:
        vecs = self.inner.encode(texts, kind=kind)
        if len(vecs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.projection.transform(vecs, normalize=self.normalize)

    def describe(self) -> str:
        return f"{self.inner.describe()} + PCA {self.projection.in_dim} -> {self.projection.dim}"


# ------------------------------------------------------------------------------------------------------------ loading
def as_encoder(model: Any, *, name: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> Encoder:
    """An :class:`Encoder` over a model already in memory: an encoder is returned as it is; a static
    ``SentenceTransformer`` gets the numpy fast path (reading its current weights); any other gets
    :class:`SentenceTransformerEncoder`."""
    if isinstance(model, Encoder):
        return model
    label = name or type(model).__name__
    static = _static_parts(model)
    if static is not None:
        table = static.embedding.weight.detach().cpu().numpy()
        return StaticEncoder(static.tokenizer, table, name=label)
    if not callable(getattr(model, "encode", None)):
        raise StudentError(f"{label} has no encode method: not a model")
    return SentenceTransformerEncoder(model, name=label, batch_size=batch_size)


def _static_parts(model: Any) -> Any | None:
    """The ``StaticEmbedding`` of a ``SentenceTransformer`` that is only that (plus ``Normalize``), else None."""
    if not hasattr(model, "__len__") or not hasattr(model, "__getitem__") or len(model) == 0:
        return None
    mods = [model[i] for i in range(len(model))]
    kinds = [type(m).__name__ for m in mods]
    if kinds[0] == _STATIC_TYPE and all(k == _NORMALIZE_TYPE for k in kinds[1:]):
        return mods[0]
    return None


@functools.lru_cache(maxsize=8)
def _sentence_transformer(ref: str, device: str, max_seq_length: int | None) -> Any:
    """The shared (cached) model behind a reference; students to train get their own copy from ``load_body``."""
    from qdrant_distill.students import load_body

    return load_body(ref, device=device, max_seq_length=max_seq_length)


def _load_http(ref: object, normalize: bool) -> Encoder | None:
    """An embeddings endpoint (``openai+http...``, ``tei+http...``, ``ollama+http...``, see
    :mod:`connectors.http_embeddings`), or None for any other reference."""
    from connectors.http_embeddings import is_http_reference, open_encoder

    return open_encoder(ref, normalize=normalize) if is_http_reference(ref) else None  # type: ignore[arg-type]


def _resolve(ref: str | Path) -> str:
    """A distill() output folder stands for the student it holds; everything else is taken as given."""
    path = Path(ref).expanduser()
    if (path / STUDENT_DIR / "modules.json").is_file():
        return str(path / STUDENT_DIR)
    return str(ref)


def load_encoder(
    ref: str | Path | Encoder,
    *,
    projection: str | Path | PCAProjection | None = None,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seq_length: int | None = None,
    normalize: bool = True,
) -> Encoder:
    """The one place a model is loaded to encode.

    ``ref`` is a sentence-transformers folder or hub name, a distillation output folder (its ``student/``), or an
    encoder (returned as it is). ``projection`` (a :class:`PCAProjection` or its ``.npz``) puts a projection on top.
    Models are cached: loading the same reference twice costs nothing.
    """
    http = _load_http(ref, normalize)
    if http is not None:
        encoder = http
    elif isinstance(ref, (str, Path)):
        resolved = _resolve(ref)
        encoder = _load_static(Path(resolved).expanduser(), resolved, normalize)
        if encoder is None:
            model = _sentence_transformer(resolved, device, max_seq_length)
            encoder = SentenceTransformerEncoder(model, name=resolved, batch_size=batch_size, normalize=normalize)
    else:
        encoder = as_encoder(ref, batch_size=batch_size)
    if projection is None:
        return encoder
    from qdrant_distill.projection import PCAProjection

    proj = projection if isinstance(projection, PCAProjection) else PCAProjection.load(projection)
    return ProjectedEncoder(encoder, proj, normalize=normalize)


def encode_with_progress(
    encoder: Encoder, texts: Sequence[str], *, kind: EncodeKind = "document", chunk: int = 256,
    description: str = "encode", progress: bool = True,
) -> np.ndarray:
    """``encoder.encode`` over ``texts`` in chunks, with one progress bar (for long jobs: a teacher over a corpus)."""
    from tqdm.auto import tqdm

    texts = list(texts)
    parts = [np.zeros((0, encoder.dim), dtype=np.float32)]
    with tqdm(total=len(texts), unit="text", desc=description, disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(texts), chunk):
            parts.append(encoder.encode(texts[start : start + chunk], kind=kind))
            bar.update(len(parts[-1]))
    return np.concatenate(parts).astype(np.float32, copy=False)
