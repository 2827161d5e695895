"""One BLAS thread inside the library's own calls on small matrices, scoped to each call (threadpoolctl):
training and analysis, a small model's forward (hidden size up to 512) and backward. An RNN's matrices are
small, and BLAS threads only fight over the cores (an LSTM trains 2-13x slower with them on 2 cores).
Never a process-wide change: the caller's setting is back when the call returns, and a BLAS thread
variable the user set (OPENBLAS_NUM_THREADS, ...) wins. Standard library and threadpoolctl only.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Any, Callable, Iterator, TypeVar

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


@contextlib.contextmanager
def one_thread(small: bool = True) -> Iterator[None]:
    """Within the block, BLAS runs on one thread when the sizes are `small`; nested blocks cost nothing,
    the outermost a few microseconds (threadpoolctl's setters, called directly)."""
    if not small or getattr(_local, "held", False) or any(v in os.environ for v in VARIABLES) \
            or (os.cpu_count() or 1) == 1:
        yield
        return
    libs = _blas_libs()
    before = [lib.get_num_threads() for lib in libs]
    for lib, n in zip(libs, before):
        if n != 1:
            lib.set_num_threads(1)
    _local.held = True
    try:
        yield
    finally:
        _local.held = False
        for lib, n in zip(libs, before):
            if n != 1:
                lib.set_num_threads(n)


def one_thread_call(fn: F) -> F:
    """`fn` run inside one_thread(): for the library's calls on small matrices."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_thread():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
