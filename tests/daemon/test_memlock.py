"""model.mlock: mlockall when allowed, a clear one-line warning when the limit forbids it.

Each case runs in a fresh interpreter: locking the test runner's own memory would be rude."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_LOCKED_KB = """
from ambient.daemon.memlock import lock_memory
import numpy as np
big = np.ones(32 * 1024 * 1024 // 8)  # 32 MiB touched before locking
print(lock_memory())
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmLck")))
"""

_LIMITED = """
import os, resource
resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
os.geteuid = lambda: 1000  # behave as the unprivileged service user
from ambient.daemon.memlock import lock_memory
print(lock_memory())
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmLck")))
"""


def run(code: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs CAP_IPC_LOCK (root) to lock without a raised limit")
def test_locks_all_memory_when_allowed() -> None:
    problem, locked_kb = run(_LOCKED_KB)
    assert problem == "None"
    assert int(locked_kb) > 32 * 1024  # at least the array


def test_explains_a_memlock_limit_instead_of_locking() -> None:
    problem, locked_kb = run(_LIMITED)
    assert "RLIMIT_MEMLOCK is 64 KiB" in problem and "LimitMEMLOCK=infinity" in problem
    assert int(locked_kb) == 0
