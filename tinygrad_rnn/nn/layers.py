"""Linear, the affine map y = W x + b of the Deep Learning book's math, with W of shape (out, in).

Same layout and initialisation as PyTorch's nn.Linear (weight = W, bias = b).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..function import Affine
from ..tensor import Tensor
from .module import Module, _check_init, _parameter

__all__ = ["Linear"]


def _matvec(W: Tensor, x: Tensor) -> Tensor:
    """W x for x (D,); x W^T for rows of x (..., D). W is (H, D)."""
    if x.ndim == 1:
        return W @ x  # the column-vector form of the book and min-char-rnn: one MatMul node, no transpose
    return x @ W.T


class Linear(Module):
    """y = W x + b: x (in,) or (..., in) -> y (out,) or (..., out)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rng: Optional[np.random.Generator] = None, init: str = "uniform",
                 dtype: type = np.float64) -> None:
        dtype, rng = _check_init("Linear", init, dtype, rng, in_features=in_features,
                                 out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / np.sqrt(in_features)
        self.W = _parameter("W", (out_features, in_features), bound=bound, init=init, bias=False,
                            rng=rng, dtype=dtype)
        self.b = _parameter("b", (out_features,), bound=bound, init=init, bias=True,
                            rng=rng, dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """x (in,) or (..., in) -> (out,) or (..., out)."""
        return _matvec(self.W, x) if self.b is None else Affine.apply(x, self.W, self.b)  # one node: y = W x + b
