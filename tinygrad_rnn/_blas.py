"""One BLAS thread inside the library's own calls on small matrices, scoped to each call (threadpoolctl):
training and analysis, a small model's forward (hidden size up to 512) and backward. An RNN's matrices are
small, and BLAS threads only fight over the cores (an LSTM trains 2-13x slower with them on 2 cores).
Never a process-wide change: the caller's setting is back when the call returns, and a BLAS thread
variable the user set (OPENBLAS_NUM_THREADS, ...) wins. Standard library and threadpoolctl only.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS")
SMALL_HIDDEN = 512  # up to this hidden size one thread is faster; past it BLAS threads start to pay
_local = threading.local()
_libs: Any = None  # threadpoolctl's controllers of the loaded BLAS libraries, found once (it takes a moment)


def _blas_libs() -> list:
    global _libs
    if _libs is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # an install without it: as fast as the environment says
            _libs = []
        else:
            _libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return _libs


_MANY_CPUS = (os.cpu_count() or 1) > 1  # asked once: os.cpu_count() takes microseconds


class one_thread:
    """Within the block, BLAS runs on one thread when the sizes are `small`; the outermost block decides and
    nested ones cost nothing (threadpoolctl's setters, called directly, take a few microseconds). A class, not
    a generator: backward() enters one for every graph."""
    __slots__ = ("small", "before", "outermost")

    def __init__(self, small: bool = True) -> None:
        self.small, self.before, self.outermost = small, None, False

    def __enter__(self) -> None:
        if getattr(_local, "held", False):
            return
        self.outermost = _local.held = True
        if not self.small or not _MANY_CPUS or _user_chose():
            return
        libs = _blas_libs()
        self.before = [lib.get_num_threads() for lib in libs]
        for lib, n in zip(libs, self.before):
            if n != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc_info: Any) -> None:
        if not self.outermost:
            return
        _local.held = self.outermost = False
        if self.before is not None:
            for lib, n in zip(_blas_libs(), self.before):
                if n != 1:
                    lib.set_num_threads(n)
            self.before = None


def held() -> bool:
    """True inside a one_thread block on this thread: a nested call leaves the choice to the outermost."""
    return getattr(_local, "held", False)


_chosen: Any = None  # whether the environment sets a BLAS thread variable: read once, as BLAS reads it once


def _user_chose() -> bool:
    """A BLAS thread variable in the environment: the user's choice, which the library leaves alone."""
    global _chosen
    if _chosen is None:
        _chosen = any(v in os.environ for v in VARIABLES)
    return _chosen


def one_thread_call(fn: F) -> F:
    """`fn` run inside one_thread(): for the library's calls on small matrices."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_thread():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
