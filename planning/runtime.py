"""Process-level tuning for running the planner on a CPU.

The planner's batch tensors (a few hundred kB to a few MB each) are allocated and freed
every cycle. With glibc's default, adaptive thresholds that memory goes back to the kernel
between cycles and every new tensor page-faults on first touch — on a small VM that was
about a third of a planning cycle. Call :func:`tune_allocator` once at start-up of a
process that plans (the planning service, the benchmark); it is process-wide, so it is
never done implicitly on import. The same effect without code:
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456`` in the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(
    mmap_threshold_bytes: int = 32 * 1024 * 1024,
    trim_threshold_bytes: int = 256 * 1024 * 1024,
) -> bool:
    """Keep freed heap memory in the process (glibc ``mallopt``). True when applied.

    Allocations below ``mmap_threshold_bytes`` come from the heap, and up to
    ``trim_threshold_bytes`` of free heap is kept instead of returned to the kernel.
    A no-op returning False off Linux or without glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, trim_threshold_bytes) == 1
    return ok_mmap and ok_trim
