"""The neural trigram language model of the Oxford lecture notes, built from two nn.Linear layers.

    h = act(V [x(w1); x(w2)] + c),   p(w3 | w1, w2) = softmax(W h + b)
with x(w) the one-hot vector of w. Names: V = hidden.W, c = hidden.b, W = out.W, b = out.b.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..tensor import Tensor
from ..function import Affine
from .layers import Linear
from .module import Module, _check_init

__all__ = ["NeuralTrigram"]

_ACTS = ("tanh", "sigmoid", "relu")


class NeuralTrigram(Module):
    """Logits for the next symbol from the two before it: w1, w2 ints (N,) -> logits (N, vocab_size)."""

    def __init__(self, vocab_size: int, hidden_size: int, act: str = "tanh", *,
                 rng: Optional[np.random.Generator] = None, init: str = "uniform",
                 dtype: type = np.float64) -> None:
        if act not in _ACTS:
            raise ValueError(f"NeuralTrigram: act must be one of {_ACTS}, got {act!r}")
        dtype, rng = _check_init("NeuralTrigram", init, dtype, rng, vocab_size=vocab_size, hidden_size=hidden_size)
        self.vocab_size, self.hidden_size, self.act = vocab_size, hidden_size, act
        self.hidden = Linear(2 * vocab_size, hidden_size, rng=rng, init=init, dtype=dtype)  # V, c
        self.out = Linear(hidden_size, vocab_size, rng=rng, init=init, dtype=dtype)         # W, b

    def inputs(self, w1: Any, w2: Any) -> Tensor:
        """The concatenated one-hot vectors [x(w1); x(w2)]: (N, 2 vocab_size), a constant."""
        V = self.vocab_size
        w1, w2 = (self._check_ids(w, name) for w, name in ((w1, "w1"), (w2, "w2")))
        if w1.shape != w2.shape:
            raise ValueError(f"NeuralTrigram: w1 of shape {w1.shape} and w2 of shape {w2.shape} differ")
        x = np.zeros((w1.size, 2 * V), dtype=self.out.W.dtype)
        rows = np.arange(w1.size)
        x[rows, w1], x[rows, V + w2] = 1.0, 1.0
        return Tensor(x)

    def forward(self, w1: Any, w2: Any) -> Tensor:
        """w1, w2 ints (N,) -> logits (N, vocab_size); softmax of a row is p(w3 | w1, w2).

        V [x(w1); x(w2)] + c is computed as V_1 x(w1) + V_2 x(w2) + c with V = [V_1 V_2] (V_1 the first
        vocab_size columns), the same numbers, so that a picture of the graph shows the two inputs apart."""
        V = self.vocab_size
        x = self.inputs(w1, w2).data
        x1, x2 = Tensor(x[:, :V], name="x(w1)"), Tensor(x[:, V:], name="x(w2)")
        W, c = self.hidden.W, self.hidden.b
        a = Affine.apply(x1, W[:, :V], c) + x2 @ W[:, V:].T         # V [x(w1); x(w2)] + c: (N, H)
        h = {"tanh": a.tanh, "sigmoid": a.sigmoid, "relu": a.relu}[self.act]()
        logits = self.out(h)                                        # W h + b: (N, vocab_size)
        a.name, h.name, logits.name = "V[x(w1); x(w2)] + c", "h", "W h + b"  # the lecture notes' names
        return logits

    def _check_ids(self, w: Any, name: str) -> np.ndarray:
        w = np.atleast_1d(np.asarray(w.data if isinstance(w, Tensor) else w))
        if not np.issubdtype(w.dtype, np.integer) or w.ndim != 1:
            raise ValueError(f"NeuralTrigram: {name} must be a 1-D int array, got {w.dtype} of shape {w.shape}")
        if w.size == 0 or w.min() < 0 or w.max() >= self.vocab_size:
            raise ValueError(f"NeuralTrigram: {name} must be non-empty ids in [0, {self.vocab_size})")
        return w
