"""Memory that sizes would need, checked before anything is allocated: Linux lets a process reserve more
than there is (overcommit) and kills it later, and NumPy's own errors for absurd sizes are not about memory.
Standard library only.
"""
from __future__ import annotations

import os
from typing import Optional

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def available() -> Optional[int]:
    """Bytes this machine can still give a process (free RAM and swap), or None when it cannot tell."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        if "MemAvailable" in info:
            return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes: physical memory, an upper bound
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def describe(nbytes: int) -> str:
    """1288490188800 -> '1.2 TiB'; past the units, a power of ten (a float could overflow)."""
    if nbytes >= 1024 ** len(_UNITS):
        return f"about 10^{len(str(nbytes)) - 1} bytes"
    value, unit = float(nbytes), 0
    while value >= 1024:
        value, unit = value / 1024, unit + 1
    return f"{nbytes} bytes" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def check(what: str, nbytes: int, purpose: str = "") -> None:
    """MemoryError, one line ("{what} needs 1.2 TiB of memory{purpose}, more than the 7.5 GiB available"),
    when nbytes is more than is available, or more than any array can hold."""
    free = available()
    if nbytes >= 2 ** 63 or (free is not None and nbytes > free):
        limit = f"the {describe(free)} available" if free is not None else "any machine has"
        raise MemoryError(f"{what} needs {describe(nbytes)} of memory{purpose}, more than {limit}")
