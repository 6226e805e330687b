"""Process-wide allocator settings for the command line.

PyTorch on the CPU allocates every large activation with glibc malloc, which serves blocks above
128 KB-32 MB with fresh ``mmap`` pages and unmaps them on free. The network allocates and frees
tens of MB per layer, so each layer's output is page-faulted and zero-filled again by the kernel:
for the extraction of a 730² face region that was 1.2 s of system time out of 3.5 s. Keeping freed
memory in the heap (no mmap, no trimming) makes the pages reused: 0.25 s, same peak memory ±10 %.

Only the CLI calls this (a library should not change its host process's allocator); set
IMNKIT_KEEP_MALLOC=1 to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True if it was applied (Linux/glibc only)."""
    if not sys.platform.startswith("linux") or os.environ.get("IMNKIT_KEEP_MALLOC") == "1":
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_MAX, 0) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return ok_mmap and ok_trim
