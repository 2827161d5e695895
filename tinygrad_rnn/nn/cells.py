"""The recurrent cells of the Deep Learning book, ch. 10, built from engine ops (one node per equation).

RNNCell: h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)   (book eqs. 10.8-10.9: U = W_xh, W = W_hh, b = b_h;
PyTorch weight_ih = W_xh, weight_hh = W_hh). LSTMCell: gates i, f, g, o stacked in W_x, W_h, b as in
PyTorch's nn.LSTMCell; cell_input="sigmoid" is the book's eq. 10.40-10.44 (its f, g, q, s).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..function import Affine
from ..tensor import Function, SparseGrad, Tensor
from .layers import _matvec
from .module import Module, _check_init, _parameter

__all__ = ["RNNCell", "LSTMCell"]

_CELL_INPUTS = ("tanh", "sigmoid")


class ColumnGather(Function):
    """y = W[:, idx]^T, i.e. W x for one-hot x;  dL/dW[:, idx] += g^T  (repeated idx add up)"""
    __slots__ = ("idx",)

    @staticmethod
    def forward(ctx, W, idx=None):
        ctx.idx = idx
        return W[:, idx].T.copy()  # a copy: the optimizer later updates W in place

    @staticmethod
    def backward(ctx, g):
        # only the gathered columns: added straight into W.grad (as min-char-rnn's dWxh[:, x] += dhraw)
        return (SparseGrad((slice(None), ctx.idx), g.T),)


def _zeros_like_rows(xw: Tensor, size: int, name: str = "h(0)") -> Tensor:
    """The zero state for an input projection xw of shape (H',) or (B, H'), named as the book's initial state."""
    return Tensor(np.zeros(xw.shape[:-1] + (size,), dtype=xw.dtype), name=name)


def _as_state(owner: str, h: Any, xw: Tensor, size: int) -> Tensor:
    """A given state as a Tensor, checked against the batch shape of the input."""
    h = h if isinstance(h, Tensor) else Tensor(np.asarray(h, dtype=xw.dtype))
    want = xw.shape[:-1] + (size,)
    if h.shape != want:
        raise ValueError(f"{owner}: state has shape {h.shape}, expected {want} for this input")
    return h


class RNNCell(Module):
    """h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h): x (D,) or (B, D), h (H,) or (B, H)."""

    def __init__(self, input_size: int, hidden_size: int, *, rng: Optional[np.random.Generator] = None,
                 init: str = "uniform", dtype: type = np.float64) -> None:
        dtype, rng = _check_init("RNNCell", init, dtype, rng)
        self.input_size, self.hidden_size = input_size, hidden_size
        H, D, bound = hidden_size, input_size, 1 / np.sqrt(hidden_size)
        kw = dict(bound=bound, init=init, rng=rng, dtype=dtype)
        self.W_xh = _parameter("W_xh", (H, D), bias=False, **kw)
        self.W_hh = _parameter("W_hh", (H, H), bias=False, **kw)
        self.b_h = _parameter("b_h", (H,), bias=True, **kw)

    def forward(self, x: Tensor, h_prev: Optional[Tensor] = None) -> Tensor:
        """x (D,) or (B, D), h_prev (H,) or (B, H) or None (zeros) -> h (H,) or (B, H)."""
        return self.step(self.project(x), h_prev)

    def project(self, x: Tensor) -> Tensor:
        """W_xh x: (D,) or (B, D) -> (H,) or (B, H)."""
        return _matvec(self.W_xh, x)

    def project_onehot(self, idx: Any) -> Tensor:
        """W_xh x for one-hot x, as a column gather: idx int or (B,) ints -> (H,) or (B, H)."""
        return ColumnGather.apply(self.W_xh, idx=idx)

    def hidden(self, state: Tensor) -> Tensor:
        """The hidden vector h of a state (for an RNN the state itself)."""
        return state

    def step(self, xw: Tensor, h_prev: Optional[Tensor] = None) -> Tensor:
        """h = tanh(xw + W_hh h_prev + b_h) for a projected input xw = W_xh x: (H,) or (B, H)."""
        H = self.hidden_size
        h_prev = _zeros_like_rows(xw, H) if h_prev is None else _as_state("RNNCell", h_prev, xw, H)
        return Affine.apply(h_prev, self.W_hh, self.b_h, xw).tanh()  # a = b + W h + U x, h = tanh(a): eq. 10.8-10.9


class LSTMCell(Module):
    """h, s = LSTM(x, (h_prev, s_prev)) with gates i, f, g, o: x (D,) or (B, D), h and s (H,) or (B, H)."""

    def __init__(self, input_size: int, hidden_size: int, cell_input: str = "tanh", *,
                 rng: Optional[np.random.Generator] = None, init: str = "uniform",
                 dtype: type = np.float64) -> None:
        if cell_input not in _CELL_INPUTS:
            raise ValueError(f"LSTMCell: cell_input must be one of {_CELL_INPUTS}, got {cell_input!r}")
        dtype, rng = _check_init("LSTMCell", init, dtype, rng)
        self.input_size, self.hidden_size, self.cell_input = input_size, hidden_size, cell_input
        H, D, bound = hidden_size, input_size, 1 / np.sqrt(hidden_size)
        kw = dict(bound=bound, init=init, rng=rng, dtype=dtype)
        self.W_x = _parameter("W_x", (4 * H, D), bias=False, **kw)
        self.W_h = _parameter("W_h", (4 * H, H), bias=False, **kw)
        self.b = _parameter("b", (4 * H,), bias=True, **kw)

    def forward(self, x: Tensor, state: Optional[tuple] = None) -> tuple[Tensor, Tensor]:
        """x (D,) or (B, D), state (h_prev, s_prev) or None (zeros) -> (h, s), each (H,) or (B, H)."""
        return self.step(self.project(x), state)

    def project(self, x: Tensor) -> Tensor:
        """W_x x: (D,) or (B, D) -> (4H,) or (B, 4H)."""
        return _matvec(self.W_x, x)

    def project_onehot(self, idx: Any) -> Tensor:
        """W_x x for one-hot x, as a column gather: idx int or (B,) ints -> (4H,) or (B, 4H)."""
        return ColumnGather.apply(self.W_x, idx=idx)

    def hidden(self, state: tuple) -> Tensor:
        """The hidden vector h of a state (h, s)."""
        return state[0]

    def step(self, xw: Tensor, state: Optional[tuple] = None) -> tuple[Tensor, Tensor]:
        """One step from a projected input xw = W_x x (4H,) or (B, 4H) -> (h, s)."""
        H = self.hidden_size
        if state is None:
            h_prev, s_prev = _zeros_like_rows(xw, H), _zeros_like_rows(xw, H, "s(0)")
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError(f"LSTMCell: state must be a pair (h, s) or None, got {type(state).__name__}")
            h_prev, s_prev = (_as_state("LSTMCell", v, xw, H) for v in state)
        z = Affine.apply(h_prev, self.W_h, self.b, xw)  # all four gates' pre-activations: (..., 4H)
        i = z[..., 0 * H:1 * H].sigmoid()             # input gate        (book: g, eq. 10.42)
        f = z[..., 1 * H:2 * H].sigmoid()             # forget gate       (book: f, eq. 10.40)
        g = z[..., 2 * H:3 * H]                       # cell candidate    (book: the sigma in eq. 10.41)
        g = g.tanh() if self.cell_input == "tanh" else g.sigmoid()
        o = z[..., 3 * H:4 * H].sigmoid()             # output gate       (book: q, eq. 10.44)
        i.name, f.name, g.name, o.name = "i", "f", "g", "o"  # pictures add the step: f(2) = Sigmoid
        s = f * s_prev + i * g                        # internal state    (eq. 10.41)
        h = o * s.tanh()                              # output            (eq. 10.43)
        return h, s
