"""Process memory settings for training: freed blocks are kept for reuse.

A training step allocates and frees the same large tensors every batch (a 128 x 25,734
float32 activation is 13 MB). glibc's malloc serves such blocks with ``mmap`` (or trims them
off the heap) and gives them back to the OS on ``free``, so the next batch page-faults the
same memory in again: on SNARE-seq that was a third of the MultiVI-style step's CPU time.
:func:`keep_freed_memory` makes malloc keep blocks up to 32 MB on its heap and stop trimming
it, so they are reused. Peak memory is unchanged (the blocks were in use at the peak anyway);
memory is no longer returned to the OS between batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: largest block served from the heap (glibc's ceiling for the mmap threshold on 64 bits)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap kept before trimming
TRIM_THRESHOLD = 1024 * 1024 * 1024

_done = False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks (once per process); ``False`` elsewhere.

    Returns whether the settings were applied (Linux with glibc only).
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to set
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _done = ok
    return ok
