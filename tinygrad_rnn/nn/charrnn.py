"""CharRNN: one-hot characters -> a recurrent cell -> logits, unrolled over a sequence (min-char-rnn's model).

Book notation (ch. 10): o_t = c + V h_t with V = out.W, c = out.b. For the built-in cells (rnn, lstm, gru)
the one-hot input is a column gather of the cell's input weight; a user-written cell (the recurrent cell
protocol: a Module with hidden_size, forward(x, state) -> state, and hidden(state) -> h when the state
is not h itself) gets one-hot rows. Each step's ops are created under tr.scope("t=<step>").
fused=True runs each step as one node (nn/fused.py) and the output layer once over all steps.
learn_h0=True makes the initial state h(0) (and s(0) of an LSTM) parameters "h0" ("s0"), part of θ.
num_layers=L stacks L built-in cells as torch.nn.RNN(num_layers=L) does: layer l reads layer l-1's h_t.
checkpoint=k|"sqrt"|MemoryBudget(slots=m) keeps only some states and recomputes the steps between them in
backward (Chen et al. 2016 every k steps, tr.checkpoint per segment; Gruslys et al. 2016 for a budget, nn/memory.py).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..engine import _state, checkpoint as _checkpoint, scope
from ..tensor import Tensor, concat, stack
from .cells import GRUCell, LSTMCell, RNNCell
from .fused import GRUStep, LSTMStep, RNNStep, StackRows, _WeightSums
from .layers import Linear
from .losses import cross_entropy
from .memory import MemoryBudget, _Schedule
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
                 dtype: type = np.float64, learn_h0: bool = False, checkpoint: Any = None, num_layers: int = 1,
                 **cell_kw: Any) -> None:
        dtype, rng = _check_init("CharRNN", init, dtype, rng, vocab_size=vocab_size, hidden_size=hidden_size)
        self.checkpoint = _check_checkpoint(checkpoint)
        if not isinstance(num_layers, (int, np.integer)) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"CharRNN: num_layers must be a positive integer, got {num_layers!r}")
        if num_layers > 1 and (not isinstance(cell, str) or fused or learn_h0 or checkpoint is not None):
            raise ValueError("CharRNN: num_layers > 1 stacks the built-in cells ('rnn', 'lstm', 'gru') at op level: "
                             "not with a cell object, fused=True, learn_h0=True or checkpoint=")
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, int(num_layers)
        if isinstance(cell, str):
            if cell not in _CELLS:
                raise ValueError(f"CharRNN: cell must be one of {tuple(_CELLS)} or a cell object, got {cell!r}")
            unknown = [k for k in cell_kw if k not in _OPTIONS[cell]]
            if unknown:  # as the CLI: --cell-input applies to the LSTM only
                raise TypeError(f"CharRNN: cell {cell!r} takes no option {', '.join(unknown)}"
                                + (" (cell_input is the LSTM's: cell='lstm')" if "cell_input" in unknown else ""))
            self.cell_type = cell
            cells = [_CELLS[cell](vocab_size if layer == 0 else hidden_size, hidden_size, rng=rng, init=init,
                                  dtype=dtype, **cell_kw) for layer in range(num_layers)]
            self.cell = cells[0] if num_layers == 1 else _Layers(cells)
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
        if self.checkpoint is not None and _state.grad_enabled and _state.forward is None:
            return self._recompute(idx, state, None)
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
        return self._unroll_ops(idx, state)

    def loss(self, idx: Any, targets: Any, state: State = None, reduction: str = "sum") -> tuple[Tensor, State]:
        """(cross-entropy of the logits model(idx, state) gives against targets, last state); when checkpointing,
        summed inside the recomputed segments, so the (T, [B,] V) logits are never all kept."""
        idx = self._check_idx(idx)
        targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
        if targets.shape != idx.shape or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"CharRNN.loss: targets must be integers of idx's shape {idx.shape}, "
                             f"got {targets.dtype} {targets.shape}")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"CharRNN.loss: reduction must be 'sum' or 'mean', got {reduction!r}")
        if self.checkpoint is None or not _state.grad_enabled or _state.forward is not None:
            logits, state = self(idx, state)
            return cross_entropy(logits, targets, reduction=reduction), state
        loss, state = self._recompute(idx, state, targets)
        return (loss if reduction == "sum" else loss / idx.size), state

    def _recompute(self, idx: Any, state: State, targets: Optional[np.ndarray]) -> tuple[Tensor, State]:
        """forward (targets None: the logits) or the summed loss, keeping only the states the checkpoint setting
        stores; each segment's steps run again in backward."""
        idx = self._check_idx(idx)
        first, tree0 = _flatten(self._start(idx, state))
        trees = {}  # the tree of the states the steps make, from the first run

        def run(a: int, b: int, parts: Sequence, out: bool = True) -> list:
            """steps a … b-1 from a flat state -> [*flat state, their logits or loss (None if not out)]"""
            parts = [p if isinstance(p, Tensor) else Tensor(p) for p in parts]
            start = _unflatten(parts, tree0 if a == 0 else trees["step"])
            unroll = self._unroll_fused if self.fused else self._unroll_ops
            logits, states = unroll(idx[a:b], start, t0=a, logits=out)
            flat, trees["step"] = _flatten(states[-1])
            if out and targets is not None:
                logits = cross_entropy(logits, targets[a:b], reduction="sum")
            return [*flat, logits]

        T = len(idx)
        if isinstance(self.checkpoint, MemoryBudget):
            params = self.parameters()
            node = _Schedule.apply(*first, *params, run=run, T=T, m=self.checkpoint.slots, n_state=len(first),
                                   loss=targets is not None)
            pieces, start = [], 0
            for shape in node._ctx.layout:  # the outputs, then the last state, as one flat array: split it
                size = int(np.prod(shape))
                pieces.append(node[start:start + size].reshape(shape))
                start += size
            out, last = pieces[0], pieces[1:]
        else:
            k = math.ceil(math.sqrt(T)) if self.checkpoint == "sqrt" else self.checkpoint
            outs, last = [], first
            for a in range(0, T, k):  # one tr.checkpoint per segment: its input state and outputs are kept
                *last, o = _checkpoint(lambda *p, a=a: tuple(run(a, min(a + k, T), p)), *last)
                outs.append(o)
            out = (concat(outs) if len(outs) > 1 else outs[0]) if targets is None else _total(outs)
        return out, _unflatten(list(last), trees["step"])

    def _unroll_ops(self, idx: np.ndarray, state: State, t0: int = 0, logits: bool = True) -> tuple[Tensor, list]:
        """The op-level steps t0 … t0+len(idx)-1: logits (None if not logits), [state after each step]."""
        want = logits
        builtin = self.cell_type in _CELLS
        if not builtin:  # one-hot rows x_t: (T, V) or (T, B, V), in the model's dtype
            onehot = np.eye(self.vocab_size, dtype=self.out.W.dtype)[idx]
        logits, states = [], []
        for t in range(len(idx)):
            with scope(f"t={t0 + t}"):  # the whole step, output included, as in the book's unrolled graph
                if builtin:
                    state = self.cell.step(self.cell.project_onehot(idx[t]), state)
                    h = self.cell.hidden(state)
                else:
                    state = self.cell(Tensor(onehot[t]), state)
                    h = self._user_hidden(state, idx.shape[1:])
                if want:
                    logits.append(self.out(h))  # o_t = c + V h_t
                    _name_step(h, state, logits[-1], t0 + t + 1)
            states.append(state)
        return (stack(logits) if want else None), states

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

    def _unroll_fused(self, idx: np.ndarray, state: State, t0: int = 0, logits: bool = True) -> tuple[Tensor, list]:
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
        # the weights' and bias's gradients: summed over the sequence by the steps (the GRU's per step)
        sums = None if isinstance(cell, GRUCell) else _WeightSums(idx, self.vocab_size)
        if sums is not None:
            kw["sums"] = sums
        for t in range(T):
            # the last state outlives the sequence (it starts the next chunk): an array of its own
            row = rows[t] if t < T - 1 else np.empty_like(rows[t])
            with scope(f"t={t0 + t}"):
                z = step.apply(*params, z, idx=ids[t], out=row, **kw)
            z.name = f"[h; s]({t0 + t + 1})" if isinstance(cell, LSTMCell) else f"h({t0 + t + 1})"
            zs.append(z)
        if sums is not None:
            sums.number(zs)
        if isinstance(cell, LSTMCell):  # h_t, the first H columns of z_t: no slice node, whose gradient is dense
            hs = StackRows.apply(*zs, out=rows, cols=H)
            zs = [(zs[-1][..., :H], zs[-1][..., H:])]  # the last state only: see unroll
        else:
            hs = StackRows.apply(*zs, out=rows)  # the steps wrote their rows in place: no copy but the last
        return (self.out(hs) if logits else None), zs  # o_t = c + V h_t for every t: one matrix product

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


class _Layers(Module):
    """Cells stacked as torch.nn.RNN(num_layers=L): layer 0 reads x_t, layer l reads layer l-1's h_t, and the
    model reads the top layer's h_t. The state is a tuple of the layers' states, bottom first (torch's h_n
    rows). Parameters are named layer0.W_xh, layer1.W_xh, ... (torch's weight_ih_l0, weight_ih_l1, ...)."""

    def __init__(self, cells: list) -> None:
        self.num_layers, self.hidden_size, self.input_size = len(cells), cells[0].hidden_size, cells[0].input_size
        for layer, cell in enumerate(cells):
            setattr(self, f"layer{layer}", cell)

    def layers(self) -> list:
        return [getattr(self, f"layer{layer}") for layer in range(self.num_layers)]

    def forward(self, x: Tensor, state: Any = None) -> tuple:
        """x (D,) or (B, D), state a tuple of L layer states or None -> the L new states."""
        return self.step(self.layer0.project(x), state)

    def project_onehot(self, idx: Any) -> Tensor:
        return self.layer0.project_onehot(idx)

    def step(self, xw: Tensor, state: Any = None) -> tuple:
        """One step from layer 0's projected input xw = W_x x: each layer's new state, bottom first."""
        if state is None:
            state = (None,) * self.num_layers
        if not isinstance(state, (tuple, list)) or len(state) != self.num_layers:
            raise ValueError(f"CharRNN: a {self.num_layers}-layer state is a tuple of {self.num_layers} layer states, "
                             f"got {type(state).__name__}")
        new, below = [], None
        for layer, (cell, s) in enumerate(zip(self.layers(), state)):
            s = cell.step(xw, s) if layer == 0 else cell(below, s)
            new.append(s)
            below = cell.hidden(s)
        return tuple(new)

    def hidden(self, state: tuple) -> Tensor:
        """The top layer's h_t, which the output layer reads."""
        return self.layers()[-1].hidden(state[-1])


def _check_checkpoint(checkpoint: Any) -> Any:
    """None, an int k >= 1, "sqrt" or a MemoryBudget."""
    if checkpoint is None or checkpoint == "sqrt" or isinstance(checkpoint, MemoryBudget):
        return checkpoint
    if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) and checkpoint >= 1:
        return int(checkpoint)
    raise ValueError(f"CharRNN: checkpoint must be None, an int k >= 1, 'sqrt' or nn.MemoryBudget(slots=m), "
                     f"got {checkpoint!r}")


def _flatten(state: Any) -> tuple[list, Any]:
    """A state (None, a Tensor, or tuples of them) as a flat list of Tensors and the tree to rebuild it."""
    if state is None:
        return [], None
    if isinstance(state, Tensor):
        return [state], "tensor"
    if isinstance(state, (tuple, list)):
        flat, trees = [], []
        for part in state:
            f, tree = _flatten(part)
            flat += f
            trees.append((len(f), tree))
        return flat, (type(state), trees)
    raise ValueError(f"CharRNN: checkpointing needs a state made of Tensors (or tuples of them), "
                     f"got a {type(state).__name__}")


def _unflatten(flat: list, tree: Any) -> Any:
    if tree is None:
        return None
    if tree == "tensor":
        return flat[0]
    kind, parts, start = tree[0], [], 0
    for n, sub in tree[1]:
        parts.append(_unflatten(flat[start:start + n], sub))
        start += n
    return kind(parts)


def _total(terms: list) -> Tensor:
    """t_0 + t_1 + …, one Add per term (the segments' losses)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


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
    if not isinstance(state, (tuple, list)):  # a dict or a string would recurse without end
        raise TypeError(f"detach_state: a state is a Tensor or a tuple of states, got {type(state).__name__}")
    return tuple(detach_state(s) for s in state)
