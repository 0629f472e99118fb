"""The processor's features that decide how int8 graphs compute, and whether an int8 export is exact here.

onnxruntime's int8 MatMul multiplies uint8 activations by int8 weights. x86 CPUs without VNNI (SSE, AVX2, AVX-512
without VNNI) add each pair of those products into one int16 (``vpmaddubsw``), which saturates beyond 32,767: with
8-bit weights a pair reaches 2 x 255 x 127 = 64,770, so results are wrong by up to tens of thousands and depend on
how a batch is laid out. VNNI (``vpdpbusd``), ARM and GPUs accumulate in int32 and do not saturate. Weights kept in
7 bits (``|w| <= 64``, onnxruntime's ``reduce_range``) keep every pair within 2 x 255 x 64 = 32,640, so every kernel
computes the same exact integers (measured: 99.94% of a u8 x s8 MatMul's outputs wrong under an AVX2-only CPU with
8-bit weights, none with 7-bit; docs/encoders.md).

Exports written since then carry 7-bit weights (``ExportManifest.int8_weight_bits``) and are exact everywhere; an
older export's 8-bit weights are exact only where :func:`int8_exact` says so, and the loader falls back to fp32
elsewhere (:func:`int8_refusal`).
"""

from __future__ import annotations

import platform
from functools import lru_cache

from pydantic import BaseModel, Field

__all__ = ["SAFE_WEIGHT_BITS", "CpuFeatures", "cpu_features", "int8_exact", "int8_refusal"]

SAFE_WEIGHT_BITS = 7  # 2 x 255 x 2**(bits-1) must stay within int16: 7 bits (|w| <= 64) does, 8 bits does not
# the features that pick onnxruntime's int8 kernels on x86 (numpy's names, read through CPUID)
X86_FLAGS = ("AVX2", "AVX512F", "AVX512BW", "AVX512VNNI", "AVX512_SPR")


class CpuFeatures(BaseModel):
    """What an export's int8 checks ran on (recorded in ``export.json``)."""

    machine: str
    flags: list[str] = Field(default_factory=list)
    vnni: bool = False

    @property
    def x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")

    def describe(self) -> str:
        if not self.x86:
            return self.machine
        return f"{self.machine} ({', '.join(self.flags) or 'no AVX2'}; {'VNNI' if self.vnni else 'no VNNI'})"


@lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This processor's int8-relevant features, as numpy reads them through CPUID (right under an emulator too, where
    /proc/cpuinfo shows the host). numpy does not name the VEX-encoded AVX-VNNI of some client CPUs: those count as
    without VNNI, which only costs an old 8-bit export its int8 speed there."""
    machine = platform.machine() or "unknown"
    try:
        from numpy._core._multiarray_umath import (
            __cpu_features__ as found,  # numpy >= 2
        )
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as found
    flags = [name for name in X86_FLAGS if found.get(name)]
    return CpuFeatures(machine=machine, flags=flags, vnni=bool(found.get("AVX512VNNI")))


def int8_exact(weight_bits: int, features: CpuFeatures | None = None) -> bool:
    """Whether onnxruntime computes an int8 graph with weights of ``weight_bits`` exactly on this processor."""
    features = features or cpu_features()
    return weight_bits <= SAFE_WEIGHT_BITS or not features.x86 or features.vnni


def int8_refusal(weight_bits: int, features: CpuFeatures | None = None) -> str | None:
    """Why an int8 graph must not run here (its vectors would not be the ones it wrote elsewhere), or None."""
    features = features or cpu_features()
    if int8_exact(weight_bits, features):
        return None
    return (f"its int8 graph has {weight_bits}-bit weights, which this processor ({features.describe()}) computes "
            f"with saturating 16-bit sums: its vectors would differ from the ones written on other machines "
            f"(export it again for 7-bit weights, exact everywhere: qdrant-distill export)")
