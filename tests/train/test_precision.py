"""``optim.precision`` resolved against the CPU's feature flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ambient.train.config import OptimConfig
from ambient.train.precision import cpu_flags, native_bf16, resolve_precision

# trimmed /proc/cpuinfo of real machines
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 ssse3 fma avx avx2 f16c bmi2
processor\t: 1
flags\t\t: fpu vme sse sse2 ssse3 fma avx avx2 f16c bmi2
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes sha1 sve asimddp i8mm bf16 dgh rng
CPU implementer\t: 0x41
"""


def test_flags_are_read_from_x86_and_arm_cpuinfo() -> None:
    assert {"avx2", "f16c"} <= cpu_flags(EPYC_AVX2)
    assert "avx512_bf16" not in cpu_flags(EPYC_AVX2)
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(SAPPHIRE_RAPIDS)
    assert {"sve", "bf16"} <= cpu_flags(GRAVITON3)
    assert cpu_flags("model name\t: flags in a name\n") == frozenset()


@pytest.mark.parametrize(("cpuinfo", "native"), [(EPYC_AVX2, False), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True)])
def test_auto_picks_bf16_only_where_it_is_native(cpuinfo: str, native: bool) -> None:
    flags = cpu_flags(cpuinfo)
    assert native_bf16("cpu", flags) is native
    assert resolve_precision("auto", "cpu", flags) == ("bf16" if native else "fp32", None)
    assert resolve_precision("fp32", "cpu", flags) == ("fp32", None)


def test_explicit_bf16_is_kept_with_a_warning_where_it_is_emulated() -> None:
    precision, warning = resolve_precision("bf16", "cpu", cpu_flags(EPYC_AVX2))
    assert precision == "bf16"
    assert warning is not None and "no native bfloat16" in warning and "fp32" in warning
    assert resolve_precision("bf16", "cpu", cpu_flags(SAPPHIRE_RAPIDS)) == ("bf16", None)


def test_auto_is_the_default_and_bad_values_are_refused() -> None:
    assert OptimConfig().precision == "auto"
    with pytest.raises(ValueError, match="precision"):
        OptimConfig(precision="fp16")  # type: ignore[arg-type]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/cpuinfo is Linux's")
def test_this_machine_flags_agree_with_proc_cpuinfo() -> None:
    text = Path("/proc/cpuinfo").read_text()
    flags = cpu_flags()
    assert flags, "no flags read from /proc/cpuinfo"
    assert all(f in text for f in flags)
    assert resolve_precision("auto", "cpu")[0] == ("bf16" if flags & {"avx512_bf16", "amx_bf16", "bf16"} else "fp32")
