"""Keep freed activation memory in the process for the next batch instead of unmapping it.

glibc hands out large blocks with mmap and gives them back to the kernel on free; its threshold
for "large" starts at 128 KiB and only adapts upward as such blocks are freed. Every activation
map of a CNN is that large, so without help a good part of each call's maps are fresh pages that
the kernel must fault in and zero, on every call (the measurements are in the README,
Performance, "Process settings").

`keep_freed_memory()` sets glibc's mmap threshold to its maximum (32 MiB) and the trim threshold
to twice that, which is where glibc's own adaptive rule would settle: freed blocks below 32 MiB
go back to the heap and are reused, and at most 64 MiB of free heap top stays resident. Setting
the trim threshold alone would be worse than nothing: it switches the adaptive rule off and
leaves the threshold at 128 KiB, so every map is mmapped afresh. A value the user set
(MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_, or CONVSERVE_KEEP_FREED_MEMORY=0) wins, and
other C libraries (musl has no mallopt) are left alone.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory(environ: Mapping[str, str] | None = None, libc: Any = None) -> bool:
    """Ask glibc to reuse freed large blocks; True when the settings took."""
    env = os.environ if environ is None else environ
    if env.get("CONVSERVE_KEEP_FREED_MEMORY", "1") == "0" or any(k in env for k in USER_SETTINGS):
        return False
    if libc is None:
        try:
            libc = ctypes.CDLL(None)
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
