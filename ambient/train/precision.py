"""Which precision a training run computes in: ``optim.precision`` resolved against the hardware.

bfloat16 autocast pays off only where the hardware multiplies bfloat16 natively: CUDA GPUs, x86 CPUs
with AVX512-BF16 or AMX, and Arm CPUs with the BF16 extension. Elsewhere PyTorch emulates it, and a
step is several times slower than in fp32 (measured: ~6x on an AVX2-only AMD EPYC, docs/training.md).
``auto`` picks bf16 only where it is native; an explicit ``bf16`` on such a CPU is honoured with a
warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

__all__ = ["BF16_CPU_FLAGS", "Precision", "cpu_flags", "native_bf16", "resolve_precision"]

Precision = Literal["bf16", "fp32"]

#: CPU feature flags (``/proc/cpuinfo``) that mean bfloat16 matrix arithmetic in hardware.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the ``flags`` (x86) or ``Features`` (Arm) lines of ``cpuinfo``
    (default: ``/proc/cpuinfo``; empty where it cannot be read, e.g. off Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def native_bf16(device_type: str, flags: frozenset[str] | None = None) -> bool:
    """Whether ``device_type`` (``cpu``/``cuda``) computes bfloat16 natively; ``flags`` default to
    :func:`cpu_flags`."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type != "cpu":
        return False
    return bool((cpu_flags() if flags is None else flags) & BF16_CPU_FLAGS)


def resolve_precision(
    setting: Literal["auto", "bf16", "fp32"], device_type: str, flags: frozenset[str] | None = None
) -> tuple[Precision, str | None]:
    """The precision to train in, and a warning to log (or None).

    Args:
        setting: ``optim.precision``.
        device_type: ``cpu`` or ``cuda``.
        flags: CPU feature flags (default: this machine's).

    Returns:
        ``("bf16" | "fp32", warning)``: ``auto`` gives bf16 where it is native, else fp32; an explicit
        value is kept, with a warning when it is bf16 without native support.
    """
    native = native_bf16(device_type, flags)
    if setting == "auto":
        return ("bf16" if native else "fp32"), None
    if setting == "bf16" and not native:
        return "bf16", (
            f"optim.precision is bf16 but this {device_type} has no native bfloat16 "
            f"(none of {', '.join(sorted(BF16_CPU_FLAGS))}): steps run several times slower than fp32; "
            "set optim.precision: auto or fp32"
        )
    return setting, None
