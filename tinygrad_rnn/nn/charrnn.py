"""CharRNN: one-hot characters -> RNN or LSTM cell -> logits, unrolled over a sequence (min-char-rnn's model).

Book notation (ch. 10): o_t = c + V h_t with V = out.W, c = out.b. The one-hot input is a column
gather of the cell's input weight; each step's ops are created under tr.scope("t=<step>").
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from ..function import stack
from ..tensor import Tensor, scope
from .cells import LSTMCell, RNNCell
from .layers import Linear
from .module import Module, _check_init

__all__ = ["CharRNN", "detach_state"]

_CELLS = {"rnn": RNNCell, "lstm": LSTMCell}
State = Union[Tensor, tuple, None]


class CharRNN(Module):
    """Character-level language model: idx (T,) or (T, B) ints -> logits (T, V) or (T, B, V), state."""

    def __init__(self, vocab_size: int, hidden_size: int, cell: str = "rnn", *,
                 rng: Optional[np.random.Generator] = None, init: str = "uniform",
                 dtype: type = np.float64, **cell_kw: Any) -> None:
        if cell not in _CELLS:
            raise ValueError(f"CharRNN: cell must be one of {tuple(_CELLS)}, got {cell!r}")
        dtype, rng = _check_init("CharRNN", init, dtype, rng)
        self.vocab_size, self.hidden_size, self.cell_type = vocab_size, hidden_size, cell
        self.cell = _CELLS[cell](vocab_size, hidden_size, rng=rng, init=init, dtype=dtype, **cell_kw)
        self.out = Linear(hidden_size, vocab_size, rng=rng, init=init, dtype=dtype)

    def forward(self, idx: Any, state: State = None) -> tuple[Tensor, State]:
        """idx (T,) or (T, B) ints, state h or (h, s) or None -> logits (T, [B,] V), last state."""
        logits, states = self.unroll(idx, state)
        return logits, states[-1]

    def unroll(self, idx: Any, state: State = None) -> tuple[Tensor, list]:
        """As forward, but returns the state after every step: logits (T, [B,] V), [state_0 … state_{T-1}].

        The states are the graph's own tensors, so analysis and pictures can read ∂L/∂h_t from them.
        """
        idx = self._check_idx(idx)
        logits, states = [], []
        for t in range(len(idx)):
            with scope(f"t={t}"):  # the whole step, output included, as in the book's unrolled graph
                state = self.cell.step(self.cell.project_onehot(idx[t]), state)
                h = self.cell.hidden(state)
                logits.append(self.out(h))  # o_t = c + V h_t
            _name_step(h, state, logits[-1], t + 1)
            states.append(state)
        return stack(logits), states

    def _check_idx(self, idx: Any) -> np.ndarray:
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"CharRNN: idx must hold integers, got dtype {idx.dtype}")
        if idx.ndim not in (1, 2) or idx.shape[0] == 0:
            raise ValueError(f"CharRNN: idx must have shape (T,) or (T, B) with T >= 1, got {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.vocab_size):
            raise ValueError(f"CharRNN: idx must lie in [0, {self.vocab_size}), "
                             f"got values from {idx.min()} to {idx.max()}")
        return idx


def _name_step(h: Tensor, state: State, o: Tensor, t: int) -> None:
    """Name a step's tensors as the book does, h(t), s(t), o(t) with t = 1 … T and h(0) the initial state,
    so pictures and error messages read `h(2) = Tanh`."""
    h.name, o.name = f"h({t})", f"o({t})"
    if isinstance(state, tuple) and len(state) == 2 and state[0] is h and isinstance(state[1], Tensor):
        state[1].name = f"s({t})"  # the LSTM's internal state


def detach_state(state: State) -> State:
    """Cut the graph behind a state (h, (h, s) or None) between truncated-BPTT chunks."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)
