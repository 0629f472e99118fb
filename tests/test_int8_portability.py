"""int8 graphs compute the same vectors on every CPU: 7-bit weights, checked in the graph, and under an emulated CPU
without VNNI (``qemu-x86_64 -cpu Haswell``: AVX2 only) against this machine, whatever this machine has.

Why (qdrant_distill/cpu.py): x86 CPUs without VNNI add pairs of uint8 x int8 products into one saturating int16.
With 8-bit weights a pair reaches 2 x 255 x 127 = 64,770 > 32,767; with 7-bit weights (|w| <= 64) at most 32,640.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qdrant_distill.inference.cpu import (
    CpuFeatures,
    cpu_features,
    int8_exact,
    int8_refusal,
)
from qdrant_distill.inference.encoders import load_encoder
from qdrant_distill.inference.export import FILES, export_model, int8_weight_bits
from qdrant_distill.inference.formats import MANIFEST, read_manifest

REPO = Path(__file__).resolve().parents[1]
QEMU = shutil.which("qemu-x86_64")
INT16_MAX = 32_767
TEXTS = ["a", "what causes rain", "Vitamin D deficiency is associated with an increased risk of fractures.",
         " ".join(["word"] * 90)]
needs_qemu = pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                                reason="needs qemu-user on x86_64 (apt-get install qemu-user) to emulate an AVX2 CPU")

# The MatMulInteger check run here and under emulation: u8 activations (as DynamicQuantizeLinear makes them) times
# int8 weights of a given range, against exact int64 arithmetic; prints the share of wrong outputs per range.
MATMUL_CHECK = """
import json, sys
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper
rng = np.random.default_rng(0)
x = rng.integers(0, 256, size=(16, 384), dtype=np.uint8)
zero = np.array(128, dtype=np.uint8)
def wrong(limit):
    w = rng.integers(-limit, limit + 1, size=(384, 64)).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w", "z"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [16, 384]),
         helper.make_tensor_value_info("w", TensorProto.INT8, [384, 64]),
         helper.make_tensor_value_info("z", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [16, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x, "w": w, "z": zero})[0].astype(np.int64)
    exact = (x.astype(np.int64) - 128) @ w.astype(np.int64)
    return float((got != exact).mean())
print(json.dumps({"8-bit": wrong(127), "7-bit": wrong(64)}))
"""

ENCODE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from qdrant_distill.inference.cpu import cpu_features
from qdrant_distill.inference.encoders import load_encoder
enc = load_encoder(sys.argv[1], backend="onnx-int8", batch_size=int(sys.argv[2]))
texts = json.loads(sys.argv[3])
print(json.dumps({"backend": enc.backend, "vnni": cpu_features().vnni, "vectors": enc.encode(texts).tolist()}))
"""


def run_python(code: str, *args: str, emulate: bool) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = ([QEMU, "-cpu", "Haswell"] if emulate else []) + [sys.executable, "-c", code, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def exported(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("portable") / "tiny-onnx"
    export_model(str(tiny_model_path), out)
    return out


def test_int8_weights_are_seven_bit_so_no_pair_of_products_can_saturate(exported: Path) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(exported / FILES["onnx-int8"])).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights, "the int8 graph holds no int8 weights"
    widest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert widest <= 64 and 2 * 255 * widest <= INT16_MAX
    manifest = read_manifest(exported)
    assert manifest is not None and manifest.int8_weight_bits == 7 == int8_weight_bits(exported / FILES["onnx-int8"])
    assert manifest.checked_on == cpu_features()  # the processor the checks ran on is recorded


def test_only_an_old_eight_bit_graph_on_an_x86_cpu_without_vnni_is_refused() -> None:
    avx2 = CpuFeatures(machine="x86_64", flags=["AVX2"])
    vnni = CpuFeatures(machine="x86_64", flags=["AVX2", "AVX512F", "AVX512BW", "AVX512VNNI"], vnni=True)
    arm = CpuFeatures(machine="aarch64")
    assert int8_exact(7, avx2) and int8_exact(8, vnni) and int8_exact(8, arm) and not int8_exact(8, avx2)
    reason = int8_refusal(8, avx2)
    assert reason is not None and "8-bit weights" in reason and "no VNNI" in reason
    assert int8_refusal(7, avx2) is None


def test_seven_bit_int8_arithmetic_is_exact_on_this_cpu() -> None:
    wrong, _ = run_python(MATMUL_CHECK, emulate=False)
    assert wrong["7-bit"] == 0.0
    if cpu_features().vnni:  # VNNI accumulates in int32: 8-bit weights are exact too
        assert wrong["8-bit"] == 0.0


@needs_qemu
def test_an_avx2_cpu_saturates_eight_bit_weights_and_computes_seven_bit_ones_exactly() -> None:
    wrong, _ = run_python(MATMUL_CHECK, emulate=True)
    # the emulated CPU takes the AVX2 kernel: 8-bit weights give wrong sums (so this test sees what users would) ...
    assert wrong["8-bit"] > 0.5
    assert wrong["7-bit"] == 0.0  # ... and 7-bit weights none


@needs_qemu
@pytest.mark.parametrize("batch_size", [1, 4])
def test_int8_vectors_are_the_same_on_an_avx2_cpu_as_here(exported: Path, batch_size: int) -> None:
    args = (str(exported), str(batch_size), json.dumps(TEXTS))
    here, _ = run_python(ENCODE, *args, emulate=False)
    there, _ = run_python(ENCODE, *args, emulate=True)
    assert here["backend"] == there["backend"] == "onnx-int8" and there["vnni"] is False
    # measured: the integer parts are equal; fp32 rounding around them moves a vector by at most 4e-5 (b32, tiny)
    np.testing.assert_allclose(np.array(there["vectors"]), np.array(here["vectors"]), atol=1e-4)


def eight_bit_export(exported: Path, out: Path) -> Path:
    """The folder as an export made before 7-bit weights: 8-bit weights and a manifest without the field."""
    from qdrant_distill.inference.export import _quantize

    shutil.copytree(exported, out)
    _quantize(out / FILES["onnx"], out / FILES["onnx-int8"], weight_bits=8)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest.pop("int8_weight_bits"), manifest.pop("checked_on")
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


def test_an_old_eight_bit_export_still_runs_int8_on_a_vnni_cpu(exported: Path, tmp_path: Path) -> None:
    old = eight_bit_export(exported, tmp_path / "old")
    manifest = read_manifest(old)
    assert manifest is not None and manifest.int8_weight_bits == 8 == int8_weight_bits(old / FILES["onnx-int8"])
    expected = "onnx-int8" if int8_exact(8) else "onnx"
    assert load_encoder(old, backend="onnx-int8").backend == expected
    assert load_encoder(old).backend == expected  # auto: the export's choice, where it is exact


@needs_qemu
def test_an_old_eight_bit_export_falls_back_to_fp32_on_an_avx2_cpu_and_says_why(exported: Path,
                                                                                tmp_path: Path) -> None:
    old = eight_bit_export(exported, tmp_path / "old")
    there, log = run_python(ENCODE, str(old), "4", json.dumps(TEXTS), emulate=True)
    assert there["backend"] == "onnx"
    assert "not running int8 here" in log and "8-bit weights" in log and "no VNNI" in log
    fp32 = load_encoder(old, backend="onnx").encode(TEXTS)
    np.testing.assert_allclose(np.array(there["vectors"]), fp32, atol=1e-5)
