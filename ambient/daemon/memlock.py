"""``model.mlock``: lock the process memory so the resident model is never paged out.

``mlockall(MCL_CURRENT | MCL_FUTURE)`` through ctypes. With ``MCL_FUTURE`` every later allocation
must fit under ``RLIMIT_MEMLOCK`` or it fails, which would crash torch in the middle of an
utterance, so the lock is only attempted when the limit is unlimited or the process may exceed it
(root / CAP_IPC_LOCK); otherwise :func:`lock_memory` explains how to raise the limit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource

__all__ = ["lock_memory"]

_MCL_CURRENT = 1
_MCL_FUTURE = 2


def _fmt_limit(value: int) -> str:
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{value // 1024} KiB"


def lock_memory() -> str | None:
    """Lock all current and future pages. Returns None on success, else a one-line explanation."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:
        return (
            f"model.mlock needs an unlimited memlock limit (RLIMIT_MEMLOCK is {_fmt_limit(soft)}); "
            "set LimitMEMLOCK=infinity in the systemd unit"
        )
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        mlockall = libc.mlockall
    except (OSError, AttributeError) as e:
        return f"model.mlock: mlockall is not available on this system ({e})"
    mlockall.argtypes = [ctypes.c_int]
    mlockall.restype = ctypes.c_int
    if mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        err = ctypes.get_errno()
        hint = "; set LimitMEMLOCK=infinity or grant CAP_IPC_LOCK" if err in (1, 12) else ""  # EPERM, ENOMEM
        return f"model.mlock: mlockall failed: {os.strerror(err)} (RLIMIT_MEMLOCK {_fmt_limit(soft)}){hint}"
    return None
