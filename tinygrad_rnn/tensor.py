"""Tensor: an n-dimensional array that records the ops made from it, on top of the engine (engine.py),
with NumPy's operators and methods, each one op of function.py; and the functions that build tensors.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np

from . import _blas, engine
from .engine import Function, _creation_order
from .function import (Abs, Add, Clip, Concat, Div, Exp, GetItem, Log, LogSoftmax, MatMul, Max, Mean, Mul,
                       Neg, Pow, Relu, Reshape, Sigmoid, Softmax, Sqrt, Stack, Sub, Sum, Tanh, Transpose,
                       Where)

__all__ = ["Tensor", "concat", "stack", "where", "zeros", "ones", "randn"]


def _float_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


class Tensor:
    """An n-dimensional array that remembers the op that made it, for reverse-mode autodiff."""
    __slots__ = ("data", "_grad", "requires_grad", "_name", "_ctx", "_version", "_tangent", "__weakref__")
    __array_ufunc__ = None  # ndarray + Tensor defers to Tensor.__radd__ instead of looping
    __hash__ = object.__hash__  # == is elementwise, so hash by identity (as torch): sets and dicts of tensors work

    def __init__(self, data: Any, requires_grad: bool = False, name: Optional[str] = None):
        if isinstance(data, Tensor):
            data = data.data
        try:  # a copy, as torch.tensor(ndarray): an optimizer's in-place step never edits the caller's array
            array = np.array(data)
        except ValueError as e:
            raise ValueError(f"Tensor: data is not a regular array ({e})") from None
        if array.dtype == object:
            raise TypeError(f"Tensor: cannot hold data of type {type(data).__name__} (object array)")
        if array.dtype.kind not in "biufc":
            raise TypeError(f"Tensor: holds numbers, not {type(data).__name__} data of dtype {array.dtype}")
        if requires_grad and not _float_dtype(array.dtype):
            raise TypeError(f"Tensor: only floating-point data can require grad, got dtype {array.dtype}")
        self.data = array
        self._grad: Optional[np.ndarray] = None
        self.requires_grad = bool(requires_grad)
        self._name = name
        self._ctx: Optional[Function] = None
        self._version = 0  # see _bump_version
        self._tangent: Optional[tuple] = None  # (forward-mode token, tangent) inside jvp

    # ---- inspection -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def grad_fn(self) -> Optional[Function]:
        """The op node that produced this tensor (None for leaves and under no_grad)."""
        return self._ctx

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad(self) -> Optional[np.ndarray]:
        """dL/d(this tensor) after backward: a leaf's, summed over backward calls until zero_grad; an op's
        output keeps one only after retain_grad(), on its graph node (so the graph's view of it has it too)."""
        return self._grad if self._ctx is None else self._ctx._grad

    @grad.setter
    def grad(self, grad: Optional[np.ndarray]) -> None:
        if self._ctx is None:
            self._grad = grad
        else:
            self._ctx._grad = grad

    @property
    def _retain(self) -> bool:
        return self._ctx is not None and self._ctx._retain

    @property
    def name(self) -> Optional[str]:
        """A label for pictures and messages, e.g. "h(2)"; an op's output hands it to the graph's node,
        which keeps it after the tensor is gone."""
        return self._name if self._ctx is None else self._ctx._out_name  # the node's: shared with the graph's view

    @name.setter
    def name(self, name: Optional[str]) -> None:
        self._name = name
        if self._ctx is not None:
            self._ctx._out_name = name

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item: a tensor of shape {self.shape} has {self.data.size} entries; item() takes "
                             "exactly one")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        return self.data

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")  # PyTorch's words
        return len(self.data)

    def __iter__(self) -> Iterator["Tensor"]:
        """The rows t[0], t[1], ...; a 0-d tensor has none to iterate over (TypeError, as in PyTorch)."""
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))

    # a one-entry tensor as a Python number, as PyTorch: float(t), int(t), round(t, 2), f"{t:.3f}"
    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __round__(self, ndigits: Optional[int] = None) -> Any:
        return round(self.item(), ndigits)

    def __format__(self, spec: str) -> str:
        return format(self.item(), spec) if spec and self.data.size == 1 else format(str(self), spec)

    def __bool__(self) -> bool:
        """The truth of a one-entry tensor (`if loss < 1.0:`); more or fewer entries are ambiguous, as in PyTorch."""
        if self.data.size != 1:
            raise RuntimeError(f"bool: the truth value of a tensor of shape {self.shape} with {self.data.size} "
                               "entries is ambiguous; use (t > x).numpy().any() or .all()")
        return bool(self.data.reshape(()))

    def __repr__(self) -> str:
        extra = f", name={self.name!r}" if self.name else ""
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({np.array2string(self.data, precision=4, separator=', ')}{extra})"

    # ---- graph handling ---------------------------------------------------------------------
    def detach(self) -> "Tensor":
        """The same data (shared, not copied), cut from the graph: truncated BPTT cuts the state so."""
        detached = Tensor.__new__(Tensor)
        detached.data, detached._grad, detached.requires_grad = self.data, None, False
        detached._name, detached._ctx, detached._version = None, None, 0
        detached._tangent = None
        return detached

    def _bump_version(self) -> None:
        """Record an in-place edit of .data (an optimizer step, load_state_dict), as PyTorch's version
        counter: backward refuses an op that saved this array before the edit. The number comes from
        the clock that numbers the ops, so "edited after op k was made" is one comparison."""
        self._version = next(_creation_order)

    def retain_grad(self) -> "Tensor":
        """Keep .grad on this intermediate after backward (e.g. dL/dh_t); a leaf keeps its own anyway."""
        if self._ctx is not None:
            self._ctx._retain = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, grad: Any = None, retain_graph: Optional[bool] = None, create_graph: bool = False) -> None:
        """Accumulate dself/dleaf into every leaf's .grad, in reverse topological order. create_graph=True
        runs the differentiable rules, as PyTorch's (.grad stays an ndarray here: tr.grad returns Tensors
        with their graph); retain_graph defaults to create_graph."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(was it made under no_grad, or from tensors without requires_grad=True?)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: a non-scalar output of shape {self.shape} needs "
                                   "backward(grad=array of that shape); only a scalar is seeded with 1.0")
            seed = np.ones_like(self.data)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"backward: grad has shape {seed.shape} but the output has shape {self.shape}")
        retain = create_graph if retain_graph is None else retain_graph
        if create_graph:
            seed = grad if isinstance(grad, Tensor) else Tensor(seed)
        with _blas.one_thread():  # an RNN graph's matrices are small: BLAS threads only fight (see _blas)
            engine.run_backward([self], [seed], bool(retain), create_graph=create_graph)

    # ---- operators ----------------------------------------------------------------------------
    def _lift(self, other: Any) -> "Tensor":
        """Wrap a number or array as a constant; Python numbers take self's dtype (no upcast)."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float)) and not isinstance(other, bool) and _float_dtype(self.data.dtype):
            return Tensor(np.asarray(other, dtype=self.data.dtype))
        return Tensor(other)  # integer tensors promote as NumPy does: int + 0.5 is a float

    def __add__(self, other):
        return Add.apply(self, self._lift(other))

    def __radd__(self, other):
        return Add.apply(self._lift(other), self)

    def __sub__(self, other):
        return Sub.apply(self, self._lift(other))

    def __rsub__(self, other):
        return Sub.apply(self._lift(other), self)

    def __mul__(self, other):
        return Mul.apply(self, self._lift(other))

    def __rmul__(self, other):
        return Mul.apply(self._lift(other), self)

    def __truediv__(self, other):
        return Div.apply(self, self._lift(other))

    def __rtruediv__(self, other):
        return Div.apply(self._lift(other), self)

    def __pow__(self, other):
        return Pow.apply(self, self._lift(other))

    def __rpow__(self, other):
        return Pow.apply(self._lift(other), self)

    def __matmul__(self, other):
        return MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other):
        return MatMul.apply(self._lift(other), self)

    def __neg__(self):
        return Neg.apply(self)

    def __getitem__(self, index):
        """NumPy indexing (slices, ints, int arrays, masks); repeated indices add up in the gradient."""
        return GetItem.apply(self, index=_plain_index(index))

    # Comparisons are elementwise and give constant boolean tensors (masks for tr.where), as in
    # PyTorch; no gradient flows. == too, so `t in list_of_tensors` needs one-entry tensors: use id().
    def __lt__(self, other):
        return _compare("lt", np.less, self, other)

    def __le__(self, other):
        return _compare("le", np.less_equal, self, other)

    def __gt__(self, other):
        return _compare("gt", np.greater, self, other)

    def __ge__(self, other):
        return _compare("ge", np.greater_equal, self, other)

    def __eq__(self, other):
        return _compare("eq", np.equal, self, other)

    def __ne__(self, other):
        return _compare("ne", np.not_equal, self, other)

    # ---- elementwise --------------------------------------------------------------------------
    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def relu(self):
        return Relu.apply(self)

    def sqrt(self):
        return Sqrt.apply(self)

    def abs(self):
        return Abs.apply(self)

    def clip(self, lo=None, hi=None):
        """Entries limited to [lo, hi]; the gradient passes only where lo <= x <= hi (as torch.clamp)."""
        return Clip.apply(self, lo=lo, hi=hi)

    # ---- reductions ---------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over axis (int, tuple or None for all), as np.sum."""
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over axis (int, tuple or None for all), as np.mean."""
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        """Largest entry over axis, as np.max; tied maxima share the gradient equally (as torch.amax)."""
        return Max.apply(self, axis=axis, keepdims=keepdims)

    def softmax(self, axis=-1):
        """exp(x) / sum(exp(x)) along axis, computed without overflow."""
        return Softmax.apply(self, axis=axis)

    def log_softmax(self, axis=-1):
        """x - logsumexp(x) along axis, finite even for logits of 1e4."""
        return LogSoftmax.apply(self, axis=axis)

    # ---- shape --------------------------------------------------------------------------------
    def reshape(self, *shape):
        """The same entries in a new shape: t.reshape(2, 3) or t.reshape((2, 3)), -1 allowed."""
        return Reshape.apply(self, shape=_shape_of(shape))

    def transpose(self, *axes):
        """Axes permuted as np.transpose; no axes reverses them."""
        return Transpose.apply(self, axes=_shape_of(axes) or None)

    @property
    def T(self):
        """The tensor with its axes reversed (the matrix transpose for 2-D)."""
        return Transpose.apply(self, axes=None)


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


_COMPARABLE = (Tensor, np.ndarray, np.generic, int, float, bool, list, tuple)


def _compare(op: str, fn: Any, a: Tensor, b: Any) -> Any:
    """fn(a, b) elementwise as a boolean tensor without gradient; other objects compare by identity."""
    if not isinstance(b, _COMPARABLE):
        return NotImplemented  # t == None is False, as in PyTorch
    b = _data(b)
    try:
        return Tensor(fn(a.data, b))
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {np.shape(b)} cannot be broadcast together") from None


def _plain_index(index: Any) -> Any:
    """Tensors inside an index become their integer arrays."""
    if isinstance(index, tuple):
        for i in index:  # a loop first: the common index (an LSTM's gate slices) holds no Tensor
            if isinstance(i, Tensor):
                return tuple(_data(i) for i in index)
        return index
    return _data(index)


# ---- functions of several tensors --------------------------------------------------------------------
def _as_tensors(op: str, tensors: Sequence) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expects a list or tuple of tensors, got {type(tensors).__name__}")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (np.concatenate)."""
    return Concat.apply(*_as_tensors("concat", tensors), axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shape tensors along a new axis (np.stack)."""
    return Stack.apply(*_as_tensors("stack", tensors), axis=axis)


def where(cond, a, b) -> Tensor:
    """Pick from a where cond is true, else from b; cond (array or Tensor of bools) gets no gradient."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    lift = like._lift if like is not None else Tensor
    cond = cond if isinstance(cond, Tensor) else Tensor(np.asarray(cond))
    return Where.apply(cond, lift(a), lift(b))


# ---- constructors -------------------------------------------------------------------------------
def _shape_of(shape: Sequence) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def zeros(*shape, requires_grad: bool = False, dtype=np.float64, name: Optional[str] = None) -> Tensor:
    return Tensor(np.zeros(_shape_of(shape), dtype=dtype), requires_grad=requires_grad, name=name)


def ones(*shape, requires_grad: bool = False, dtype=np.float64, name: Optional[str] = None) -> Tensor:
    return Tensor(np.ones(_shape_of(shape), dtype=dtype), requires_grad=requires_grad, name=name)


def randn(*shape, requires_grad: bool = False, dtype=np.float64, rng: Optional[np.random.Generator] = None,
          name: Optional[str] = None) -> Tensor:
    """Standard normal samples; pass rng=np.random.default_rng(seed) for repeatable numbers."""
    rng = np.random.default_rng() if rng is None else rng
    return Tensor(rng.standard_normal(_shape_of(shape)).astype(dtype), requires_grad=requires_grad, name=name)


engine.use_tensor_class(Tensor)
