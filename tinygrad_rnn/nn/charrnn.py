"""CharRNN: one-hot characters -> a recurrent cell -> logits, unrolled over a sequence (min-char-rnn's model).

Book notation (ch. 10): o_t = c + V h_t with V = out.W, c = out.b. For the built-in cells (rnn, lstm, gru)
the one-hot input is a column gather of the cell's input weight; a user-written cell (the recurrent cell
protocol: a Module with hidden_size, forward(x, state) -> state, and hidden(state) -> h when the state
is not h itself) gets one-hot rows. Each step's ops are created under tr.scope("t=<step>").
fused=True runs each step as one node (nn/fused.py) and the output layer once over all steps.
learn_h0=True makes the initial state h(0) (and s(0) of an LSTM) parameters "h0" ("s0"), part of θ.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from ..engine import scope
from ..tensor import Tensor, concat, stack
from .cells import GRUCell, LSTMCell, RNNCell
from .fused import GRUStep, LSTMStep, RNNStep, StackRows, _WeightSums
from .layers import Linear
from .module import Module, _check_init

__all__ = ["CharRNN", "detach_state"]

_CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
_OPTIONS = {"rnn": (), "lstm": ("cell_input",), "gru": ()}  # the keyword options each built-in cell takes
_FUSED = {RNNCell: RNNStep, LSTMCell: LSTMStep, GRUCell: GRUStep}  # a built-in cell's one-node step
State = Union[Tensor, tuple, None]


class CharRNN(Module):
    """Character-level language model: idx (T,) or (T, B) ints -> logits (T, V) or (T, B, V), state."""

    def __init__(self, vocab_size: int, hidden_size: int, cell: Union[str, Module] = "rnn", *, fused: bool = False,
                 rng: Optional[np.random.Generator] = None, init: str = "uniform",
                 dtype: type = np.float64, learn_h0: bool = False, **cell_kw: Any) -> None:
        dtype, rng = _check_init("CharRNN", init, dtype, rng, vocab_size=vocab_size, hidden_size=hidden_size)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        if isinstance(cell, str):
            if cell not in _CELLS:
                raise ValueError(f"CharRNN: cell must be one of {tuple(_CELLS)} or a cell object, got {cell!r}")
            unknown = [k for k in cell_kw if k not in _OPTIONS[cell]]
            if unknown:  # as the CLI: --cell-input applies to the LSTM only
                raise TypeError(f"CharRNN: cell {cell!r} takes no option {', '.join(unknown)}"
                                + (" (cell_input is the LSTM's: cell='lstm')" if "cell_input" in unknown else ""))
            self.cell_type = cell
            self.cell = _CELLS[cell](vocab_size, hidden_size, rng=rng, init=init, dtype=dtype, **cell_kw)
        else:
            _check_cell(cell, vocab_size, hidden_size, cell_kw)
            # a built-in cell passed as an object keeps its name and its column gather
            self.cell_type = next((k for k, c in _CELLS.items() if type(cell) is c), type(cell).__name__)
            self.cell = cell
        self.out = Linear(hidden_size, vocab_size, rng=rng, init=init, dtype=dtype)
        if fused and type(self.cell) not in _FUSED:
            raise ValueError(f"CharRNN: fused=True needs a built-in cell ('rnn', 'lstm' or 'gru'), "
                             f"not a user-written {type(self.cell).__name__}")
        self.fused = bool(fused)
        self.learn_h0 = learn_h0
        if learn_h0 and self.cell_type not in _CELLS:
            raise ValueError(f"CharRNN: learn_h0 needs a built-in cell ('rnn', 'lstm' or 'gru'), "
                             f"not a user-written {type(self.cell).__name__}")
        if learn_h0:  # start at zeros, so an untrained h(0) is the usual zero state
            self.h0 = Tensor(np.zeros(hidden_size, dtype), requires_grad=True, name="h0")
            if isinstance(self.cell, LSTMCell):
                self.s0 = Tensor(np.zeros(hidden_size, dtype), requires_grad=True, name="s0")

    def forward(self, idx: Any, state: State = None) -> tuple[Tensor, State]:
        """idx (T,) or (T, B) ints, state h or (h, s) or None -> logits (T, [B,] V), last state."""
        if self.fused:
            idx = self._check_idx(idx)
            logits, states = self._unroll_fused(idx, self._start(idx, state))
        else:
            logits, states = self.unroll(idx, state)
        return logits, states[-1]

    def unroll(self, idx: Any, state: State = None) -> tuple[Tensor, list]:
        """As forward, but returns the state after every step: logits (T, [B,] V), [state_0 … state_{T-1}].

        The states are the graph's own tensors, so analysis and pictures can read ∂L/∂h_t from them.
        A fused RNN's or GRU's h_t are its step nodes' outputs; a fused LSTM carries z_t = [h_t; s_t] between its
        steps, where no h_t tensor lies on the path, so its unroll runs the op-level steps (same values).
        """
        idx = self._check_idx(idx)
        state = self._start(idx, state)
        if self.fused and not isinstance(self.cell, LSTMCell):
            return self._unroll_fused(idx, state)
        builtin = self.cell_type in _CELLS
        if not builtin:  # one-hot rows x_t: (T, V) or (T, B, V), in the model's dtype
            onehot = np.eye(self.vocab_size, dtype=self.out.W.dtype)[idx]
        logits, states = [], []
        for t in range(len(idx)):
            with scope(f"t={t}"):  # the whole step, output included, as in the book's unrolled graph
                if builtin:
                    state = self.cell.step(self.cell.project_onehot(idx[t]), state)
                    h = self.cell.hidden(state)
                else:
                    state = self.cell(Tensor(onehot[t]), state)
                    h = self._user_hidden(state, idx.shape[1:])
                logits.append(self.out(h))  # o_t = c + V h_t
            _name_step(h, state, logits[-1], t + 1)
            states.append(state)
        return stack(logits), states

    def initial_state(self, batch: tuple = ()) -> State:
        """The learned h(0) (LSTM: (h(0), s(0))) for a batch shape () or (B,); None without learn_h0."""
        if not self.learn_h0:
            return None
        zeros = Tensor(np.zeros(tuple(batch) + (self.hidden_size,), self.h0.dtype))
        with scope("t=0"):  # the broadcast feeds the first step: drawn and counted with it
            h0 = self.h0 + zeros if batch else self.h0   # one h(0) for every row: its gradient sums over them
            s0 = (self.s0 + zeros if batch else self.s0) if hasattr(self, "s0") else None
        return h0 if s0 is None else (h0, s0)

    def _start(self, idx: np.ndarray, state: State) -> State:
        """The state a sequence starts from: the given one, else the learned h(0), else None (zeros)."""
        return self.initial_state(idx.shape[1:]) if state is None and self.learn_h0 else state

    def hidden(self, state: State) -> Tensor:
        """The hidden vector h of a state of this model's cell: cell.hidden(state), or the state itself."""
        hidden = getattr(self.cell, "hidden", None)
        return state if hidden is None else hidden(state)

    def _user_hidden(self, state: Any, batch: tuple) -> Tensor:
        """h of a user cell's new state, checked: a Tensor of shape (H,) or (B, H)."""
        name, H = type(self.cell).__name__, self.hidden_size
        h = self.hidden(state)
        if not isinstance(h, Tensor):
            fix = "" if hasattr(self.cell, "hidden") else "; give the cell a hidden(state) method that returns h"
            raise ValueError(f"CharRNN: cell {name} returned a state whose hidden vector is a "
                             f"{type(h).__name__}, not a Tensor{fix}")
        if h.shape != batch + (H,):
            raise ValueError(f"CharRNN: cell {name} returned a hidden state of shape {h.shape}, expected "
                             f"{batch + (H,)} (hidden_size {H}" + (f", batch {batch[0]})" if batch else ")"))
        return h

    def _unroll_fused(self, idx: np.ndarray, state: State) -> tuple[Tensor, list]:
        """One node per step (RNNStep, LSTMStep, GRUStep), then the output layer once on the stacked h_t;
        every state for an RNN or GRU, only the last for an LSTM."""
        cell, H = self.cell, self.hidden_size
        step = _FUSED[type(cell)]
        if isinstance(cell, LSTMCell):
            params, kw = (cell.W_x, cell.W_h, cell.b), {"cell_input": cell.cell_input}
            z = self._fused_lstm_state(idx, state)
        else:
            params = (cell.W_x, cell.W_h, cell.b_x, cell.b_h) if isinstance(cell, GRUCell) else \
                (cell.W_xh, cell.W_hh, cell.b_h)
            kw, z = {}, self._state_tensor(type(cell).__name__, state, idx.shape[1:] + (H,))
        kw["W_hT"] = np.ascontiguousarray(params[1].data.T)  # W_h^T row-major, once: see fused._fast
        rows = np.empty((len(idx),) + z.shape, dtype=self.out.W.dtype)  # (T, [B,] H) or (T, [B,] 2H): [h; s]
        ids = idx.tolist() if idx.ndim == 1 else idx  # Python ints index fastest
        zs, T = [], len(idx)
        # a batch's input and recurrent weight gradients: summed over the sequence by the steps (the GRU's per step)
        sums = None if idx.ndim == 1 or isinstance(cell, GRUCell) else _WeightSums(idx, self.vocab_size)
        for t in range(T):
            # the last state outlives the sequence (it starts the next chunk): an array of its own
            row = rows[t] if t < T - 1 else np.empty_like(rows[t])
            if sums is not None:
                kw["sums"], kw["t"] = sums, t
            with scope(f"t={t}"):
                z = step.apply(*params, z, idx=ids[t], out=row, **kw)
            z.name = f"[h; s]({t + 1})" if isinstance(cell, LSTMCell) else f"h({t + 1})"
            zs.append(z)
        if isinstance(cell, LSTMCell):  # h_t, the first H columns of z_t: no slice node, whose gradient is dense
            hs = StackRows.apply(*zs, out=rows, cols=H)
            zs = [(zs[-1][..., :H], zs[-1][..., H:])]  # the last state only: see unroll
        else:
            hs = StackRows.apply(*zs, out=rows)  # the steps wrote their rows in place: no copy but the last
        return self.out(hs), zs                 # o_t = c + V h_t for every t: one matrix product

    def _fused_lstm_state(self, idx: np.ndarray, state: State) -> Tensor:
        """A fused LSTM's first z = [h; s]: (…, 2H) zeros for None, else the given (h, s) joined."""
        H, rows = self.hidden_size, idx.shape[1:]
        if state is None:
            return self._state_tensor("LSTMCell", None, rows + (2 * H,))
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"LSTMCell: state must be a pair (h, s) or None, got {type(state).__name__}")
        h, s = (self._state_tensor("LSTMCell", v, rows + (H,)) for v in state)
        return concat([h, s], axis=-1)  # an op even when neither requires grad: under jvp their tangents ride on

    def _state_tensor(self, owner: str, v: Any, shape: tuple) -> Tensor:
        """A given state as a Tensor of the shape this input needs; None is zeros."""
        if v is None:  # the book's initial state, named for the pictures
            name = "h(0)" if shape[-1] == self.hidden_size else "[h; s](0)"
            return Tensor(np.zeros(shape, dtype=self.out.W.dtype), name=name)
        v = v if isinstance(v, Tensor) else Tensor(np.asarray(v, dtype=self.out.W.dtype))
        if v.shape != shape:
            raise ValueError(f"{owner}: state has shape {v.shape}, expected {shape} for this input")
        return v

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


def _check_cell(cell: Any, vocab_size: int, hidden_size: int, cell_kw: dict) -> None:
    """A cell object must follow the recurrent cell protocol and fit the model's sizes."""
    name = type(cell).__name__
    if not isinstance(cell, Module):
        raise TypeError(f"CharRNN: cell must be 'rnn', 'lstm', 'gru' or an nn.Module cell, got a {name} "
                        "(a Module's parameters are found and trained through it)")
    if not callable(getattr(cell, "forward", None)) or type(cell).forward is Module.forward:
        raise TypeError(f"CharRNN: cell {name} has no forward(x, state) method")
    size = getattr(cell, "hidden_size", None)
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise TypeError(f"CharRNN: cell {name} needs an int attribute hidden_size, got {size!r}")
    if size != hidden_size:
        raise ValueError(f"CharRNN: hidden_size {hidden_size} differs from the cell's hidden_size {size}")
    inputs = getattr(cell, "input_size", vocab_size)
    if inputs != vocab_size:
        raise ValueError(f"CharRNN: the cell's input_size {inputs} differs from vocab_size {vocab_size} "
                         "(it reads one-hot characters)")
    if cell_kw:
        raise TypeError(f"CharRNN: options {', '.join(cell_kw)} are for a cell CharRNN builds; "
                        f"give them to {name}'s constructor instead")


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
