"""glibc heap settings: freed activation-sized blocks go back to the system at once, whatever came
before (the runtime also trims after each utterance; this keeps the peak between trims down)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ambient.runtime.heap import _libc

PROBE = r"""
import ctypes, sys
from ambient.runtime.heap import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024

def touch(n):
    p = libc.malloc(n)
    libc.memset(p, 1, n)
    return p

libc.free(touch(8 << 20))  # one long utterance: glibc would now raise its mmap threshold to 8 MiB
before = rss()
blocks, pins = [], []
for _ in range(40):  # activation buffers with long-lived allocations between them
    blocks.append(touch(1 << 20))
    pins.append(touch(100 << 10))
for p in blocks:
    libc.free(p)
print(rss() - before)
"""


@pytest.mark.skipif(_libc() is None, reason="glibc only")
def test_freed_activation_buffers_leave_the_resident_set_only_when_tuned() -> None:
    def growth(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return float(out.stdout.strip())

    assert growth("tuned") < 4.0  # MiB: each 1 MiB block had its own mapping and went back
    assert growth("default") > 20.0  # the probe does show the fragmentation it guards against
