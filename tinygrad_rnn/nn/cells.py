"""The recurrent cells of the Deep Learning book, ch. 10, built from engine ops (one node per equation).

RNNCell: h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)   (book eqs. 10.8-10.9: U = W_xh, W = W_hh, b = b_h;
PyTorch weight_ih = W_xh, weight_hh = W_hh). LSTMCell: gates i, f, g, o stacked in W_x, W_h, b as in
PyTorch's nn.LSTMCell; cell_input="sigmoid" is the book's eq. 10.40-10.44 (its f, g, q, s).
GRUCell: PyTorch's nn.GRUCell, gates r, z, n stacked in W_x, W_h, b_x, b_h (the reset gate acts after
W_hn, unlike the book's eq. 10.45). Each cell moves its weights to and from PyTorch's names
(torch_state_dict / load_torch_state_dict) without importing torch.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..engine import Function, OuterGrad, SparseGrad
from ..function import Affine, scatter_add
from ..tensor import Tensor
from .layers import _matvec
from .module import Module, _check_init, _parameter

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]

_CELL_INPUTS = ("tanh", "sigmoid")


# Up to this vocabulary size a batch's dL/dW_x = da^T x_t is a product with the one-hot rows x_t, which the engine
# sums over all steps in one matrix product; above it np.add.at's column scatter wins (it costs ~2 µs a row whatever
# V is, the product grows with V: measured crossover at H=64-1024, B=32 near V=150 in float64, V=300 in float32)
_ONEHOT_MAX_V = 128


def _input_grad(da: np.ndarray, idx: Any, V: int) -> Any:
    """dL/dW_x = da x_t^T for one-hot x_t: one sequence's column (added in place), or a batch's as factors."""
    if np.ndim(idx) == 0 or V > _ONEHOT_MAX_V:
        return SparseGrad((slice(None), idx), da.T)
    onehot = np.zeros(np.shape(idx) + (V,), da.dtype)
    np.put_along_axis(onehot, np.asarray(idx)[..., None], 1, axis=-1)
    return OuterGrad(da, onehot)


class ColumnGather(Function):
    """y = W[:, idx]^T, i.e. W x for one-hot x;  dL/dW[:, idx] += g^T  (repeated idx add up);
    dy = dW[:, idx]^T"""
    __slots__ = ("idx", "vocab")
    lowering = "{y} = {a}[:, {ctx.idx!i}].T"
    batched_jvp = True  # takes tangents (K, *shape), as every built-in op
    differentiable_backward = True

    @staticmethod
    def forward(ctx, W, idx=None):
        ctx.idx, ctx.vocab = idx, W.shape[1]
        return W[:, idx].T.copy()  # a copy: the optimizer later updates W in place

    @staticmethod
    def backward(ctx, g):
        # only the gathered columns, added straight into W.grad (as min-char-rnn's dWxh[:, x] += dhraw);
        # a batch's as one-hot factors, summed over the steps in one product
        if type(g) is np.ndarray:
            return (_input_grad(g, ctx.idx, ctx.vocab),)
        return (scatter_add(g.T, (slice(None), ctx.idx), (g.shape[-1], ctx.vocab)),)  # create_graph: an op

    @staticmethod
    def jvp(ctx, dW):
        return np.moveaxis(dW[:, :, ctx.idx], 1, -1)  # (K, H) for one idx, (K, B, H) for B of them


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


def _torch_array(owner: str, d: Any, key: str, shape: tuple) -> Optional[np.ndarray]:
    """d[key] as a float ndarray of `shape` (a torch tensor is read through .detach().cpu().numpy()); None if absent."""
    if key not in d:
        return None
    v = d[key]
    for method in ("detach", "cpu", "numpy"):  # duck typing: torch is never imported here
        if hasattr(v, method) and not isinstance(v, np.ndarray):
            v = getattr(v, method)()
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.floating):
        raise ValueError(f"{owner}.load_torch_state_dict: {key} must be floating point, got dtype {v.dtype}")
    if v.shape != shape:
        raise ValueError(f"{owner}.load_torch_state_dict: {key} has shape {v.shape}, expected {shape}")
    with np.errstate(over="ignore"):
        if not np.isfinite(v.astype(np.float64)).all():  # float128 beyond float64's range too
            raise ValueError(f"{owner}.load_torch_state_dict: {key} holds NaN or inf")
    return v


def _from_torch(cell: Module, d: Any, gates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """weight_ih, weight_hh, bias_ih, bias_hh of a PyTorch cell's state_dict, checked against `cell`'s sizes.

    Missing biases are zeros (a PyTorch cell made with bias=False has none); one bias without the other is
    refused, as torch's own load_state_dict refuses a missing key."""
    owner = type(cell).__name__
    if not hasattr(d, "keys"):
        raise ValueError(f"{owner}.load_torch_state_dict: expected a dict like torch's state_dict(), "
                         f"got {type(d).__name__}")
    known = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    problems = [f"missing {k}" for k in known[:2] if k not in d]
    problems += [f"{a} without {b}" for a, b in (("bias_ih", "bias_hh"), ("bias_hh", "bias_ih")) if a in d and b not in d]
    problems += [f"unexpected {k!r}" for k in d.keys() if k not in known]
    if problems:
        raise ValueError(f"{owner}.load_torch_state_dict: {', '.join(problems)} "
                         "(expected weight_ih, weight_hh and, unless bias=False, bias_ih, bias_hh)")
    G, D = gates * cell.hidden_size, cell.input_size
    W_ih = _torch_array(owner, d, "weight_ih", (G, D))
    W_hh = _torch_array(owner, d, "weight_hh", (G, cell.hidden_size))
    b_ih, b_hh = (_torch_array(owner, d, k, (G,)) for k in ("bias_ih", "bias_hh"))
    zeros = np.zeros(G)
    return W_ih, W_hh, zeros if b_ih is None else b_ih, zeros if b_hh is None else b_hh


class RNNCell(Module):
    """h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h): x (D,) or (B, D), h (H,) or (B, H)."""

    def __init__(self, input_size: int, hidden_size: int, *, rng: Optional[np.random.Generator] = None,
                 init: str = "uniform", dtype: type = np.float64) -> None:
        dtype, rng = _check_init("RNNCell", init, dtype, rng, input_size=input_size, hidden_size=hidden_size)
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

    def torch_state_dict(self) -> dict[str, np.ndarray]:
        """The weights under torch.nn.RNNCell's names (tanh); the one bias goes to bias_ih, zeros to bias_hh."""
        return {"weight_ih": self.W_xh.data.copy(), "weight_hh": self.W_hh.data.copy(),
                "bias_ih": self.b_h.data.copy(), "bias_hh": np.zeros_like(self.b_h.data)}

    def load_torch_state_dict(self, d: Any) -> None:
        """Weights from torch.nn.RNNCell's state_dict() (ndarrays or torch tensors); b_h = bias_ih + bias_hh."""
        W_ih, W_hh, b_ih, b_hh = _from_torch(self, d, 1)
        self.load_state_dict({"W_xh": W_ih, "W_hh": W_hh, "b_h": b_ih + b_hh})


class LSTMCell(Module):
    """h, s = LSTM(x, (h_prev, s_prev)) with gates i, f, g, o: x (D,) or (B, D), h and s (H,) or (B, H)."""

    def __init__(self, input_size: int, hidden_size: int, cell_input: str = "tanh", *,
                 rng: Optional[np.random.Generator] = None, init: str = "uniform",
                 dtype: type = np.float64) -> None:
        if cell_input not in _CELL_INPUTS:
            raise ValueError(f"LSTMCell: cell_input must be one of {_CELL_INPUTS}, got {cell_input!r}")
        dtype, rng = _check_init("LSTMCell", init, dtype, rng, input_size=input_size, hidden_size=hidden_size)
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
        # named with the book's letters (eq. 10.40-10.44), so a picture reads f(2) = Sigmoid and o(t) stays the
        # output's name: forget gate f, external input gate g (PyTorch's i), output gate q (PyTorch's o), and
        # the cell input s̃, the book's unnamed σ(b + U x + W h) (PyTorch's candidate g)
        i.name, f.name, g.name, o.name = "g", "f", "s\u0303", "q"
        s = f * s_prev + i * g                        # internal state    (eq. 10.41)
        h = o * s.tanh()                              # output            (eq. 10.43)
        return h, s

    def torch_state_dict(self) -> dict[str, np.ndarray]:
        """The weights under torch.nn.LSTMCell's names (same i, f, g, o blocks); b goes to bias_ih, zeros to bias_hh."""
        self._check_torch("torch_state_dict")
        return {"weight_ih": self.W_x.data.copy(), "weight_hh": self.W_h.data.copy(),
                "bias_ih": self.b.data.copy(), "bias_hh": np.zeros_like(self.b.data)}

    def load_torch_state_dict(self, d: Any) -> None:
        """Weights from torch.nn.LSTMCell's state_dict() (ndarrays or torch tensors); b = bias_ih + bias_hh."""
        self._check_torch("load_torch_state_dict")
        W_ih, W_hh, b_ih, b_hh = _from_torch(self, d, 4)
        self.load_state_dict({"W_x": W_ih, "W_h": W_hh, "b": b_ih + b_hh})

    def _check_torch(self, method: str) -> None:
        if self.cell_input != "tanh":  # the same weights would compute another function there
            raise ValueError(f"LSTMCell.{method}: cell_input={self.cell_input!r} (the book's LSTM) has no "
                             "PyTorch counterpart; torch.nn.LSTMCell's cell input is tanh")


class GRUCell(Module):
    """h = GRU(x, h_prev) as PyTorch's nn.GRUCell, gates r, z, n: x (D,) or (B, D), h (H,) or (B, H)."""

    def __init__(self, input_size: int, hidden_size: int, *, rng: Optional[np.random.Generator] = None,
                 init: str = "uniform", dtype: type = np.float64) -> None:
        dtype, rng = _check_init("GRUCell", init, dtype, rng, input_size=input_size, hidden_size=hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        H, D, bound = hidden_size, input_size, 1 / np.sqrt(hidden_size)
        kw = dict(bound=bound, init=init, rng=rng, dtype=dtype)
        self.W_x = _parameter("W_x", (3 * H, D), bias=False, **kw)
        self.W_h = _parameter("W_h", (3 * H, H), bias=False, **kw)
        self.b_x = _parameter("b_x", (3 * H,), bias=True, **kw)
        self.b_h = _parameter("b_h", (3 * H,), bias=True, **kw)

    def forward(self, x: Tensor, h_prev: Optional[Tensor] = None) -> Tensor:
        """x (D,) or (B, D), h_prev (H,) or (B, H) or None (zeros) -> h (H,) or (B, H)."""
        return self.step(self.project(x), h_prev)

    def project(self, x: Tensor) -> Tensor:
        """W_x x: (D,) or (B, D) -> (3H,) or (B, 3H)."""
        return _matvec(self.W_x, x)

    def project_onehot(self, idx: Any) -> Tensor:
        """W_x x for one-hot x, as a column gather: idx int or (B,) ints -> (3H,) or (B, 3H)."""
        return ColumnGather.apply(self.W_x, idx=idx)

    def hidden(self, state: Tensor) -> Tensor:
        """The hidden vector h of a state (for a GRU the state itself)."""
        return state

    def step(self, xw: Tensor, h_prev: Optional[Tensor] = None) -> Tensor:
        """One step from a projected input xw = W_x x (3H,) or (B, 3H) -> h (H,) or (B, H)."""
        H = self.hidden_size
        h_prev = _zeros_like_rows(xw, H) if h_prev is None else _as_state("GRUCell", h_prev, xw, H)
        ax = xw + self.b_x                              # input side of all three gates: (..., 3H)
        ah = Affine.apply(h_prev, self.W_h, self.b_h)   # hidden side: W_h h + b_h, (..., 3H)
        r = (ax[..., 0 * H:1 * H] + ah[..., 0 * H:1 * H]).sigmoid()     # reset gate
        z = (ax[..., 1 * H:2 * H] + ah[..., 1 * H:2 * H]).sigmoid()     # update gate
        n = (ax[..., 2 * H:3 * H] + r * ah[..., 2 * H:3 * H]).tanh()    # candidate: r gates W_hn h + b_hn
        r.name, z.name, n.name = "r", "z", "n"  # pictures add the step: z(2) = Sigmoid
        return (1 - z) * n + z * h_prev                 # keep z of the old state, 1 - z of the candidate

    def torch_state_dict(self) -> dict[str, np.ndarray]:
        """The weights under torch.nn.GRUCell's names: weight_ih = W_x, weight_hh = W_h, bias_ih = b_x, bias_hh = b_h."""
        return {"weight_ih": self.W_x.data.copy(), "weight_hh": self.W_h.data.copy(),
                "bias_ih": self.b_x.data.copy(), "bias_hh": self.b_h.data.copy()}

    def load_torch_state_dict(self, d: Any) -> None:
        """Weights from torch.nn.GRUCell's state_dict() (ndarrays or torch tensors)."""
        W_ih, W_hh, b_ih, b_hh = _from_torch(self, d, 3)
        self.load_state_dict({"W_x": W_ih, "W_h": W_hh, "b_x": b_ih, "b_h": b_hh})
