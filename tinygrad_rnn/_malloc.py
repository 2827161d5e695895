"""Keep freed gradient buffers in the process instead of handing them back to the OS.

Backward makes one weight-sized temporary per use of a weight (an outer product for W_h, every step).
glibc returns such blocks to the OS on free and page-faults them back in on the next step:
about 2,700 faults and 2x the time of an LSTM training step. Raising the trim and mmap
thresholds keeps them reusable. Only on glibc; TINYGRAD_RNN_SYSTEM_MALLOC=1 leaves malloc alone.
"""
import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(trim_mb: int = 64, mmap_mb: int = 16) -> bool:
    """Set glibc's malloc thresholds; True if they were set."""
    if not sys.platform.startswith("linux") or os.environ.get("TINYGRAD_RNN_SYSTEM_MALLOC"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt: nothing to tune
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_mb << 20)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20))
