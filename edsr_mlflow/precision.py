"""Which precision and compiler a training run uses on the machine it runs on.

``precision=auto`` picks by what the hardware offers, following what
``benchmarks/precision_and_flops.py`` measured (README, "Speed"):

- a CPU with native bfloat16 (``amx_bf16`` or ``avx512_bf16`` in its flags): ``mixed_bfloat16``
  on TensorFlow's oneDNN kernels, not XLA-compiled (XLA's CPU code ignores those units and ran
  slower than float32);
- any other CPU (AVX2 only): ``float32``, not compiled (TensorFlow's own bfloat16 kernels are
  emulated there, about 10x slower);
- a GPU with bfloat16 tensor cores (compute capability 8.0 and up): ``mixed_bfloat16``,
  XLA-compiled; with float16 tensor cores only (7.x): ``mixed_float16``, XLA-compiled; older
  GPUs: ``float32``, XLA-compiled.

An explicit precision is kept; only whether to compile follows the same rule. Plain Python,
no TensorFlow: the caller passes what it found (:func:`cpu_flags`, the GPUs' compute capability).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    policy: str  # the Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    xla: bool  # whether the training step is XLA-compiled (jit_compile)
    reason: str  # one line, logged as the tag ``precision_reason`` and printed


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def choose_precision(requested: str, *, gpu_capability: tuple[int, int] | None, flags: frozenset[str]) -> PrecisionChoice:
    """The precision and compilation for ``requested`` (``auto`` or an explicit policy) on a
    machine with ``gpu_capability`` (the first GPU's compute capability; None: CPU only) and
    CPU ``flags``."""
    if gpu_capability is not None:
        major, minor = gpu_capability
        if requested == AUTO:
            if major >= 8:
                return PrecisionChoice("mixed_bfloat16", True, f"GPU compute capability {major}.{minor}: bfloat16 tensor cores, XLA")
            if major == 7:
                return PrecisionChoice("mixed_float16", True, f"GPU compute capability {major}.{minor}: float16 tensor cores, XLA")
            return PrecisionChoice("float32", True, f"GPU compute capability {major}.{minor}: no tensor cores, XLA")
        return PrecisionChoice(requested, True, f"{requested} as asked, on a GPU: XLA")
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in flags]
    if requested == AUTO:
        if native:
            return PrecisionChoice("mixed_bfloat16", False, f"CPU with {native[0]}: bfloat16 on oneDNN's native kernels, no XLA")
        return PrecisionChoice("float32", False, "CPU without native bfloat16 (no amx_bf16/avx512_bf16): float32")
    if requested == "mixed_bfloat16":
        if native:
            return PrecisionChoice(requested, False, f"mixed_bfloat16 as asked, CPU with {native[0]}: oneDNN's native kernels, no XLA")
        return PrecisionChoice(requested, True, "mixed_bfloat16 as asked, CPU without native bfloat16: XLA-compiled")
    return PrecisionChoice(requested, False, f"{requested} as asked, on a CPU: no XLA")
