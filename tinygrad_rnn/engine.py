"""The engine: graph nodes (Function, the base of every op), the backward runner and forward mode.

Early tinygrad's Function/ctx pattern (PyTorch's torch.autograd.Function): an op's ctx is its graph node.
Nodes link to nodes, not to the tensors between them, as PyTorch's graph does (Node.next_functions): a
node keeps what its backward reads (saved_tensors) and the shape of its output, so an intermediate array
that no backward reads is freed as soon as the caller lets go of its tensor. Leaves (parameters, inputs)
are linked as themselves. Backward visits nodes newest first from a heap of creation numbers, as
PyTorch's engine does: no recursion, any depth. Forward mode (jax.jvp, torch.func.jvp) needs no graph:
each op pushes its tangent on as it runs.

The engine does not import the Tensor class built on top of it (tensor.py): tensor.py hands it over
with use_tensor_class, and the ops (function.py) build on the engine alone.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import sys
from typing import Any, Iterator, Optional, Sequence

import numpy as np

__all__ = ["Function", "SparseGrad", "OuterGrad", "no_grad", "scope", "detect_anomaly", "is_grad_enabled",
           "jvp", "run_backward", "use_tensor_class", "checkpoint", "Checkpoint"]

Tensor: Any = None  # the class of the values ops take and make; tensor.py sets it (use_tensor_class)


def use_tensor_class(cls: type) -> None:
    """Make cls the class Function.apply wraps its inputs in and builds its outputs as (tensor.py's Tensor)."""
    global Tensor
    Tensor = cls


class _State:
    """Global switches read on every op (one object, so the hot path does one attribute lookup)."""
    __slots__ = ("grad_enabled", "scope", "anomaly", "forward", "consumable")

    def __init__(self) -> None:
        self.grad_enabled = True
        self.scope = ""      # "t=3/lstm" while inside scope("t=3") and scope("lstm")
        self.anomaly = False
        self.forward = None  # inside forward mode: the token that marks this run's tangents
        self.consumable = False  # inside a backward that frees saved arrays: an op may reuse its own


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

    The node's links: `inputs`, one per input, the input's own node, or the input itself for a leaf
    (a parameter, a constant). `parents` gives them as tensors, for walks over the graph (pictures, checks).
    The engine sets inputs, needs_input_grad, saved_tensors, scope, seq and _-named fields on the node
    after forward: a ctx attribute of one's own needs another name.
    """
    # Subclasses without __slots__ get a __dict__, so a user's ctx takes any attribute.
    # The engine's own fields are _-named, so a user's ctx.grad or ctx.retain stays the user's.
    __slots__ = ("inputs", "needs_input_grad", "saved_tensors", "scope", "seq", "_out_like", "_out_name", "_retain",
                 "_grad", "_ghost")
    # True: jvp takes each tangent with a leading axis of directions, (K, *input.shape), and returns
    # (K, *output.shape), as the built-in ops do (RTRL pushes one direction per parameter entry).
    # False (a rule of one's own): jvp sees one direction at a time, shaped like the inputs.
    batched_jvp = False
    requires_grad = True  # read as a tensor's, by the backward runner: a node exists because a gradient is wanted
    _version = 0  # a node's output is never edited in place (see Tensor._bump_version): read as a leaf's

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

    def may_reuse_saved(self) -> bool:
        """True inside a backward after which the saved arrays are freed (no retain_graph): the backward
        may then write its gradient into an array it saved itself, instead of allocating one more."""
        return _state.consumable

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def parents(self) -> tuple:
        """The inputs as tensors: leaves as themselves, an op's output as output()."""
        return tuple([p.output() if isinstance(p, Function) else p for p in self.inputs])

    @parents.setter
    def parents(self, tensors: Sequence) -> None:  # rewire the node (analysis points ops at copies θ_t)
        self.inputs = tuple([p if p._ctx is None else p._ctx for p in tensors])

    def output(self) -> "Tensor":
        """A tensor standing for the one this op made, with its name, shape, dtype and .grad (a retained
        gradient lives on the node, see retain_grad); an output over 64 bytes (8 float64 numbers) reads NaN:
        the graph does not keep values (PyTorch's neither), they are the caller's while it holds the tensor."""
        out = self._ghost
        if out is None:
            out = self._ghost = Tensor.__new__(Tensor)
            out.data, out._grad, out.requires_grad, out._ctx = self._out_like, None, True, self
            out._name, out._version, out._tangent = self._out_name, 0, None
        return out

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
        out._grad = out._name = out._tangent = None
        out._version = 0
        needs = tuple([t.requires_grad for t in inputs])
        if True in needs and _state.grad_enabled:
            ctx.inputs = tuple([t if t._ctx is None else t._ctx for t in inputs])
            ctx.needs_input_grad = _NEEDS.setdefault(needs, needs)  # one shared tuple per pattern: 80 B less a node
            ctx.scope = _state.scope
            ctx.seq = next(_creation_order)
            if data.nbytes <= 64:  # a few numbers (a scalar loss): the values stay, for pictures
                ctx._out_like = data if data.base is None else data.copy()  # a view: copied, its base may be big
            else:  # _stand_in(data), its common case inline: this runs for every op
                like = _GHOSTS.get((data.shape, data.dtype))
                ctx._out_like = _stand_in(data) if like is None else like
            ctx._out_name = ctx._grad = ctx._ghost = None
            ctx._retain = False
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


def _stand_in(data: np.ndarray) -> np.ndarray:
    """An array with data's shape and dtype that holds no memory, every entry NaN (so a read of values
    that are gone shows), read-only; one per shape and dtype, shared: what a node knows of its output."""
    key = (data.shape, data.dtype)
    ghost = _GHOSTS.get(key)
    if ghost is None:
        if len(_GHOSTS) > 256:
            _GHOSTS.clear()
        nan = np.full(1, np.nan if data.dtype.kind in "fc" else 0, data.dtype).tobytes()  # bytes: read-only
        ghost = _GHOSTS[key] = np.ndarray(data.shape, data.dtype, nan, 0, (0,) * data.ndim)
    return ghost


_GHOSTS: dict = {}


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



def run_backward(root: "Tensor", seed: np.ndarray, retain_graph: bool) -> None:
    """Send gradients from root to the leaves, latest-created node first (as PyTorch's engine does).

    Nodes are numbered at creation, after their inputs, so taking the highest number waiting
    means every use of a node has already sent its gradient to it: a topological order from a
    heap, with no recursion and no separate sort. Without retain_graph, each node's saved arrays
    are freed once it has run; the nodes themselves stay, small, for pictures of the graph.
    """
    if root._ctx is None:  # a leaf is its own gradient
        _accumulate(root, seed)
        return
    first = root._ctx
    grads = {first: seed}  # node -> pending dL/d(its output), summed over the output's uses
    mine = set()           # nodes whose pending gradient is an array made here: later uses add in place
    outer_sums: dict = {}  # id(leaf) -> _OuterSum of its OuterGrad terms
    waiting = [(-first.seq, first)]
    anomaly = _state.anomaly
    _state.consumable = not retain_graph
    pop, push, refcount, ndarray = heapq.heappop, heapq.heappush, sys.getrefcount, np.ndarray  # local: hot loop
    try:
        while waiting:
            ctx = pop(waiting)[1]
            grad = grads.pop(ctx)
            mine.discard(ctx)
            if type(grad) is SparseGrad:  # its only share was a slice's: the zeros are built now, when they are needed
                grad = grad.dense(ctx._out_like)
            if ctx._retain:  # dL/d(this op's output), kept on the node: its tensor reads it as .grad
                ctx._grad = grad.copy() if ctx._grad is None else ctx._grad + grad
            if ctx.saved_tensors is _FREED:
                raise RuntimeError(
                    f"backward: trying to go through the graph a second time, but the arrays {ctx.name} "
                    "saved were freed by the first backward; call backward(retain_graph=True) the first time")
            inputs, seq = ctx.inputs, ctx.seq
            for parent in inputs:  # an input edited in place since this op saved it: stale arrays
                if parent._version > seq:
                    _check_not_stale(ctx, parent)
            input_grads = ctx.backward(ctx, grad)
            del grad
            if type(input_grads) is not tuple or len(input_grads) != len(inputs):
                input_grads = _as_grad_tuple(input_grads, ctx)
            else:  # a tuple of our own, so one the op keeps (its saved arrays, say) counts as a holder below
                input_grads = (*input_grads,)
            if not retain_graph and ctx.saved_tensors:
                ctx.saved_tensors = _FREED
            for parent, g in zip(inputs, input_grads):
                if g is None or not parent.requires_grad:
                    continue
                leaf = not isinstance(parent, Function)
                like = parent.data if leaf else parent._out_like
                fresh = False  # g is an array made here, that nobody else holds
                if type(g) is not ndarray or g.shape != like.shape:
                    if type(g) is OuterGrad:
                        if anomaly:
                            _check_finite(g.u, ctx)
                            _check_finite(g.v, ctx)
                        if leaf:  # the point of it: one product for many terms, see _OuterSum
                            total = outer_sums.get(id(parent))
                            if total is None:
                                total = outer_sums[id(parent)] = _OuterSum(parent)
                            total.add(g)
                            continue
                        g, fresh = g.dense(), True
                    elif type(g) is SparseGrad:
                        if anomaly:
                            _check_finite(g.values, ctx)
                        if leaf:  # the point of it: add into .grad, no dense zeros
                            if parent._grad is None:
                                parent._grad = np.zeros_like(parent.data)
                            g.add_to(parent._grad)
                            continue
                        pending = grads.get(parent)
                        if pending is None:  # the first share: kept sparse until a second arrives or the node
                            grads[parent] = g  # runs, so T row slices of T (…, 2H) states never densify at once
                            push(waiting, (-parent.seq, parent))
                            continue
                        if type(pending) is SparseGrad:  # a kept share meets a second: one sum of our own
                            pending = grads[parent] = pending.dense(like)
                            mine.add(parent)
                        if parent in mine:  # a slice's share into the sum we own: no zeros of its own
                            g.add_to(pending)
                            continue
                        g, fresh = g.dense(like), True
                    else:
                        g = _fit_shape(np.asarray(g), like.shape, ctx)
                if anomaly:
                    _check_finite(g, ctx)
                if leaf:
                    if parent._grad is not None:
                        parent._grad += g  # +=, never =: every use of a leaf adds its share
                    elif refcount(g) <= _SOLE_OWNER and g.base is None and g.dtype == parent.data.dtype:
                        parent._grad = g  # nobody else holds g: take it instead of copying (as PyTorch does)
                    else:
                        parent._grad = g.astype(parent.data.dtype)  # a copy: g may also be another input's
                else:
                    pending = grads.get(parent)
                    if pending is None:
                        grads[parent] = g
                        if fresh:
                            mine.add(parent)
                        push(waiting, (-parent.seq, parent))
                    else:
                        if type(pending) is SparseGrad:  # a kept slice's share: densified into a sum we own
                            pending = grads[parent] = pending.dense(like)
                            mine.add(parent)
                        if parent in mine and pending.dtype == g.dtype:
                            pending += g  # into the buffer we own, in place
                        else:
                            grads[parent] = pending + g
                            mine.add(parent)
            del input_grads, g
        for total in outer_sums.values():
            total.flush()
    finally:
        _state.consumable = False


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
        if leaf._grad is None:
            leaf._grad = total.astype(leaf.data.dtype, copy=False)  # a fresh array of our own: no copy
        else:
            leaf._grad += total


_OUTER_ROWS = 512  # rows an _OuterSum collects before one product


def _check_not_stale(ctx: Function, parent: Any) -> None:
    """Raise if ctx saved parent's array (or a view of it) before parent was edited in place; a view op's
    node (parent) stands for the tensor it views (see function.py's _View)."""
    while isinstance(parent, Function):
        parent = parent.inputs[0]
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
    if len(input_grads) != len(ctx.inputs):  # inputs, not parents: no stand-in tensors (they hold their node)
        raise RuntimeError(f"{ctx.name}.backward returned {len(input_grads)} gradients "
                           f"for {len(ctx.inputs)} inputs")
    return tuple(input_grads)


def _check_finite(g: np.ndarray, ctx: Function) -> None:
    if not np.isfinite(g).all():
        where = f" created in scope {ctx.scope!r}" if ctx.scope else " created outside any scope"
        raise RuntimeError(f"detect_anomaly: the backward of {ctx.name}{where} produced "
                           f"{'NaN' if np.isnan(g).any() else 'inf'} in its input gradient")


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum grad over the axes NumPy broadcasting added or stretched, back to `shape`."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


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


def _accumulate(tensor: Tensor, g: np.ndarray) -> None:
    """tensor.grad += g, never =: a tensor used twice gets both contributions."""
    if tensor._grad is None:
        # copy: g may be shared with another input (add sends the same array to both sides)
        tensor._grad = g.copy() if g.dtype == tensor.data.dtype else g.astype(tensor.data.dtype)
    else:
        tensor._grad += g


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
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"jvp: primal {k} has dtype {x.dtype}; only floating-point primals have tangents")
        v = np.asarray(v.data if isinstance(v, Tensor) else v, dtype=x.dtype)
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


# ---- recomputation instead of storage ---------------------------------------------------------------
# torch.utils.checkpoint(use_reentrant=False); Chen et al. 2016, "Training Deep Nets with Sublinear Memory
# Cost". Uses the backward runner only through Tensor.backward, as any caller does.
class Checkpoint(Function):
    """y = fn(*x) with none of fn's intermediates kept (forward under no_grad);
    dL/dx: fn runs again on copies of x with a graph, and that graph is differentiated with dL/dy as seed.
    Leaves fn closes over (parameters) get their share added into .grad by that inner backward, as PyTorch's.
    Several outputs travel as one flat array, split again by _Part nodes."""

    @staticmethod
    def forward(ctx, *arrays, fn, args):
        ctx.fn = fn  # the arguments, their tensors' places held by None: the saved arrays stand in for them
        ctx.places = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        ctx.args = tuple([None if isinstance(a, Tensor) else a for a in args])
        ctx.save_for_backward(*arrays[:len(ctx.places)])  # the inputs (not the anchor): all that is kept
        with no_grad():
            out = fn(*args)
        ctx.layout = None  # one output
        if isinstance(out, Tensor):
            return out.data
        if not isinstance(out, (tuple, list)) or not out or not all(isinstance(o, Tensor) for o in out):
            raise TypeError(f"checkpoint: fn must return a Tensor or a tuple of Tensors, got {type(out).__name__}")
        ctx.layout, start = [], 0
        for o in out:  # (start, end, shape, dtype) of each output in the flat array
            ctx.layout.append((start, start + o.data.size, o.shape, o.dtype))
            start += o.data.size
        return np.concatenate([o.data.ravel() for o in out])

    @staticmethod
    def backward(ctx, grad_out):
        grads = [grad_out] if ctx.layout is None else \
            [grad_out[a:b].reshape(shape) for a, b, shape, _ in ctx.layout]
        arrays, needs = ctx.saved_tensors, ctx.needs_input_grad
        copies = [Tensor(np.empty(0)) for _ in ctx.places]  # fresh leaves on the saved arrays (not copied)
        args = list(ctx.args)
        for i, c, a, need in zip(ctx.places, copies, arrays, needs):
            c.data, c.requires_grad = a, need and np.issubdtype(a.dtype, np.floating)
            args[i] = c
        with scope(ctx.scope) if ctx.scope else contextlib.nullcontext():
            out = ctx.fn(*args)
        outs = (out,) if ctx.layout is None else tuple(out)
        _backward_from(outs, grads)
        return tuple([c._grad for c in copies] + [None] * (len(needs) - len(copies)))  # None for the anchor


class _Part(Function):
    """y = z[a:b].reshape(shape): output k of a node that gives several as one flat array z (Checkpoint);
    dL/dz = g in [a:b], zero elsewhere."""

    @staticmethod
    def forward(ctx, z, a, b, shape, dtype):
        ctx.span, ctx.shape = slice(a, b), shape
        return z[a:b].reshape(shape).astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        return (SparseGrad(ctx.span, g.reshape(-1)),)

    @staticmethod
    def jvp(ctx, dz):
        return dz[ctx.span].reshape(ctx.shape)


class _Seeds(Function):
    """y = 0 from several tensors, so that one backward from y sends each its given gradient: dL/dx_k = g_k."""

    @staticmethod
    def forward(ctx, *arrays, grads):
        ctx.grads = grads
        return np.zeros(())

    @staticmethod
    def backward(ctx, g):
        return ctx.grads


def _backward_from(outputs: Sequence, grads: Sequence) -> None:
    """Backward from several tensors at once, output k seeded with grads[k] (one pass, as torch.autograd.backward);
    outputs without a graph are skipped. Runs inside another backward: keeps that one's switches."""
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
    if not pairs:
        return
    consumable = _state.consumable
    try:
        if len(pairs) == 1:
            pairs[0][0].backward(np.asarray(pairs[0][1], dtype=pairs[0][0].dtype))
        else:
            _Seeds.apply(*[o for o, _ in pairs], grads=tuple(np.asarray(g, dtype=o.dtype) for o, g in pairs)).backward()
    finally:
        _state.consumable = consumable


_ANCHOR: list = []  # one leaf that requires grad, so a checkpoint of constants still gets a node (see checkpoint)


def checkpoint(fn: Any, *args: Any) -> Any:
    """fn(*args) (Tensors in, a Tensor or tuple of Tensors out), keeping none of fn's intermediates: backward
    runs fn again and differentiates it (torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)).

    Memory: the inputs and outputs only, until backward, which then holds one run of fn's graph at a time.
    Outside a graph (no_grad) and in forward mode (jvp) fn simply runs. Randomness inside fn is the caller's.
    """
    if not _state.grad_enabled or _state.forward is not None:
        return fn(*args)
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not any(t.requires_grad for t in tensors):  # fn may still use parameters: only running it again tells
        if not _ANCHOR:
            _ANCHOR.append(Tensor(np.zeros(()), requires_grad=True, name="checkpoint"))
        tensors.append(_ANCHOR[0])
    out = Checkpoint.apply(*tensors, fn=fn, args=args)
    ctx = out._ctx
    if ctx.layout is None:
        return out
    return tuple([_Part.apply(out, a=a, b=b, shape=shape, dtype=dtype) for a, b, shape, dtype in ctx.layout])
