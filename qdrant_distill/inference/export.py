"""Export a student (or any sentence-transformers model) for torch-free inference: ONNX (fp32 and int8) or a token
table.

One folder per export, readable by :func:`qdrant_distill.inference.encoders.load_encoder` (``backend="onnx" | "onnx-int8"``)
and by FastEmbed (``TextEmbedding.add_custom_model(..., pooling=PoolingType.DISABLED, normalization=True)`` with
``specific_model_path``):

- ``model.onnx``: the *whole* model (transformer + pooling + Dense head + normalisation) in one graph, exported with
  ``torch.onnx.export`` (sentence-transformers' own ONNX backend needs optimum, which does not install beside
  sentence-transformers 6, and exports the transformer only).
- ``model_int8.onnx``: the same graph with the weights of its ``MatMul`` nodes quantised to int8 per output channel,
  in 7 bits (``|w| <= 64``: exact on every CPU, see :mod:`qdrant_distill.inference.cpu`; dynamic quantisation: activations are
  quantised at run time); embeddings, LayerNorm and biases stay fp32.
- ``model.safetensors`` for a static student: its token table (``embedding.weight``), read with numpy.
- ``tokenizer.json``, ``tokenizer_config.json`` (``model_max_length`` = the model's ``max_seq_length``),
  ``special_tokens_map.json``, ``config.json``, and ``export.json`` (:class:`ExportManifest`): what the folder holds,
  the checks each format passed, and the backend ``auto`` picks.

The export checks itself: the exported graphs encode ``check_texts`` and are compared with the torch model (cosine),
and, when a holdout evaluation is given, int8 is re-evaluated on it and refused when it loses more than
:data:`INT8_TOLERANCE` on a tracked metric. Torch is imported only inside the functions that export.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_distill.errors import ConfigError, StudentError
from qdrant_distill.folders import ExportFolder
from qdrant_distill.inference.cpu import SAFE_WEIGHT_BITS, cpu_features
from qdrant_distill.inference.encoders import (
    as_encoder,
    load_body,
    load_encoder,
    resolve_reference,
    static_module,
)
from qdrant_distill.inference.formats import (
    FILES,
    GRAPHS,
    MANIFEST,
    Backend,
    BackendCheck,
    ExportChoice,
    ExportManifest,
    read_manifest,
)
from qdrant_distill.vectors import row_cosines

__all__ = [
    "INT8_TOLERANCE",
    "export_model",
    "fastembed_model",
    "formats_for",
]

logger = logging.getLogger(__name__)

OPSET = 17
# an int8 graph may lose at most this on a holdout metric (a 100-text holdout moves by about 0.01 under int8 noise)
INT8_TOLERANCE = 0.01
# the first encoder layer's FFN output projection stays fp32: its inputs carry the outlier activations that a
# per-batch int8 scale flattens. Measured on SciFact (MiniLM student, 2 cores): every MatMul in int8 -0.0060 nDCG@10
# at 83.8 docs/s; this one kept -> +0.0026 at 67.2 docs/s (torch 32.5); every FFN output kept +0.0015 at 55.8
KEEP_FP32 = re.compile(r"layers?\.0/(output/dense|mlp/down_proj|mlp/fc2)/")
MIN_FP32_COSINE = 0.999  # an fp32 graph is the same model: anything less means a broken export
MIN_INT8_COSINE = 0.98
TRACKED = ("fidelity/recall@10", "pseudo_query/self_mrr@10", "pseudo_query/mrr@10")
DEFAULT_CHECK_TEXTS = [
    "What is the capital of France?",
    "a",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "how to reset a forgotten password on a linux machine",
    "Qdrant stores vectors together with a JSON payload and filters on it while searching for nearest neighbours. "
    * 12,
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "cheap flights to tokyo in march",
    "The mitochondria is the powerhouse of the cell; it produces ATP through oxidative phosphorylation, a process "
    "that depends on an electron transport chain across the inner membrane.",
]


# ---------------------------------------------------------------------------------------------------------- recipe
def export_model(
    model_or_ref: Any,
    out_dir: str | Path,
    *,
    formats: Sequence[Backend | str] = GRAPHS,
    check_texts: Sequence[str] | None = None,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    source: str | None = None,
) -> ExportManifest:
    """Export ``model_or_ref`` (a ``SentenceTransformer`` or a reference ``load_encoder`` accepts) into ``out_dir``.

    ``check_texts`` are encoded by the torch model and by each exported format (cosine per text); ``evaluate`` (an
    encoder -> holdout metrics function, e.g. a :class:`~qdrant_distill.evaluation.metrics.FidelityEvaluator`) is run on the
    torch model and on the int8 graph, and int8 is refused when a tracked metric drops by more than
    :data:`INT8_TOLERANCE`. A static student is exported as its token table whatever ``formats`` says.
    """
    started = time.perf_counter()
    out = Path(out_dir).expanduser()
    _check_formats(formats)
    _fresh_folder(out)
    model, source = _model(model_or_ref, source)
    texts = list(check_texts or DEFAULT_CHECK_TEXTS)
    static = _static_table(model)
    if static is not None:
        manifest = _export_static(model, static, out, source)
    else:
        manifest = _export_onnx(model, out, source, formats)
    manifest.save(out)
    _check(manifest, model, out, texts, evaluate)
    manifest.wall_time_s = round(time.perf_counter() - started, 2)
    manifest.save(out)
    logger.info("exported %s to %s (%s) in %.0f s; auto uses %s", source, out, ", ".join(manifest.files),
                manifest.wall_time_s, manifest.runs_on())
    return manifest


def _model(model_or_ref: Any, source: str | None) -> tuple[Any, str]:
    if isinstance(model_or_ref, (str, Path)):
        ref = resolve_reference(model_or_ref)
        return load_body(ref), source or ref
    if not hasattr(model_or_ref, "tokenizer") or not hasattr(model_or_ref, "encode"):
        raise StudentError(f"cannot export a {type(model_or_ref).__name__}: not a sentence-transformers model")
    return model_or_ref, source or type(model_or_ref).__name__


def formats_for(choice: str) -> tuple[str, ...]:
    """The graphs an export choice makes: ``onnx-int8`` is fp32 and int8 (fp32 stays as the fallback), ``onnx``
    fp32 alone."""
    try:
        formats = ExportChoice(choice).formats
    except ValueError:
        formats = ()
    _check_formats(formats or [choice])
    return formats


def _check_formats(formats: Sequence[Backend | str]) -> None:
    unknown = [str(f) for f in formats if f not in GRAPHS]
    if unknown or not formats:
        raise ConfigError(f"unknown export format {', '.join(unknown) or '(none)'}", hint="use onnx and/or onnx-int8")


def _fresh_folder(out: Path) -> None:
    """An empty folder to export into; an earlier export there is replaced, anything else is refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise ConfigError(f"{out} exists and is not an earlier export: not writing into it",
                              hint="give an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------------------- formats
def _static_table(model: Any) -> np.ndarray | None:
    static = static_module(model)
    return None if static is None else static.embedding.weight.detach().cpu().numpy().astype(np.float32)


def _export_static(model: Any, table: np.ndarray, out: Path, source: str) -> ExportManifest:
    from safetensors.numpy import save_file

    save_file({"embedding.weight": table}, str(out / FILES[Backend.STATIC]))
    static = model[0]
    static.tokenizer.save(str(ExportFolder(out).tokenizer))
    return ExportManifest(source=source, kind="static", dim=int(table.shape[1]), files={Backend.STATIC: FILES[Backend.STATIC]},
                          prompts=_prompts(model))


def _export_onnx(model: Any, out: Path, source: str, formats: Sequence[Backend | str]) -> ExportManifest:
    inputs = _export_graph(model, out / FILES[Backend.ONNX])
    files = {Backend.ONNX: FILES[Backend.ONNX]}
    bits = 8
    if Backend.ONNX_INT8 in formats:
        _quantize(out / FILES[Backend.ONNX], out / FILES[Backend.ONNX_INT8])
        files[Backend.ONNX_INT8] = FILES[Backend.ONNX_INT8]
        # the int8 graph's weights are checked, not assumed: the manifest says what the file holds
        bits = int8_weight_bits(out / FILES[Backend.ONNX_INT8])
    _tokenizer_files(model, out)
    from qdrant_distill._compat import embedding_dimension

    manifest = ExportManifest(source=source, kind="transformer", dim=embedding_dimension(model),
                              max_seq_length=int(model.max_seq_length), inputs=inputs, files=files,
                              prompts=_prompts(model), int8_weight_bits=bits)
    if Backend.ONNX not in formats:  # int8 only: the fp32 graph was the quantiser's input
        (out / FILES[Backend.ONNX]).unlink()
        del manifest.files[Backend.ONNX]
    return manifest


def _prompts(model: Any) -> dict[str, str]:
    """The prompt each kind of text gets, as ``encode_query`` / ``encode_document`` would add it."""
    prompts = dict(getattr(model, "prompts", None) or {})
    default = prompts.get(getattr(model, "default_prompt_name", None) or "", "")
    return {kind: prompts.get(kind, default) for kind in ("query", "document") if prompts.get(kind, default)}


def _export_graph(model: Any, path: Path) -> list[str]:
    """``torch.onnx.export`` of the whole model, batch and sequence axes dynamic; returns its input names."""
    import torch

    sample = model.tokenizer(["an example to trace the graph with", "short"], padding=True, return_tensors="pt")
    names = list(sample.keys())
    wrapper = _whole(model, names).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"sentence_embedding": {0: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings(), _eager_attention(model):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, tuple(sample[n].cpu() for n in names), str(path), input_names=names,
                              output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)
    except Exception as exc:
        raise StudentError(f"cannot export {type(model).__name__} to ONNX: {type(exc).__name__}: {exc}") from exc
    return names


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Trace the plain attention (MatMul, Softmax, MatMul): measured here, the graph traced from PyTorch's SDPA ran
    batches of long texts at 0.7x the speed of this one in onnxruntime (int8 MiniLM: 28.8 against 42.7 docs/s)."""
    auto = getattr(model[0], "auto_model", None)
    setter = getattr(auto, "set_attn_implementation", None)
    before = getattr(getattr(auto, "config", None), "_attn_implementation", None)
    if setter is None or before in (None, "eager"):
        yield
        return
    try:
        setter("eager")
    except (ValueError, ImportError):  # a model without an eager attention: keep what it has
        yield
        return
    try:
        yield
    finally:
        setter(before)


def _whole(model: Any, names: list[str]) -> Any:
    """The model as one function of its tokenizer's tensors, for tracing (a class made here: torch is lazy)."""
    import torch

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model.cpu()

        def forward(self, *tensors: Any) -> Any:
            return self.model(dict(zip(names, tensors)))["sentence_embedding"]

    return Whole()


def _quantize(src: Path, dst: Path, *, weight_bits: int = SAFE_WEIGHT_BITS) -> None:
    """int8 weights for every MatMul, per output channel, but the first layer's FFN output (:data:`KEEP_FP32`); the
    rest stays fp32. Weights in 7 bits (``reduce_range``): with 8, x86 CPUs without VNNI saturate the int16 sums of
    uint8 x int8 products and compute other vectors than VNNI CPUs do (:mod:`qdrant_distill.inference.cpu`). ``weight_bits=8``
    makes the graph older exports hold (tests and benchmarks compare the two)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    keep = [n.name for n in graph.node if n.op_type == "MatMul" and KEEP_FP32.search(n.name)]

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantiser logs a line per tensor on the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=weight_bits <= SAFE_WEIGHT_BITS,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep,
                         extra_options={"DefaultTensorType": 1})
    finally:
        root.setLevel(level)


def int8_weight_bits(path: Path) -> int:
    """The bits an int8 graph's quantised weights use: 7 when every one lies in [-64, 64] (the 2 x 255 x 64 = 32,640
    bound of a saturating int16 pair sum), else 8."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    quantised = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    widest = max((int(np.abs(w.astype(np.int32)).max()) for w in quantised if w.size), default=0)
    return SAFE_WEIGHT_BITS if widest <= 2 ** (SAFE_WEIGHT_BITS - 1) else 8


def _tokenizer_files(model: Any, out: Path) -> None:
    """tokenizer.json and friends, with ``model_max_length`` the model's ``max_seq_length`` (FastEmbed truncates
    there), and config.json."""
    model.tokenizer.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config["model_max_length"] = int(model.max_seq_length)
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = out / "special_tokens_map.json"
    if not special.is_file():
        tokens = {k: str(v) for k, v in model.tokenizer.special_tokens_map.items() if isinstance(v, str)}
        special.write_text(json.dumps(tokens, indent=2), encoding="utf-8")
    auto = getattr(model[0], "auto_model", None)
    if auto is not None and hasattr(auto, "config"):
        auto.config.to_json_file(str(out / "config.json"))


# ------------------------------------------------------------------------------------------------------------ checks
def _check(manifest: ExportManifest, model: Any, out: Path, texts: list[str],
           evaluate: Callable[[Any], dict[str, float]] | None) -> None:
    """Compare every exported format with the torch model; keep only what passes; set ``preferred``."""
    torch_encoder = as_encoder(model)
    reference = {kind: torch_encoder.encode(texts, kind=kind) for kind in ("document", "query")}
    manifest.reference_metrics = evaluate(torch_encoder) if evaluate else {}
    for backend in list(manifest.files):
        encoder = load_encoder(out, backend=backend)
        cosines = np.concatenate([row_cosines(encoder.encode(texts, kind=k), reference[k]) for k in reference])
        metrics = evaluate(encoder) if evaluate and backend is Backend.ONNX_INT8 else {}
        manifest.checks[backend] = BackendCheck(cosine_mean=round(float(cosines.mean()), 5),
                                                cosine_min=round(float(cosines.min()), 5), texts=len(texts),
                                                metrics=metrics)
        reason = _refusal(backend, manifest.checks[backend], manifest.reference_metrics)
        if reason:
            manifest.refuse(backend, reason)
            logger.warning("export: %s not used: %s", backend, reason)
    manifest.preferred = manifest.choose()
    manifest.checked_on = cpu_features()


def _refusal(backend: Backend, check: BackendCheck, reference: dict[str, float]) -> str | None:
    """Why a format must not be used, or None."""
    # int8 moves every vector a little: judged on the mean; fp32 must reproduce every vector
    minimum, value = (MIN_INT8_COSINE, check.cosine_mean) if backend is Backend.ONNX_INT8 else (MIN_FP32_COSINE,
                                                                                        check.cosine_min)
    if value < minimum:
        return f"cosine to the torch model {check.cosine_mean:.4f} (min {check.cosine_min:.4f}) < {minimum}"
    for key in TRACKED:
        if key in check.metrics and key in reference and reference[key] - check.metrics[key] > INT8_TOLERANCE:
            return (f"{key} {check.metrics[key]:.4f} vs {reference[key]:.4f} for the torch model "
                    f"(loses more than {INT8_TOLERANCE})")
    return None


# --------------------------------------------------------------------------------------------------------- fastembed
def fastembed_model(folder: str | Path, *, name: str | None = None,
                    backend: Backend | str | None = None) -> tuple[str, dict[str, Any]]:
    """Register an export folder with FastEmbed; returns the model name and the options that load it.

    Use them with FastEmbed (``TextEmbedding(name, **options)``) or with qdrant-client's inference
    (``models.Document(text=..., model=name, options=options)``). ``backend`` is ``onnx`` or ``onnx-int8`` (default:
    the export's choice). The graph pools itself (pooling disabled); FastEmbed normalises, as load_encoder does. It
    adds no prompt: a model with query/document prompts gets them only through :func:`~qdrant_distill.load_encoder`.
    """
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    path = Path(folder).expanduser().resolve()
    manifest = read_manifest(path)
    if manifest is None or manifest.kind != "transformer":
        raise ConfigError(f"{path} is not an ONNX export", hint="qdrant-distill export MODEL --out FOLDER")
    chosen = Backend(backend) if backend else (manifest.preferred if manifest.preferred in GRAPHS else Backend.ONNX)
    if chosen not in manifest.files:
        raise ConfigError(f"{path} holds no {chosen} graph (it has {', '.join(manifest.files)})")
    model = name or f"qdrant-distill/{path.parent.name}-{path.name}-{chosen}"
    known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
    if model.lower() not in known:
        TextEmbedding.add_custom_model(
            model=model, pooling=PoolingType.DISABLED, normalization=True, sources=ModelSource(hf=model),
            dim=manifest.dim, model_file=manifest.files[chosen],
            description=f"qdrant-distill export of {manifest.source}",
        )
    return model, {"specific_model_path": str(path)}
