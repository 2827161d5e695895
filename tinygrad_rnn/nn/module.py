"""The Module base: named parameters found by walking attributes, state dicts, initialisation.

Follows PyTorch's nn.Module in miniature: parameters are leaf Tensors with requires_grad=True held
as attributes; submodules nest their names with "." ("cell.W_xh"), in definition order.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Union

import numpy as np

from .. import _blas, _memory
from ..tensor import Tensor

__all__ = ["Module"]

_INITS = ("uniform", "normal")


Params = Union[Iterable[Tensor], dict]  # a list of tensors or a named_parameters() dict


def _param_list(params: Params) -> list:
    """The tensors of a list or of a named_parameters() dict."""
    return list(params.values()) if isinstance(params, dict) else list(params)


class Module:
    """Base of Linear, RNNCell, LSTMCell and CharRNN; calling a module runs its forward."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _blas.held():  # a module called by another (a cell, a layer): the outermost chose BLAS's threads
            return self.forward(*args, **kwargs)
        with _blas.one_thread(getattr(self, "hidden_size", 0) <= _blas.SMALL_HIDDEN):  # small: one (see _blas)
            return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def named_parameters(self) -> dict[str, Tensor]:
        """name -> parameter, submodules' names prefixed ("cell.W_xh"), in definition order."""
        params: dict[str, Tensor] = {}
        for attr, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                params[attr] = value
            elif isinstance(value, Module):
                for name, p in value.named_parameters().items():
                    params[f"{attr}.{name}"] = p
        return params

    def parameters(self) -> list[Tensor]:
        """The parameters as a list, in the order of named_parameters()."""
        return list(self.named_parameters().values())

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (.grad = None, as PyTorch does by default)."""
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """name -> a copy of the parameter's array."""
        return {name: p.data.copy() for name, p in self.named_parameters().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy arrays into the parameters in place, after checking every name, shape and dtype.

        Floating-point arrays of another precision are cast, as PyTorch's load_state_dict does
        (so float32 weights exported from PyTorch load into a float64 model); others are refused.
        """
        params = self.named_parameters()
        problems = [f"{name} (missing)" for name in params if name not in state]
        problems += [f"{name} (unexpected)" for name in state if name not in params]
        arrays = {}
        for name, p in params.items():
            if name not in state:
                continue
            arrays[name] = value = np.asarray(state[name])
            if value.shape != p.shape:
                problems.append(f"{name} (shape {value.shape}, expected {p.shape})")
            elif not np.issubdtype(value.dtype, np.floating):
                problems.append(f"{name} (dtype {value.dtype}, expected floating point like {p.dtype})")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: bad entries: {', '.join(problems)}")
        for name, p in params.items():
            p.data[...] = arrays[name]  # in place: optimizers keep holding the same tensors
            p._bump_version()


def _check_init(owner: str, init: str, dtype: Any, rng: Optional[np.random.Generator],
                **sizes: Any) -> tuple[np.dtype, np.random.Generator]:
    """Validate a constructor's init, dtype and sizes (positive ints); rng=None means a fresh unseeded generator."""
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"{owner}: {name} must be a positive integer, got {size!r}")
        if size < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {size}")
        if size >= 2 ** 63:  # before any arithmetic on it: NumPy's would fail with a message about sqrt
            raise MemoryError(f"{owner}: {name} {size} is larger than any array can be")
    if init not in _INITS:
        raise ValueError(f"{owner}: init must be one of {_INITS}, got {init!r}")
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{owner}: dtype must be a floating-point type, got {dtype}")
    return dtype, (np.random.default_rng() if rng is None else rng)


def _parameter(name: str, shape: tuple, *, bound: float, init: str, bias: bool,
               rng: np.random.Generator, dtype: np.dtype) -> Tensor:
    """U(-bound, bound) as PyTorch, or min-char-rnn's 0.01 * N(0, 1) weights with zero biases."""
    _memory.check(f"{name} of shape {shape}", 3 * dtype.itemsize * math.prod(shape))  # made, cast, copied
    if init == "uniform":
        data = rng.uniform(-bound, bound, shape)
    elif bias:
        data = np.zeros(shape)
    else:
        data = 0.01 * rng.standard_normal(shape)
    return Tensor(data.astype(dtype), requires_grad=True, name=name)
