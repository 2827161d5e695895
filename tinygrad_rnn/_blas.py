"""One BLAS thread inside the library's own training and analysis calls, scoped to each call (threadpoolctl):
an RNN's matrices are small, and BLAS threads only fight over the cores (an LSTM trains 2-13x slower with
them on 2 cores). Never a process-wide change: the caller's setting is back when the call returns, and a
BLAS thread variable the user set (OPENBLAS_NUM_THREADS, ...) wins. Standard library and threadpoolctl only.
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
_controller: Any = None  # threadpoolctl's view of the loaded BLAS libraries, found once (it takes a moment)


@contextlib.contextmanager
def one_thread(small: bool = True) -> Iterator[None]:
    """Within the block, BLAS runs on one thread when the sizes are `small`; nested blocks cost nothing."""
    global _controller
    if not small or getattr(_local, "held", False) or any(v in os.environ for v in VARIABLES) \
            or (os.cpu_count() or 1) == 1:
        yield
        return
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # an install without it: as fast as the environment says
            _controller = False
        else:
            _controller = ThreadpoolController()
    if _controller is False:
        yield
        return
    _local.held = True
    try:
        with _controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _local.held = False


def one_thread_call(fn: F) -> F:
    """`fn` run inside one_thread(): for the library's calls on small matrices."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_thread():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
