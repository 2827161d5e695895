"""The engine: Tensor, the Function base every op derives from, the iterative backward pass
and forward mode (jvp).

Early tinygrad's Function/ctx pattern (PyTorch's torch.autograd.Function); backward visits nodes
newest first from a heap of creation numbers, as PyTorch's engine does: no recursion, any depth.
Forward mode (jax.jvp, torch.func.jvp) needs no graph: each op pushes its tangent on as it runs.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import sys
from typing import Any, Iterator, Optional, Sequence

import numpy as np

__all__ = ["Tensor", "Function", "SparseGrad", "OuterGrad", "no_grad", "scope", "detect_anomaly",
           "zeros", "ones", "randn", "is_grad_enabled", "jvp"]


class _State:
    """Global switches read on every op (one object, so the hot path does one attribute lookup)."""
    __slots__ = ("grad_enabled", "scope", "anomaly", "forward")

    def __init__(self) -> None:
        self.grad_enabled = True
        self.scope = ""      # "t=3/lstm" while inside scope("t=3") and scope("lstm")
        self.anomaly = False
        self.forward = None  # inside forward mode: the token that marks this run's tangents


_state = _State()
_creation_order = itertools.count()  # a node is always numbered after its inputs


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Ops inside build no graph: outputs have requires_grad=False and keep nothing for backward."""
    previous, _state.grad_enabled = _state.grad_enabled, False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def is_grad_enabled() -> bool:
    """False inside no_grad()."""
    return _state.grad_enabled


class scope:
    """Tag every op created inside with `name` (nested scopes join with "/"), e.g. the time step.

    A class rather than a generator: CharRNN enters one per time step, and this is 4x cheaper.
    """
    __slots__ = ("name", "_outer")

    def __init__(self, name: str) -> None:
        self.name = str(name)
        self._outer: list = []  # a stack, so the same scope object may be entered again inside itself

    def __enter__(self) -> str:
        self._outer.append(_state.scope)
        _state.scope = f"{_state.scope}/{self.name}" if _state.scope else self.name
        return _state.scope

    def __exit__(self, *exc_info: Any) -> None:
        _state.scope = self._outer.pop()


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Inside, the first backward op that produces NaN or inf raises, naming the op and its scope."""
    previous, _state.anomaly = _state.anomaly, True
    try:
        yield
    finally:
        _state.anomaly = previous


class Function:
    """Base of every op. Subclass with static forward(ctx, *arrays, **kw) -> array and
    backward(ctx, grad_out) -> tuple of arrays (one per input, None where none is needed),
    then call MyOp.apply(*tensors, **kw). The instance is the ctx and the graph node.
    For forward mode add a static jvp(ctx, *input_tangents) -> output_tangent (None for an
    input without tangent); it runs right after forward, with the same ctx.
    """
    # Subclasses without __slots__ get a __dict__, so a user's ctx takes any attribute.
    __slots__ = ("parents", "needs_input_grad", "saved_tensors", "scope", "seq")
    # True: jvp takes each tangent with a leading axis of directions, (K, *input.shape), and returns
    # (K, *output.shape), as the built-in ops do (RTRL pushes one direction per parameter entry).
    # False (a rule of one's own): jvp sees one direction at a time, shaped like the inputs.
    batched_jvp = False

    @staticmethod
    def forward(ctx: "Function", *arrays: np.ndarray, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: "Function", grad_out: np.ndarray) -> tuple:
        raise NotImplementedError

    @staticmethod
    def jvp(ctx: "Function", *input_tangents: Optional[np.ndarray]) -> np.ndarray:
        raise NotImplementedError(f"{ctx.name}: this op has no forward-mode rule; give it a static "
                                  "jvp(ctx, *input_tangents) -> output_tangent to use it under jvp")

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved_tensors = arrays

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def apply(cls, *inputs: Any, **kwargs: Any) -> "Tensor":
        # The hot path of the whole engine: plain loops and slot writes, no generators.
        for t in inputs:
            if not isinstance(t, Tensor):
                inputs = tuple([t if isinstance(t, Tensor) else Tensor(t) for t in inputs])
                break
        ctx = cls.__new__(cls)
        ctx.saved_tensors = ()
        data = cls.forward(ctx, *[t.data for t in inputs], **kwargs)
        if type(data) is not np.ndarray:
            data = np.asarray(data)
        out = Tensor.__new__(Tensor)
        out.data = data
        out.grad = out.name = out._tangent = None
        out._retain = False
        out._version = 0
        needs = tuple([t.requires_grad for t in inputs])
        if True in needs and _state.grad_enabled:
            ctx.parents = inputs
            ctx.needs_input_grad = _NEEDS.setdefault(needs, needs)  # one shared tuple per pattern: 80 B less a node
            ctx.scope = _state.scope
            ctx.seq = next(_creation_order)
            out.requires_grad = True
            out._ctx = ctx
        else:
            out.requires_grad = False
            out._ctx = None
        if _state.forward is not None:  # forward mode: this op's tangent, from its inputs' tangents
            _push_tangent(cls, ctx, inputs, out)
        return out

    def __repr__(self) -> str:
        where = f" in {self.scope!r}" if getattr(self, "scope", "") else ""
        return f"<{self.name}{where}>"


_FREED = None  # saved_tensors after a backward without retain_graph
_NEEDS: dict = {}  # needs_input_grad tuples, shared: a few patterns over every node of a graph


_BASIC_INDEX = frozenset([slice, int, type(None), type(Ellipsis)])


class SparseGrad:
    """A gradient that is zero except at `index`, where it is `values` (repeated indices add up).

    A backward may return one for an input it only reads a few entries of (a one-hot input's
    column of W_xh): the engine adds it into a leaf's .grad without building the zeros.
    """
    __slots__ = ("index", "values")

    def __init__(self, index: Any, values: np.ndarray) -> None:
        self.index, self.values = index, values

    def add_to(self, buffer: np.ndarray) -> None:
        """buffer[index] += values, summing repeated indices."""
        index = self.index
        for part in index if type(index) is tuple else (index,):  # a loop, not all(...): this runs per step
            if type(part) not in _BASIC_INDEX and not isinstance(part, (int, np.integer)):
                np.add.at(buffer, index, self.values)  # an integer array may repeat entries: add each
                return
        buffer[index] += self.values  # basic indexing picks each entry once: in place

    def dense(self, like: np.ndarray) -> np.ndarray:
        """The full gradient, shaped and typed like `like`."""
        full = np.zeros_like(like)
        self.add_to(full)
        return full


class OuterGrad:
    """A weight's gradient u^T v, kept as its factors u (..., H) and v (..., D): dL/dW of W x.

    A weight used at every time step gets T such terms; the engine stacks them and sums them
    with one (H, T) @ (T, D) product at the end of backward instead of T outer products.
    """
    __slots__ = ("u", "v")

    def __init__(self, u: np.ndarray, v: np.ndarray) -> None:
        self.u, self.v = u, v

    def rows(self) -> tuple:
        """u and v as matrices of rows: (N, H) and (N, D)."""
        return self.u.reshape(-1, self.u.shape[-1]), self.v.reshape(-1, self.v.shape[-1])

    def dense(self) -> np.ndarray:
        u, v = self.rows()
        if u.flags.c_contiguous and v.flags.c_contiguous:
            return np.dot(u.T, v)  # np.dot: BLAS even for one row, where @ is 4x slower
        return u.T @ v  # a strided view (a fused LSTM's h_t columns): np.dot would copy it whole, @ does not


def _float_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


class Tensor:
    """An n-dimensional array that remembers the op that made it, for reverse-mode autodiff."""
    __slots__ = ("data", "grad", "requires_grad", "name", "_ctx", "_retain", "_version", "_tangent", "__weakref__")
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
        if requires_grad and not _float_dtype(array.dtype):
            raise TypeError(f"Tensor: only floating-point data can require grad, got dtype {array.dtype}")
        self.data = array
        self.grad: Optional[np.ndarray] = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._ctx: Optional[Function] = None
        self._retain = False
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

    def item(self) -> float:
        return self.data.item()

    def numpy(self) -> np.ndarray:
        return self.data

    def __len__(self) -> int:
        return len(self.data)

    def __float__(self) -> float:
        return float(self.data)

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
        detached.data, detached.grad, detached.requires_grad = self.data, None, False
        detached.name, detached._ctx, detached._retain, detached._version = None, None, False, 0
        detached._tangent = None
        return detached

    def _bump_version(self) -> None:
        """Record an in-place edit of .data (an optimizer step, load_state_dict), as PyTorch's version
        counter: backward refuses an op that saved this array before the edit. The number comes from
        the clock that numbers the ops, so "edited after op k was made" is one comparison."""
        self._version = next(_creation_order)

    def retain_grad(self) -> "Tensor":
        """Keep .grad on this intermediate after backward (e.g. dL/dh_t)."""
        self._retain = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate dself/dleaf into every leaf's .grad, in reverse topological order."""
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
        _run_backward(self, seed, retain_graph)

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


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum grad over the axes NumPy broadcasting added or stretched, back to `shape`."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _run_backward(root: Tensor, seed: np.ndarray, retain_graph: bool) -> None:
    """Send gradients from root to the leaves, latest-created node first (as PyTorch's engine does).

    Nodes are numbered at creation, after their inputs, so taking the highest number waiting
    means every use of a node has already sent its gradient to it: a topological order from a
    heap, with no recursion and no separate sort. Without retain_graph, each node's saved arrays
    are freed once it has run, and so is an intermediate's data that nobody but the graph holds.
    """
    if root._ctx is None:  # a leaf is its own gradient
        _accumulate(root, seed)
        return
    grads = {id(root): seed}  # pending dL/d(tensor) for intermediates, summed over their uses
    mine = set()        # ids whose pending gradient is an array made here: later uses add in place
    uses = {}           # id -> how many of the graph's parent slots hold the tensor (see _release)
    outer_sums: dict = {}  # id(leaf) -> _OuterSum of its OuterGrad terms
    waiting = [(-root._ctx.seq, root)]
    anomaly = _state.anomaly
    pop, push, refcount, ndarray = heapq.heappop, heapq.heappush, sys.getrefcount, np.ndarray  # local: hot loop
    while waiting:
        node = pop(waiting)[1]
        key = id(node)
        grad = grads.pop(key)
        mine.discard(key)
        if type(grad) is SparseGrad:  # its only share was a slice's: the zeros are built now, when they are needed
            grad = grad.dense(node.data)
        if node._retain:
            _accumulate(node, grad)
        ctx = node._ctx
        if ctx.saved_tensors is _FREED:
            raise RuntimeError(
                f"backward: trying to go through the graph a second time, but the arrays {ctx.name} "
                "saved were freed by the first backward; call backward(retain_graph=True) the first time")
        seq = ctx.seq
        for parent in ctx.parents:  # an input edited in place since this op saved it: stale arrays
            if parent._version > seq:
                _check_not_stale(ctx, parent)
        input_grads = ctx.backward(ctx, grad)
        del grad
        if type(input_grads) is not tuple or len(input_grads) != len(ctx.parents):
            input_grads = _as_grad_tuple(input_grads, ctx)
        else:  # a tuple of our own, so one the op keeps (its saved arrays, say) counts as a holder below
            input_grads = (*input_grads,)
        if not retain_graph and ctx.saved_tensors:
            ctx.saved_tensors = _FREED
        for parent, g in zip(ctx.parents, input_grads):
            if g is None or not parent.requires_grad:
                continue
            fresh = False  # g is an array made here, that nobody else holds
            if type(g) is not ndarray or g.shape != parent.data.shape:
                if type(g) is OuterGrad:
                    if anomaly:
                        _check_finite(g.u, ctx)
                        _check_finite(g.v, ctx)
                    if parent._ctx is None:  # the point of it: one product for many terms, see _OuterSum
                        total = outer_sums.get(id(parent))
                        if total is None:
                            total = outer_sums[id(parent)] = _OuterSum(parent)
                        total.add(g)
                        continue
                    g, fresh = g.dense(), True
                elif type(g) is SparseGrad:
                    if anomaly:
                        _check_finite(g.values, ctx)
                    if parent._ctx is None:  # the point of it: add into .grad, no dense zeros
                        if parent.grad is None:
                            parent.grad = np.zeros_like(parent.data)
                        g.add_to(parent.grad)
                        continue
                    pk = id(parent)
                    pending = grads.get(pk)
                    if pending is None:  # the first share: kept sparse until a second arrives or the node
                        grads[pk] = g    # runs, so T row slices of T (…, 2H) states never densify all at once
                        uses[pk] = 1
                        push(waiting, (-parent._ctx.seq, parent))
                        continue
                    if type(pending) is SparseGrad:  # a kept share meets a second: one sum of our own
                        pending = grads[pk] = pending.dense(parent.data)
                        mine.add(pk)
                    if pk in mine:  # a slice's share into the sum we own: no zeros of its own
                        g.add_to(pending)
                        uses[pk] += 1
                        continue
                    g, fresh = g.dense(parent.data), True
                else:
                    g = _fit_shape(np.asarray(g), parent.data.shape, ctx)
            if anomaly:
                _check_finite(g, ctx)
            if parent._ctx is None:
                if parent.grad is not None:
                    parent.grad += g  # +=, never =: every use of a leaf adds its share
                elif refcount(g) <= _SOLE_OWNER and g.base is None and g.dtype == parent.data.dtype:
                    parent.grad = g  # nobody else holds g: take it instead of copying (as PyTorch does)
                else:
                    parent.grad = g.astype(parent.data.dtype)  # a copy: g may also be another input's
            else:
                pk = id(parent)
                pending = grads.get(pk)
                if pending is None:
                    grads[pk] = g
                    uses[pk] = 1
                    if fresh:
                        mine.add(pk)
                    push(waiting, (-parent._ctx.seq, parent))
                else:
                    uses[pk] += 1
                    if type(pending) is SparseGrad:  # a kept slice's share: densified into a sum we own
                        pending = grads[pk] = pending.dense(parent.data)
                        mine.add(pk)
                    if pk in mine and pending.dtype == g.dtype:
                        pending += g  # into the buffer we own, in place
                    else:
                        grads[pk] = pending + g
                        mine.add(pk)
        del input_grads, g
        if not retain_graph and node is not root and refcount(node) <= _NODE_HOLDERS + uses.pop(key, 0):
            node.data = _released(node.data)  # only the graph held it: keep its shape, free its memory
    for total in outer_sums.values():
        total.flush()


class _OuterSum:
    """A leaf's OuterGrad terms u^T v, kept until they hold _OUTER_ROWS rows and then summed into .grad
    with one (H, N) @ (N, D) product: one matrix product instead of T outer products, and memory
    bounded however long the sequence."""
    __slots__ = ("leaf", "terms", "n")

    def __init__(self, leaf: Tensor) -> None:
        self.leaf, self.terms, self.n = leaf, [], 0

    def add(self, g: OuterGrad) -> None:
        self.terms.append(g)
        self.n += g.u.size // g.u.shape[-1]
        if self.n >= _OUTER_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.terms:
            return
        if len(self.terms) == 1:
            total = self.terms[0].dense()
        else:  # sum_t u_t^T v_t as one (H, N) @ (N, D) product
            rows = [g.rows() for g in self.terms]
            total = np.dot(np.concatenate([u for u, _ in rows]).T, np.concatenate([v for _, v in rows]))
        self.terms, self.n = [], 0
        leaf = self.leaf
        if leaf.grad is None:
            leaf.grad = total.astype(leaf.data.dtype, copy=False)  # a fresh array of our own: no copy
        else:
            leaf.grad += total


_OUTER_ROWS = 512  # rows an _OuterSum collects before one product


def _released(data: np.ndarray) -> np.ndarray:
    """A stand-in for an intermediate's freed data: same shape and dtype, no memory, every entry NaN
    (so a read of values that are gone shows), read-only; one per shape and dtype, shared."""
    key = (data.shape, data.dtype)
    ghost = _GHOSTS.get(key)
    if ghost is None:
        if len(_GHOSTS) > 256:
            _GHOSTS.clear()
        nan = np.full(1, np.nan, data.dtype).tobytes()  # bytes: read-only
        ghost = _GHOSTS[key] = np.ndarray(data.shape, data.dtype, nan, 0, (0,) * data.ndim)
    return ghost


_GHOSTS: dict = {}


def _check_not_stale(ctx: Function, parent: Tensor) -> None:
    """Raise if ctx saved parent's array (or a view of it) before parent was edited in place."""
    data = parent.data
    saved = ctx.saved_tensors or ()
    if any(isinstance(a, np.ndarray) and np.may_share_memory(a, data) for a in saved):
        what = f"{parent.name!r}" if parent.name else "a tensor"
        where = f" created in scope {ctx.scope!r}" if ctx.scope else ""
        raise RuntimeError(f"backward: {what} of shape {parent.shape}, which {ctx.name}{where} saved for its "
                           "gradient, was modified by an inplace operation (an optimizer step or "
                           "load_state_dict) after the forward pass; run the forward pass again")


def _as_grad_tuple(input_grads: Any, ctx: Function) -> tuple:
    if not isinstance(input_grads, (tuple, list)):
        input_grads = (input_grads,)  # a one-input op may return the bare array
    if len(input_grads) != len(ctx.parents):
        raise RuntimeError(f"{ctx.name}.backward returned {len(input_grads)} gradients "
                           f"for {len(ctx.parents)} inputs")
    return tuple(input_grads)


def _check_finite(g: np.ndarray, ctx: Function) -> None:
    if not np.isfinite(g).all():
        where = f" created in scope {ctx.scope!r}" if ctx.scope else " created outside any scope"
        raise RuntimeError(f"detect_anomaly: the backward of {ctx.name}{where} produced "
                           f"{'NaN' if np.isnan(g).any() else 'inf'} in its input gradient")


def _fit_shape(g: np.ndarray, shape: tuple, ctx: Function) -> np.ndarray:
    try:
        fitted = _unbroadcast(g, shape)
    except (ValueError, IndexError):  # fewer axes than the input, or ones that cannot be summed away
        fitted = None
    if fitted is None or fitted.shape != shape:
        raise RuntimeError(f"{ctx.name}.backward returned a gradient of shape {g.shape} "
                           f"for an input of shape {shape}")
    return np.asarray(fitted)  # summing to shape () gives a NumPy scalar; .grad is always an array


def _count_sole_owner_refs() -> int:
    """References to a gradient that only the backward loop holds (the tuple, the loop variable,
    getrefcount's argument), measured on this interpreter in the same loop shape."""
    for _, g in zip((None,), (np.empty(1),)):
        return sys.getrefcount(g)


_SOLE_OWNER = _count_sole_owner_refs()
# References to a node the backward loop holds when it decides to release the node's data: the
# `node` variable and getrefcount's argument; each parent slot of the graph that holds it adds one.
_NODE_HOLDERS = 2


def _accumulate(tensor: Tensor, g: np.ndarray) -> None:
    """tensor.grad += g, never =: a tensor used twice gets both contributions."""
    if tensor.grad is None:
        # copy: g may be shared with another input (add sends the same array to both sides)
        tensor.grad = g.copy() if g.dtype == tensor.data.dtype else g.astype(tensor.data.dtype)
    else:
        tensor.grad += g


# ---- forward mode ----------------------------------------------------------------------------------
# A tangent rides on its tensor as (token, array (K, *shape)): K directions pushed at once. The token
# is this run's, so a tensor kept from an earlier run counts as a constant, not with a stale tangent.
def _tangent_of(t: Tensor) -> Optional[np.ndarray]:
    """t's tangent (K, *t.shape) in the running forward mode, or None: t is a constant there."""
    dual = t._tangent
    return dual[1] if dual is not None and dual[0] is _state.forward else None


def _push_tangent(cls: type, ctx: Function, inputs: tuple, out: Tensor) -> None:
    """out's tangent from its inputs' by the op's jvp rule (none if no input has one)."""
    tangents = [_tangent_of(t) for t in inputs]
    present = [t for t in tangents if t is not None]
    if not present:
        return
    K = present[0].shape[0]
    if cls.batched_jvp:
        t_out = cls.jvp(ctx, *tangents)
        if t_out is None:  # the rule says: no change (Where's condition alone moved)
            return
    else:  # a rule of one's own sees one direction at a time, shaped like the inputs
        t_out = np.stack([np.asarray(cls.jvp(ctx, *[None if t is None else t[k] for t in tangents]))
                          for k in range(K)])
    t_out = np.asarray(t_out)
    if t_out.ndim <= out.ndim:  # an input broadcast into a larger output: axes after K's
        t_out = t_out.reshape(t_out.shape[:1] + (1,) * (out.ndim + 1 - t_out.ndim) + t_out.shape[1:])
    try:
        t_out = np.broadcast_to(t_out, (K,) + out.shape)
    except ValueError:
        shape = t_out.shape if cls.batched_jvp else t_out.shape[1:]
        raise RuntimeError(f"{cls.__name__}.jvp returned a tangent of shape {shape} "
                           f"for an output of shape {out.shape}") from None
    out._tangent = (_state.forward, t_out)


@contextlib.contextmanager
def _forward_mode(seeds: Sequence[tuple]) -> Iterator[None]:
    """Inside, ops push tangents; `seeds` are pairs (tensor, tangent (K, *tensor.shape))."""
    if _state.forward is not None:
        raise RuntimeError("jvp: forward mode inside forward mode (nested jvp) is not supported")
    token = object()
    for t, tangent in seeds:
        t._tangent = (token, tangent)
    _state.forward = token
    try:
        yield
    finally:
        _state.forward = None
        for t, _ in seeds:
            t._tangent = None


def jvp(fn: Any, primals: Sequence, tangents: Sequence) -> tuple[Tensor, np.ndarray]:
    """fn(*primals) and its directional derivative J·v for v = tangents, in ONE forward pass.

    As jax.jvp / torch.func.jvp: primals and tangents are tuples of Tensors or arrays of equal
    shapes; fn returns a Tensor. Each op applies its jvp rule as it runs: no backward, no differences.
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    xs = tuple(Tensor(p) for p in primals)  # constants of their own: the tangents say how they move
    seeds = []
    for k, (x, v) in enumerate(zip(xs, tangents)):
        if not _float_dtype(x.dtype):
            raise TypeError(f"jvp: primal {k} has dtype {x.dtype}; only floating-point primals have tangents")
        v = np.asarray(_data(v), dtype=x.dtype)
        if v.shape != x.shape:
            raise ValueError(f"jvp: tangent {k} has shape {v.shape} but its primal has shape {x.shape}")
        seeds.append((x, v[None]))  # one direction: K = 1
    with _forward_mode(seeds):
        out = fn(*xs)
        if not isinstance(out, Tensor):
            raise TypeError(f"jvp: fn must return a Tensor, got {type(out).__name__}")
        tangent = _tangent_of(out)
    out._tangent = None
    return out, (np.zeros_like(out.data) if tangent is None else np.array(tangent[0]))


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


# The ops need Tensor and Function defined above; Tensor's methods need the ops.
from .function import (Abs, Add, Clip, Div, Exp, GetItem, Log, LogSoftmax, MatMul, Max,  # noqa: E402
                       Mean, Mul, Neg, Pow, Relu, Reshape, Sigmoid, Softmax, Sqrt, Sub, Sum,
                       Tanh, Transpose)
