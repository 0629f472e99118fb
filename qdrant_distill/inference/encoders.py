"""The one seam for models: every stage that turns text into vectors gets an :class:`Encoder` from here.

:func:`load_encoder` decides once, from the reference it is given, which backend runs the model; re-embed, verify,
the gate, :func:`qdrant_distill.encoder_for`, projection-only mode, the teacher check, teacher labels, the demo and
the benchmarks only call :meth:`Encoder.encode`. Backends:

- ``StaticEncoder``: a static student (a ``StaticEmbedding`` [+ ``Normalize``] folder): the tokenizer and a mean of
  token vectors in numpy. Loaded without torch, so a query service with a static student never imports it.
- ``SentenceTransformerEncoder``: any sentence-transformers folder or hub name (torch, imported here on first use).
  Queries and documents go through ``encode_query`` / ``encode_document``, so a model's prompts are honoured.
- ``OnnxEncoder``: an export folder (:mod:`qdrant_distill.inference.export`): the whole model as one ONNX graph, fp32 or int8,
  run by onnxruntime with the model's own tokenizer (``tokenizers``). No torch.
- ``ProjectedEncoder``: another encoder followed by a PCA projection (projection-only mode: the teacher + PCA).
- ``HttpEncoder`` (:mod:`qdrant_distill.connectors.http_embeddings`): an embeddings endpoint, for references
  ``openai+http(s)://...?model=M``, ``tei+http(s)://...`` and ``ollama+http(s)://...?model=M`` (httpx, no torch).

:func:`as_encoder` wraps a model already in memory (a student being trained) in the same interface. Importing this
module imports neither torch nor sentence-transformers.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from qdrant_distill._compat import embedding_dimension
from qdrant_distill._quiet import quiet_loading
from qdrant_distill.errors import (
    BrokenExport,
    ConfigError,
    DimensionError,
    DistillError,
    StudentError,
)
from qdrant_distill.folders import DistillFolder, ExportFolder
from qdrant_distill.inference.cpu import int8_refusal
from qdrant_distill.inference.formats import (
    Backend,
    ExportManifest,
    export_folder,
    read_manifest,
    rebuild_command,
)
from qdrant_distill.inference.projection import PCAProjection
from qdrant_distill.redact import redact_text
from qdrant_distill.vectors import unit_rows

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Encoder",
    "EncodeKind",
    "OnnxEncoder",
    "ProjectedEncoder",
    "SentenceTransformerEncoder",
    "StaticEncoder",
    "as_encoder",
    "encode_with_progress",
    "load_body",
    "load_encoder",
    "load_teacher",
    "local_modules",
    "resolve_reference",
    "static_module",
]

logger = logging.getLogger(__name__)

EncodeKind = Literal["query", "document"]
DEFAULT_BATCH_SIZE = 64
# texts per onnxruntime call on CPU: measured here (int8 MiniLM, SciFact abstracts, 2 cores) 58, 64, 64, 60, 41 and 41
# docs/s at 1, 2, 4, 8, 32 and 64 texts; torch does 34-35 at 8 or 64
ONNX_CPU_BATCH = 4
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
    return unit_rows(vecs)


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


# ------------------------------------------------------------------------------------------------------------- onnx
class OnnxEncoder:
    """An exported model (one ONNX graph: transformer, pooling, head, normalisation) in onnxruntime.

    Texts get the model's prompt for their kind, are tokenised with its ``tokenizer.json`` (truncated at its
    ``max_seq_length``), sorted by length and run in padded batches of ``batch_size``.
    """

    def __init__(self, session: Any, tokenizer: Any, *, name: str, dim: int, inputs: Sequence[str],
                 prompts: dict[str, str] | None = None, backend: Backend = Backend.ONNX,
                 batch_size: int = DEFAULT_BATCH_SIZE,
                 normalize: bool = True) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.name = name
        self.dim = dim
        self.inputs = list(inputs)
        self.prompts = dict(prompts or {})
        self.backend = backend
        self.batch_size = batch_size
        self.normalize = normalize

    @property
    def max_seq_length(self) -> int | None:
        """Tokens kept per text (its tokenizer truncates there), when the export recorded it."""
        truncation = self.tokenizer.truncation
        return int(truncation["max_length"]) if truncation else None

    def encode(self, texts: str | Sequence[str], *, kind: EncodeKind = "document") -> np.ndarray:
        prompt = self.prompts.get(kind, "")
        items = [prompt + t for t in _as_list(texts)]
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in items], kind="stable")
        for start in range(0, len(items), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._run([items[i] for i in rows])
        return _unit(out) if self.normalize and len(items) else out

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                   "token_type_ids": [e.type_ids for e in encodings]}
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self.inputs}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)

    def describe(self) -> str:
        return f"{self.backend} {self.name} ({self.dim}-d, onnxruntime)"


def _onnx_session(path: Path, threads: int | None = None, device: str = "cpu") -> Any:
    """The (cached) session of a graph file; a file written again since is loaded again."""
    stat = path.stat()
    return _cached_session(str(path), stat.st_mtime_ns, stat.st_size, threads, _providers(device))


def _providers(device: str) -> tuple[str, ...]:
    """onnxruntime's execution providers for a torch-style ``device``: the CPU's for ``cpu``, CUDA's (with the CPU's
    for what CUDA does not run) for ``cuda`` / ``cuda:N``; a device onnxruntime cannot use is one error."""
    if device == "cpu":
        return ("CPUExecutionProvider",)
    if not device.startswith("cuda"):
        raise ConfigError(f"the onnx backends run on cpu or cuda, not {device!r}", hint="use device='cpu' or 'cuda'")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise StudentError(f"device {device!r} asks for onnxruntime's CUDA provider, which this onnxruntime lacks "
                           f"(it has {', '.join(ort.get_available_providers())})",
                           hint="pip install onnxruntime-gpu, or run on the CPU (device='cpu' / --gpus-per-worker 0)")
    return ("CUDAExecutionProvider", "CPUExecutionProvider")


@functools.lru_cache(maxsize=8)
def _cached_session(path: str, mtime_ns: int, size: int, threads: int | None,
                    providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=list(providers))


def _require_onnxruntime() -> None:
    if not _has_onnxruntime():
        raise StudentError("the onnx backends need onnxruntime, which is not installed",
                           hint="pip install 'qdrant-distill[onnx]', or use backend='torch'")


def _load_export(folder: Path, backend: Backend, batch_size: int, normalize: bool, threads: int | None = None,
                 device: str = "cpu") -> Encoder:
    """The encoder of one format in an export folder (``static``, ``onnx`` or ``onnx-int8``); a file it lacks or
    cannot read is one :class:`BrokenExport` naming the folder and the command that rebuilds it."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise BrokenExport(f"{folder} is no longer an export folder: its {ExportFolder.MANIFEST} is missing",
                           hint=f"rebuild it: {rebuild_command(folder)}", folder=str(folder),
                           file=ExportFolder.MANIFEST)
    if backend not in manifest.files:
        raise StudentError(f"{folder} holds no {backend} export (it has {', '.join(manifest.files) or 'nothing'})",
                           hint=f"export it: {rebuild_command(folder, manifest.source)}")
    name = manifest.source
    files = ExportFolder(folder)
    if backend is Backend.STATIC:
        tokenizer = _read_export_file(folder, manifest, files.tokenizer, _tokenizer)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        table = _read_export_file(folder, manifest, folder / manifest.files[Backend.STATIC], _token_table)
        return StaticEncoder(tokenizer, table, name=name, normalize=normalize)
    _require_onnxruntime()
    backend = _portable_backend(folder, manifest, backend)
    tokenizer = _read_export_file(folder, manifest, files.tokenizer, _tokenizer)
    if manifest.max_seq_length:
        tokenizer.enable_truncation(manifest.max_seq_length)
    pad_id = tokenizer.padding["pad_id"] if tokenizer.padding else 0
    tokenizer.enable_padding(pad_id=pad_id)
    session = _read_export_file(folder, manifest, folder / manifest.files[backend],
                                lambda graph: _onnx_session(graph, threads, device))
    return OnnxEncoder(session, tokenizer, name=name, dim=manifest.dim, inputs=manifest.inputs,
                       prompts=manifest.prompts, backend=backend, batch_size=min(batch_size, ONNX_CPU_BATCH),
                       normalize=normalize)


_T = TypeVar("_T")


def _read_export_file(folder: Path, manifest: ExportManifest, path: Path, read: Callable[[Path], _T]) -> _T:
    """``read(path)`` of one file of an export folder; a missing or unreadable file (a truncated graph: onnxruntime's
    ``InvalidProtobuf``) is a :class:`BrokenExport`."""
    hint = f"rebuild the export: {rebuild_command(folder, manifest.source)}"
    if not path.is_file():
        raise BrokenExport(f"export folder {folder} lacks {path.name}, which its {ExportFolder.MANIFEST} lists",
                           hint=hint, folder=str(folder), file=path.name)
    try:
        return read(path)
    except DistillError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime, tokenizers and safetensors raise their own types
        raise BrokenExport(f"export folder {folder} holds a damaged {path.name} (truncated or not written to the "
                           f"end?): {type(exc).__name__}: {_first_line(exc)}", hint=hint, folder=str(folder),
                           file=path.name) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _token_table(path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(path))["embedding.weight"]


_WARNED: set[str] = set()


def _portable_backend(folder: Path, manifest: ExportManifest, backend: Backend) -> Backend:
    """``backend``, or fp32 where an (older) int8 graph would compute other vectors on this processor than on the
    machine that wrote them (:func:`qdrant_distill.inference.cpu.int8_refusal`); the reason is logged once per folder."""
    reason = int8_refusal(manifest.int8_weight_bits) if backend is Backend.ONNX_INT8 else None
    if reason is None:
        return backend
    fallback = Backend.ONNX if manifest.accepted(Backend.ONNX) else None
    if str(folder) not in _WARNED:
        _WARNED.add(str(folder))
        logger.warning("%s: not running int8 here: %s; %s", folder, reason,
                       "running the fp32 graph instead" if fallback else "no fp32 graph to fall back to")
    return fallback or backend


def _backend(backend: Backend | str) -> Backend:
    try:
        return Backend(backend)
    except ValueError:
        raise ConfigError(f"unknown backend {backend!r}", hint=f"use one of {', '.join(Backend)}") from None


def _pick_backend(ref: str | Path, backend: Backend) -> tuple[Path | None, Backend]:
    """The export folder and format ``backend`` asks for (``torch``: no folder). ``auto`` takes the export's
    preferred format when the reference has an export and onnxruntime is installed, else torch."""
    if backend is Backend.TORCH:
        return None, Backend.TORCH
    folder = export_folder(ref)
    if backend is Backend.AUTO:
        manifest = read_manifest(folder) if folder else None
        preferred = manifest.preferred if manifest else None
        if preferred is None:
            return None, Backend.TORCH
        if preferred is not Backend.STATIC and not _has_onnxruntime() and folder != Path(ref).expanduser():
            return None, Backend.TORCH  # a model with an export runs on torch here; an export alone says what's missing
        return folder, preferred
    if folder is None:
        raise StudentError(f"{ref} has no export for the {backend} backend",
                           hint=f"export it first: qdrant-distill export {ref} --format {backend}")
    return folder, backend


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


# ----------------------------------------------------------------------------------------------------------- projected
class ProjectedEncoder:
    """``inner`` followed by a PCA projection into the target space (projection-only mode's query encoder)."""

    def __init__(self, inner: Encoder, projection: PCAProjection, *, normalize: bool = True) -> None:
        if inner.dim != projection.in_dim:
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

    @property
    def max_seq_length(self) -> int | None:
        """The inner model's (None when it reads every token)."""
        return getattr(self.inner, "max_seq_length", None)

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
    static = static_module(model)
    if static is not None:
        table = static.embedding.weight.detach().cpu().numpy()
        return StaticEncoder(static.tokenizer, table, name=label)
    if not callable(getattr(model, "encode", None)):
        raise StudentError(f"{label} has no encode method: not a model")
    return SentenceTransformerEncoder(model, name=label, batch_size=batch_size)


def static_module(model: Any) -> Any | None:
    """The ``StaticEmbedding`` of a ``SentenceTransformer`` that is only that (plus ``Normalize``), else None."""
    if not hasattr(model, "__len__") or not hasattr(model, "__getitem__") or len(model) == 0:
        return None
    mods = [model[i] for i in range(len(model))]
    kinds = [type(m).__name__ for m in mods]
    if kinds[0] == _STATIC_TYPE and all(k == _NORMALIZE_TYPE for k in kinds[1:]):
        return mods[0]
    return None


def load_body(name_or_path: str, *, device: str = "cpu", max_seq_length: int | None = None) -> Any:
    """A fresh sentence-transformers model (to build a student from, or to export: training changes it, so it is
    never the cached model :func:`load_encoder` shares); every failure becomes a :class:`StudentError`."""
    from sentence_transformers import SentenceTransformer

    try:
        with quiet_loading():
            model = SentenceTransformer(str(name_or_path), device=device)
    except Exception as exc:
        raise StudentError(
            redact_text(f"cannot load the model {str(name_or_path)!r}: {type(exc).__name__}: {exc}"),
            hint="give a local sentence-transformers folder or a model name reachable from this machine",
        ) from exc
    if max_seq_length is not None and hasattr(model[0], "max_seq_length"):
        model.max_seq_length = max_seq_length
    return model


@functools.lru_cache(maxsize=8)
def _sentence_transformer(ref: str, device: str, max_seq_length: int | None) -> Any:
    """The shared (cached) model behind a reference; students to train get their own copy from ``load_body``."""
    return load_body(ref, device=device, max_seq_length=max_seq_length)


def _load_http(ref: object, normalize: bool, api_key: str | SecretStr | None = None) -> Encoder | None:
    """An embeddings endpoint (``openai+http...``, ``tei+http...``, ``ollama+http...``, see
    :mod:`qdrant_distill.connectors.http_embeddings`), or None for any other reference."""
    from qdrant_distill.connectors.http_embeddings import (
        check_reference_prefix,
        is_http_reference,
        open_encoder,
    )

    check_reference_prefix(ref)
    if not is_http_reference(ref):
        return None
    return open_encoder(ref, normalize=normalize, api_key=api_key)  # type: ignore[arg-type]


def resolve_reference(ref: str | Path) -> str:
    """A distill() output folder stands for the student it holds, an export folder for the model it was exported
    from; everything else is taken as given."""
    path = Path(ref).expanduser()
    student = DistillFolder(path).student
    if (student / "modules.json").is_file():
        return str(student)
    manifest = read_manifest(path) if not (path / "modules.json").is_file() else None
    return manifest.source if manifest is not None else str(ref)


def load_encoder(
    ref: str | Path | Encoder,
    *,
    projection: str | Path | PCAProjection | None = None,
    backend: Backend | str = Backend.AUTO,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seq_length: int | None = None,
    normalize: bool = True,
    threads: int | None = None,
    api_key: str | SecretStr | None = None,
) -> Encoder:
    """The one place a model is loaded to encode.

    ``ref`` is a sentence-transformers folder or hub name, a distillation output folder (its ``student/``), an
    export folder, an embeddings endpoint, or an encoder (returned as it is). ``backend`` picks how a local model
    runs: ``torch``, ``onnx`` or ``onnx-int8`` (its export, :mod:`qdrant_distill.inference.export`), or ``auto``: the format
    its export chose when it passed its checks (int8 first), torch when there is no export. ``projection`` (a
    :class:`PCAProjection` or its ``.npz``) puts a projection on top. ``threads`` caps an onnxruntime session's
    threads (torch's are process-wide: ``torch.set_num_threads``). ``api_key`` is an embeddings endpoint's key
    (ignored for other references). Models are cached.
    """
    http = _load_http(ref, normalize, api_key)
    if http is not None:
        encoder = http
    elif isinstance(ref, (str, Path)):
        encoder = _load_local(ref, _backend(backend), device, batch_size, max_seq_length, normalize, threads)
    else:
        encoder = as_encoder(ref, batch_size=batch_size)
    if projection is None:
        return encoder
    proj = projection if isinstance(projection, PCAProjection) else PCAProjection.load(projection)
    return ProjectedEncoder(encoder, proj, normalize=normalize)


def load_teacher(ref: str, *, api_key: str | SecretStr | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> Encoder:
    """The teacher of a migration (:func:`load_encoder`): a teacher that cannot be loaded is the configuration's
    fault (``--teacher``), so it is a :class:`ConfigError`, not a student's."""
    try:
        return load_encoder(ref, api_key=api_key, batch_size=batch_size)
    except StudentError as exc:
        raise ConfigError(f"cannot load the teacher: {exc.message}",
                          hint="--teacher takes a sentence-transformers folder or hub name reachable from here, or "
                               "an embeddings endpoint (openai+, tei+, ollama+ followed by its URL)") from exc


def _load_local(ref: str | Path, backend: Backend, device: str, batch_size: int, max_seq_length: int | None,
                normalize: bool, threads: int | None = None) -> Encoder:
    """A model on this machine (or a hub name), on the backend asked for."""
    folder, chosen = _pick_backend(ref, backend)
    if folder is not None:
        return _load_export(folder, chosen, batch_size, normalize, threads, device)
    resolved = resolve_reference(ref)
    encoder = _load_static(Path(resolved).expanduser(), resolved, normalize)
    if encoder is None:
        model = _sentence_transformer(resolved, device, max_seq_length)
        encoder = SentenceTransformerEncoder(model, name=resolved, batch_size=batch_size, normalize=normalize)
    return encoder


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
