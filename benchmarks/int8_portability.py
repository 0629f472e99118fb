"""int8 across CPUs: 8-bit against 7-bit weights, on this machine and under an emulated AVX2-only CPU.

    .venv/bin/python benchmarks/int8_portability.py                # ~5 min (the emulated CPU is ~200x slower)
    .venv/bin/python benchmarks/int8_portability.py --emulated-minilm 4   # MiniLM under emulation too (slow)

Rows: (1) onnxruntime's MatMulInteger (u8 activations x s8 weights) against exact int64 arithmetic, 8-bit and 7-bit
weights; (2) for the tests' tiny model and all-MiniLM-L6-v2 (SciFact abstracts at 256 tokens), int8 cosine to the
fp32 graph (min / mean, one text a call and 32 a call) and documents/s, with 8-bit and 7-bit weights; (3) with
``qemu-x86_64`` (Debian's qemu-user), the same encodings under ``-cpu Haswell`` (AVX2, no VNNI), compared with this
machine's. Prints a table and writes benchmarks/results/int8_portability.json. See docs/encoders.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import REPO, RESULTS

from qdrant_distill.inference.cpu import cpu_features
from tests.test_int8_portability import MATMUL_CHECK

CORPUS = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl.gz"
QEMU = shutil.which("qemu-x86_64")
SCHEMES = {"8-bit": 8, "7-bit": 7}  # int8 weight bits

ENCODE = """
import json, sys, time
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, graph, batch, texts_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
texts = json.load(open(texts_file))
manifest = json.load(open(folder + "/export.json"))
tok = Tokenizer.from_file(folder + "/tokenizer.json")
tok.enable_truncation(manifest["max_seq_length"]); tok.enable_padding()
options = ort.SessionOptions(); options.intra_op_num_threads = 1
session = ort.InferenceSession(folder + "/" + graph, options, providers=["CPUExecutionProvider"])
out, started = [], time.perf_counter()
for i in range(0, len(texts), batch):
    enc = tok.encode_batch(texts[i:i + batch])
    cols = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
            "token_type_ids": [e.type_ids for e in enc]}
    out.append(session.run(None, {k: np.asarray(cols[k], dtype=np.int64) for k in manifest["inputs"]})[0])
v = np.concatenate(out); v /= np.linalg.norm(v, axis=1, keepdims=True)
print(json.dumps({"seconds": time.perf_counter() - started, "vectors": v.tolist()}))
"""


def abstracts(n: int) -> list[str]:
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            out.append(doc["title"] + " " + doc["text"])
            if len(out) >= n:
                break
    return out


def build(model: str, folder: Path) -> None:
    """fp32 graph via the project's export, then both int8 schemes with the project's quantiser."""
    from qdrant_distill.inference.export import _quantize, export_model

    export_model(model, folder, formats=("onnx",))
    for name in SCHEMES:
        _quantize(folder / "model.onnx", folder / f"model_{name}.onnx", weight_bits=SCHEMES[name])


def encode(folder: Path, graph: str, batch: int, texts_file: Path, emulate: bool) -> tuple[np.ndarray, float]:
    command = ([QEMU, "-cpu", "Haswell"] if emulate else []) + [sys.executable, "-c", ENCODE, str(folder), graph,
                                                               str(batch), str(texts_file)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return np.array(answer["vectors"], dtype=np.float32), answer["seconds"]


def matmul(emulate: bool) -> dict[str, float]:
    command = ([QEMU, "-cpu", "Haswell"] if emulate else []) + [sys.executable, "-c", MATMUL_CHECK]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_rows(name: str, folder: Path, texts: list[str], emulated_n: int, work: Path) -> list[dict]:
    texts_file = work / f"{name}.json"
    texts_file.write_text(json.dumps(texts))
    small = work / f"{name}-small.json"
    small.write_text(json.dumps(texts[:emulated_n]))
    fp32 = {b: encode(folder, "model.onnx", b, texts_file, False)[0] for b in (1, 32)}
    rows = []
    for scheme in SCHEMES:
        graph = f"model_{scheme}.onnx"
        for batch in (1, 32):
            here, seconds = encode(folder, graph, batch, texts_file, False)
            cos = (here * fp32[1]).sum(axis=1)
            row = {"model": name, "weights": scheme, "batch": batch, "texts": len(texts),
                   "cosine_min": round(float(cos.min()), 4), "cosine_mean": round(float(cos.mean()), 4),
                   "docs_per_s": round(len(texts) / seconds, 1)}
            if QEMU and emulated_n:
                there, _ = encode(folder, graph, min(batch, emulated_n), small, True)
                ref, _ = encode(folder, graph, min(batch, emulated_n), small, False)
                ecos = (there * fp32[1][:emulated_n]).sum(axis=1)
                row |= {"emulated_texts": emulated_n, "emulated_cosine_min": round(float(ecos.min()), 4),
                        "emulated_cosine_mean": round(float(ecos.mean()), 4),
                        "emulated_vs_here_max_abs": float(np.abs(there - ref).max())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=64, help="SciFact abstracts encoded on this machine")
    parser.add_argument("--emulated-tiny", type=int, default=16, help="texts of the tiny model under emulation")
    parser.add_argument("--emulated-minilm", type=int, default=0, help="texts of MiniLM under emulation (slow)")
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_portability.json")
    args = parser.parse_args()
    from tests.conftest import MINILM, build_tiny_model

    result: dict = {"cpu": cpu_features().model_dump(), "emulator": "qemu-x86_64 -cpu Haswell" if QEMU else None,
                    "matmul": {"here": matmul(False)}, "models": []}
    if QEMU:
        result["matmul"]["emulated_avx2"] = matmul(True)
    print(json.dumps(result["matmul"]))
    texts = abstracts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = build_tiny_model(work / "tiny-src")
        for name, model, emulated in (("tiny", tiny, args.emulated_tiny), ("all-MiniLM-L6-v2", MINILM,
                                                                          args.emulated_minilm)):
            build(str(model), work / name)
            result["models"] += model_rows(name, work / name, texts, emulated, work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nCPU: {cpu_features().describe()}")
    print("| model | weights | batch | cosine to fp32 min / mean | docs/s | emulated AVX2: min / mean | max abs vs here |")
    print("|---|---|---|---|---|---|---|")
    for r in result["models"]:
        emu = (f"{r['emulated_cosine_min']:.4f} / {r['emulated_cosine_mean']:.4f} | {r['emulated_vs_here_max_abs']:.1e}"
               if "emulated_texts" in r else "- | -")
        print(f"| {r['model']} | {r['weights']} | {r['batch']} | {r['cosine_min']:.4f} / {r['cosine_mean']:.4f} | "
              f"{r['docs_per_s']} | {emu} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
