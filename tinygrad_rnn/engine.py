"""The engine: graph nodes (Function, the base of every op), the backward runner and forward mode.

Early tinygrad's Function/ctx pattern (PyTorch's torch.autograd.Function): an op's ctx is its graph node.
Nodes link to nodes, not to the tensors between them, as PyTorch's graph does (Node.next_functions): a
node keeps what its backward reads (saved_tensors) and the shape of its output, so an intermediate array
that no backward reads is freed as soon as the caller lets go of its tensor. Leaves (parameters, inputs)
are linked as themselves. Backward (run_backward) visits nodes newest first from a heap of creation
numbers, as PyTorch's engine does: no recursion, any depth; what arrives for a node or leaf is summed by
GradSums, the one piece that knows the kinds of gradient (dense, 0-d, sparse, outer-product factors).
walk() is the one walk over a graph, for pictures, checks and analysis. Forward mode (jax.jvp,
torch.func.jvp) needs no graph: each op pushes its tangent on as it runs.

Gradients of gradients (create_graph=True, as PyTorch's): the same backward loop, but the gradient
flowing is a Tensor and each op's rule runs on Tensors (g, and its saved arrays as Tensors of the
graph), so the rule records ordinary ops and the result can be differentiated again, to any order.
A Function takes part when its backward is written with operators and function.py's rules' namespace
instead of np.*: it says so with the class attribute `differentiable_backward = True`, and names what
it saved with `saves` (one entry per saved array: input index i, "y" for its output, None for a
constant such as a mask). Any other Function refuses under create_graph, naming itself.

The engine does not import the Tensor class built on top of it (tensor.py): tensor.py hands it over
with use_tensor_class, and the ops (function.py) build on the engine alone.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import weakref
from typing import Any, Iterator, Optional, Sequence

import numpy as np

__all__ = ["Function", "SparseGrad", "OuterGrad", "no_grad", "scope", "detect_anomaly", "is_grad_enabled",
           "jvp", "run_backward", "grad", "walk", "GradSums", "use_tensor_class", "checkpoint", "Checkpoint"]

Tensor: Any = None  # the class of the values ops take and make; tensor.py sets it (use_tensor_class)


def use_tensor_class(cls: type) -> None:
    """Make cls the class Function.apply wraps its inputs in and builds its outputs as (tensor.py's Tensor)."""
    global Tensor
    Tensor = cls


class _State:
    """Global switches read on every op (one object, so the hot path does one attribute lookup)."""
    __slots__ = ("grad_enabled", "scope", "anomaly", "forward", "consumable", "tape", "backward_pass")

    def __init__(self) -> None:
        self.grad_enabled = True
        self.scope = ""      # "t=3/lstm" while inside scope("t=3") and scope("lstm")
        self.anomaly = False
        self.forward = None  # inside forward mode: the token that marks this run's tangents
        self.consumable = False  # inside a backward that frees saved arrays: an op may reuse its own
        self.tape = None  # inside tr.trace: called with every op applied (trace.py records the program)
        self.backward_pass = 0  # inside run_backward: its number (an op's backward tells one pass from the next)


_state = _State()
_creation_order = itertools.count()  # a node is always numbered after its inputs
_backward_passes = itertools.count(1)


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
    # True: backward is written with operators and function.py's rules' namespace, so under create_graph it
    # runs on Tensors and is differentiated again; `saves` then says what each saved array is (input index,
    # "y" the output, None a constant). False (an ndarray backward of one's own): create_graph refuses it.
    differentiable_backward = False
    saves: Optional[tuple] = None
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

    def input_tensor(self, i: int, value: np.ndarray) -> "Tensor":
        """Under create_graph: input i as a Tensor of the graph holding `value` (its value, which a rule that
        did not save it recomputes): the leaf itself, or a tensor standing for the input's node."""
        parent = self.inputs[i]
        return _graph_tensor(value, parent) if isinstance(parent, Function) else parent

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
        out = None if self._ghost is None else self._ghost()
        if out is None:
            out = Tensor.__new__(Tensor)
            out.data, out._grad, out.requires_grad, out._ctx = self._out_like, None, True, self
            out._name, out._version, out._tangent = self._out_name, 0, None
            self._ghost = weakref.ref(out)  # one stand-in while anyone holds it; a weak link: no node<->tensor cycle
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
            data = _forward_output(cls, data, kwargs)
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
        if _state.tape is not None:  # inside tr.trace: the op, its inputs and keywords become a program line
            _state.tape(cls, ctx, inputs, kwargs, out)
        return out

    def __repr__(self) -> str:
        where = f" in {self.scope!r}" if getattr(self, "scope", "") else ""
        return f"<{self.name}{where}>"


def _forward_output(cls: type, data: Any, kwargs: dict) -> np.ndarray:
    """A forward's result that is not an ndarray, as one (a NumPy scalar); a TypeError naming the op when
    it is not numbers (None, a Tensor: say from a Tensor passed as a keyword argument)."""
    if not isinstance(data, Tensor):
        array = np.asarray(data)
        if array.dtype.kind in "biufc":
            return array
    tensors = [k for k, v in kwargs.items() if isinstance(v, Tensor)]
    why = (f"; the keyword argument {', '.join(tensors)} is a Tensor: pass tensors as positional inputs "
           "(forward gets their arrays, backward returns their gradients)" if tensors else "")
    raise TypeError(f"{cls.__name__}.forward returned {type(data).__name__}, not an array of numbers{why}")


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



# ---- backward -------------------------------------------------------------------------------------
class GradSums:
    """dL/dv for every node and leaf v that backward has reached, summed over v's uses as their shares
    arrive (PyTorch's InputBuffer): the one place that knows what an op's backward may send an input.

    add(v, g, like) takes, one kind a line:
    - an ndarray of v's shape, 0-d included (a 0-d sum is kept an array, never a NumPy scalar);
    - an ndarray larger by broadcasting, or of another dtype: summed back to v's shape, cast to v's dtype;
    - a SparseGrad: a lone one stays sparse until a second share or pop (T slices of T states never densify);
    - an OuterGrad: its factors kept, _OUTER_ROWS rows at most, then summed in one (H, N) @ (N, D) product;
    - a Tensor (create_graph): summed by the graph's own ops, so the sum has a graph too.
    pop(v, like) returns an array of v's shape and dtype. A first dense share is held as it came (it may be
    another input's too); the sum becomes an array of our own when a second share is added into it.
    """
    __slots__ = ("pending", "owned", "outer")

    def __init__(self) -> None:
        self.pending: dict = {}  # v -> ndarray, or a lone SparseGrad
        self.owned: set = set()  # v whose pending array is ours: later shares add into it in place
        self.outer: dict = {}    # v -> [OuterGrad terms, their rows]

    def add(self, v: Any, g: Any, like: np.ndarray, op: Optional[Function] = None) -> bool:
        """Add one share g of dL/dv (like: an array of v's shape and dtype); True if it is v's first."""
        kind = type(g)
        if kind is np.ndarray and g.dtype is like.dtype and g.shape == like.shape:  # the common case, first
            pending = self.pending.get(v)
            if pending is None:  # v's first share, as it came
                self.pending[v] = g
                return not self.outer or v not in self.outer
            if v in self.owned:
                pending += g  # in place, into our own array (ndarray's += keeps a 0-d array an array)
            else:
                self._add_dense(v, g, like, False)
            return False
        first = v not in self.pending and v not in self.outer
        if kind is SparseGrad:
            pending = self.pending.get(v)
            if pending is None:
                self.pending[v] = g
            else:
                g.add_to(pending if v in self.owned else self._own(v, like))
        elif kind is OuterGrad:
            terms = self.outer.get(v)
            if terms is None:
                terms = self.outer[v] = [[], 0]
            terms[0].append(g)
            terms[1] += g.u.size // g.u.shape[-1]
            if terms[1] >= _OUTER_ROWS:  # bounded memory however long the sequence
                self._add_dense(v, self._outer_sum(v, like), like, True)
        else:
            if kind is not np.ndarray or g.shape != like.shape or g.dtype != like.dtype:
                if kind is Tensor:  # create_graph: a share with its own graph, summed by the graph's Add
                    g = g if g.shape == like.shape else _fit_tensor(g, like.shape, op)
                    pending = self.pending.get(v)
                    self.pending[v] = g if pending is None else pending + g
                    return first
                g = _fit(g, like, op)
            self._add_dense(v, g, like, False)
        return first

    def pop(self, v: Any, like: np.ndarray, keep: bool = False) -> np.ndarray:
        """v's summed gradient, v forgotten; keep: an array the caller may keep and add into (ours, or a copy)."""
        if self.outer and v in self.outer:
            self._add_dense(v, self._outer_sum(v, like), like, True)
        pending = self.pending.pop(v)
        if type(pending) is SparseGrad:
            return pending.dense(like)
        if v in self.owned:
            self.owned.remove(v)
        elif keep and type(pending) is np.ndarray:  # a share as it came: it may be another input's too
            return pending.copy()
        return pending

    def waiting(self) -> list:
        """Every v with a share not yet popped."""
        return [*self.pending, *[v for v in self.outer if v not in self.pending]]

    def _add_dense(self, v: Any, g: np.ndarray, like: np.ndarray, ours: bool) -> None:
        pending = self.pending.get(v)
        if pending is None:
            self.pending[v] = g
            if ours:
                self.owned.add(v)
        elif v in self.owned:
            pending += g  # in place, into our own array (ndarray's += keeps a 0-d array an array)
        elif type(pending) is SparseGrad:
            buffer = g if ours else g.copy()
            pending.add_to(buffer)
            self.pending[v] = buffer
            self.owned.add(v)
        else:
            total = pending + g  # a new array of our own; for 0-d arrays + gives a NumPy scalar: an array again
            self.pending[v] = total if type(total) is np.ndarray else np.asarray(total)
            self.owned.add(v)

    def _own(self, v: Any, like: np.ndarray) -> np.ndarray:
        """v's pending sum as an array of our own, to add a share into."""
        pending = self.pending[v]
        if v not in self.owned:
            pending = self.pending[v] = pending.dense(like) if type(pending) is SparseGrad else pending.copy()
            self.owned.add(v)
        return pending

    def _outer_sum(self, v: Any, like: np.ndarray) -> np.ndarray:
        """sum_k u_k^T v_k of v's OuterGrad terms, as one (H, N) @ (N, D) product instead of N outer products."""
        terms = self.outer.pop(v)[0]
        if len(terms) == 1:
            total = terms[0].dense()
        else:
            rows = [g.rows() for g in terms]
            total = np.dot(np.concatenate([u for u, _ in rows]).T, np.concatenate([w for _, w in rows]))
        return total.astype(like.dtype, copy=False)


_OUTER_ROWS = 512  # rows of OuterGrad factors collected before one product


def run_backward(roots: Sequence, seeds: Sequence, retain_graph: bool = False, inputs: Optional[Sequence] = None,
                 create_graph: bool = False):
    """Send dL/d(root) (the seeds) to every leaf, latest-created node first (as PyTorch's engine does).

    Nodes are numbered at creation, after their inputs, so taking the highest number waiting means every
    use of a node has already sent its share: a topological order from a heap, no recursion, no sort.
    Leaves' .grad get their gradients added (+=); with `inputs` (tr.grad) those tensors' gradients are
    returned instead, only the nodes that lead to them run, and no .grad is touched. Without retain_graph a
    node's saved arrays are freed once it has run; the nodes stay, small, for pictures of the graph. With
    create_graph the seeds and gradients are Tensors and each rule runs on Tensors (_graph_input_grads),
    recording the ops of a graph of their own.
    """
    sums, waiting, anomaly = GradSums(), [], _state.anomaly
    useful, runs = (None, None) if inputs is None else _leading_to(roots, inputs)
    for root, seed in zip(roots, seeds):
        if sums.add(_vertex(root), seed, root.data) and root._ctx is not None:
            heapq.heappush(waiting, (-root._ctx.seq, root._ctx))
    wanted = None if inputs is None else {_vertex(t): None for t in inputs}
    rule = _graph_input_grads if create_graph else _input_grads
    grad_enabled, outer_pass, _state.consumable = _state.grad_enabled, _state.backward_pass, not retain_graph
    try:
        _state.grad_enabled = grad_enabled or create_graph  # create_graph: the rules' ops are recorded
        _state.backward_pass = next(_backward_passes)
        add, take, push, pop = sums.add, sums.pop, heapq.heappush, heapq.heappop  # local names: the hot loop
        while waiting:
            ctx = pop(waiting)[1]
            keep = wanted is not None and ctx in wanted
            grad = take(ctx, ctx._out_like, keep)
            if keep:
                wanted[ctx] = grad
            elif wanted is None and ctx._retain:  # dL/d(this op's output) kept on the node: its tensor's .grad
                value = grad.data if create_graph else grad
                ctx._grad = value.copy() if ctx._grad is None else np.add(ctx._grad, value, out=ctx._grad)
            if runs is not None and ctx not in runs:  # tr.grad: no input of this node leads to a wanted tensor
                continue
            for parent, g in zip(ctx.inputs, rule(ctx, grad, retain_graph)):
                if g is None or not parent.requires_grad or useful is not None and parent not in useful:
                    continue
                if anomaly:
                    _check_finite(g, ctx)
                if isinstance(parent, Function):
                    if add(parent, g, parent._out_like, ctx):
                        push(waiting, (-parent.seq, parent))
                else:
                    add(parent, g, parent.data, ctx)
        for leaf in sums.waiting():  # every node has run: what is left are leaves
            if wanted is not None:
                if leaf in wanted:
                    wanted[leaf] = sums.pop(leaf, leaf.data, keep=True)
                continue
            g = sums.pop(leaf, leaf.data, keep=leaf._grad is None)
            g = g.data.copy() if create_graph else g  # t.backward(create_graph=True): .grad stays an ndarray
            if leaf._grad is None:
                leaf._grad = g
            else:
                leaf._grad += g  # +=, never =: gradients accumulate over backward calls, as PyTorch's
    finally:
        _state.consumable = False
        _state.grad_enabled, _state.backward_pass = grad_enabled, outer_pass
    return None if wanted is None else [wanted[_vertex(t)] for t in inputs]


def _vertex(t: Any) -> Any:
    """A tensor's place in the graph: its op's node, or itself for a leaf."""
    return t if t._ctx is None else t._ctx


def _input_grads(ctx: Function, grad: np.ndarray, retain_graph: bool) -> tuple:
    """ctx's backward on dL/d(its output): one gradient (or None) per input. Its saved arrays are freed
    afterwards unless retain_graph; stale (edited in place) or already freed ones raise."""
    if ctx.saved_tensors is _FREED:
        raise RuntimeError(
            f"backward: trying to go through the graph a second time, but the arrays {ctx.name} "
            "saved were freed by the first backward; call backward(retain_graph=True) the first time")
    for parent in ctx.inputs:  # an input edited in place since this op saved it: stale arrays
        if parent._version > ctx.seq:
            _check_not_stale(ctx, parent)
    input_grads = ctx.backward(ctx, grad)
    if type(input_grads) is not tuple or len(input_grads) != len(ctx.inputs):
        input_grads = _as_grad_tuple(input_grads, ctx)
    if not retain_graph and ctx.saved_tensors:
        ctx.saved_tensors = _FREED
    return input_grads


def _graph_input_grads(ctx: Function, grad: "Tensor", retain_graph: bool) -> tuple:
    """create_graph's _input_grads: ctx's rule on Tensors, its saved arrays handed to it as Tensors of the graph
    (a saved input is that input, a saved output ctx's own, see _saved_as_tensors); an ndarray rule refuses."""
    if not ctx.differentiable_backward:
        instead = getattr(ctx, "create_graph_hint", None) or (
            "write it with operators and function.py's rules' namespace and set differentiable_backward = True")
        raise RuntimeError(f"{ctx.name}: its backward works on ndarrays, so it cannot be differentiated again "
                           f"(create_graph=True); {instead}")
    arrays = ctx.saved_tensors
    if arrays is not _FREED and arrays:
        for parent in ctx.inputs:  # stale arrays are found on the arrays themselves, before they become Tensors
            if parent._version > ctx.seq:
                _check_not_stale(ctx, parent)
        ctx.saved_tensors = _saved_as_tensors(ctx, arrays)
    try:
        input_grads = _input_grads(ctx, grad, True)
    finally:
        ctx.saved_tensors = arrays
    if not retain_graph and arrays:
        ctx.saved_tensors = _FREED
    for g in input_grads:
        if g is not None and not isinstance(g, Tensor):
            raise RuntimeError(f"{ctx.name}.backward returned a {type(g).__name__} under create_graph; "
                               "a differentiable backward returns Tensors (see function.py's rules' namespace)")
    return input_grads


def _saved_as_tensors(ctx: Function, arrays: tuple) -> tuple:
    """ctx's saved arrays as its rule reads them under create_graph, by `saves`: input i as that input (a leaf)
    or a tensor standing for its node, "y" one standing for ctx's output, None (a constant) the array itself."""
    saves = ctx.saves
    if saves is None or len(saves) != len(arrays):
        raise RuntimeError(f"{ctx.name}: differentiable_backward is set but `saves` does not say what each of its "
                           f"{len(arrays)} saved arrays is (an input index, \"y\" for the output, None for a constant)")
    return tuple([a if role is None else _graph_tensor(a, ctx) if role == "y" else ctx.input_tensor(role, a)
                  for role, a in zip(saves, arrays)])


def _graph_tensor(value: np.ndarray, node: Function) -> "Tensor":
    """A tensor of the graph standing for node's output, holding its value (the node keeps none): what a
    create_graph rule reads for a saved input or output, so the ops it records link to that node. Inside
    forward mode it carries the node's tangent (hvp: forward mode over this backward)."""
    t = Tensor.__new__(Tensor)
    t.data, t._grad, t.requires_grad, t._ctx = value, None, True, node
    t._name, t._version, t._tangent = None, 0, None if _node_tangents is None else _node_tangents.get(node)
    return t


def _leading_to(roots: Sequence, inputs: Sequence) -> tuple[set, set]:
    """tr.grad's part of the graph: (the vertices from which one of inputs can be reached, itself included;
    the nodes among them whose backward must run, those with such an input). A wanted tensor's own op runs
    only if it leads further to another: so .grad is never touched, the rest of the graph is left as it
    was, and an op whose backward cannot be differentiated again is not asked to."""
    targets = {_vertex(t) for t in inputs}
    useful: set = set()
    runs: set = set()
    for root in roots:
        for v in walk(root):  # inputs before the ops that use them
            leads = isinstance(v, Function) and any(p in useful for p in v.inputs)
            if leads:
                runs.add(v)
            if leads or v in targets:
                useful.add(v)
    return useful, runs


def _fit_tensor(g: "Tensor", shape: tuple, op: Optional[Function]) -> "Tensor":
    """A Tensor share summed back over broadcast axes to shape (create_graph's _fit), by the graph's ops."""
    from .function import sum_to  # the rules' namespace sits on the engine: imported when first needed
    try:
        fitted = sum_to(g, shape)
    except (ValueError, IndexError):
        fitted = None
    if fitted is None or fitted.shape != shape:
        who = "backward: the seed is a gradient" if op is None else f"{op.name}.backward returned a gradient"
        raise RuntimeError(f"{who} of shape {g.shape} for an input of shape {shape}")
    return fitted


def walk(root: Any) -> list:
    """Every vertex of the graph behind root, each once, inputs before the ops that use them: op nodes
    (Function) and leaf tensors, in a stable order (first inputs first). An explicit stack: any depth.
    It reads the nodes' links only: no tensors are made, so a walk leaves no reference cycles behind."""
    order, seen, stack = [], set(), [(_vertex(root), False)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
        elif id(v) not in seen:
            seen.add(id(v))
            stack.append((v, True))
            if isinstance(v, Function):  # reversed, so the first input is visited first
                stack.extend((p, False) for p in reversed(v.inputs) if id(p) not in seen)
    return order


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: Optional[bool] = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """The gradients of outputs with respect to inputs, returned (no .grad touched), as torch.autograd.grad.

    outputs, inputs: a Tensor or a sequence of them; grad_outputs: one seed per output (None: 1.0 for a
    one-entry output). An input the outputs do not depend on raises, unless allow_unused (then None).
    create_graph=True returns Tensors with a graph of their own, to be differentiated again (inputs may be
    intermediates, h_t say); retain_graph defaults to create_graph.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for k, t in enumerate([*outputs, *inputs]):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: outputs and inputs must be Tensors, got a {type(t).__name__}")
    seeds = []
    for k, (out, seed) in enumerate(zip(outputs, grad_outputs)):
        if not out.requires_grad:
            raise RuntimeError(f"grad: output {k} does not require grad and has no graph")
        if seed is None:
            if out.data.size != 1:
                raise RuntimeError(f"grad: output {k} has shape {out.shape}; a non-scalar output needs "
                                   "grad_outputs")
            seed = np.ones_like(out.data)
        if not (create_graph and isinstance(seed, Tensor)):  # a Tensor seed keeps its graph under create_graph
            seed = np.asarray(seed.data if isinstance(seed, Tensor) else seed, dtype=out.dtype)
        if seed.shape != out.shape:
            raise ValueError(f"grad: grad_outputs[{k}] has shape {seed.shape} but output {k} has shape {out.shape}")
        seeds.append(Tensor(seed) if create_graph and not isinstance(seed, Tensor) else seed)
    for k, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {k}{_called(t)} does not require grad")
    retain = create_graph if retain_graph is None else retain_graph
    found = run_backward(outputs, seeds, bool(retain), inputs, create_graph)
    result = []
    for k, (t, g) in enumerate(zip(inputs, found)):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {k}{_called(t)} is not used by the outputs' graph "
                               "(allow_unused=True returns None for it)")
        result.append(None if g is None else g if create_graph else Tensor(g))
    return tuple(result)


def _called(t: Any) -> str:
    return f" ({t.name!r})" if t.name else ""


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


def _check_finite(g: Any, ctx: Function) -> None:
    """detect_anomaly's check of one gradient an op's backward sent (dense, sparse, outer factors, a Tensor)."""
    parts = (g.u, g.v) if type(g) is OuterGrad else (g.values,) if type(g) is SparseGrad else \
        (g.data,) if isinstance(g, Tensor) else (np.asarray(g),)
    for part in parts:
        if not np.isfinite(part).all():
            where = f" created in scope {ctx.scope!r}" if ctx.scope else " created outside any scope"
            raise RuntimeError(f"detect_anomaly: the backward of {ctx.name}{where} produced "
                               f"{'NaN' if np.isnan(part).any() else 'inf'} in its input gradient")


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum grad over the axes NumPy broadcasting added or stretched, back to `shape`."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _fit(g: Any, like: np.ndarray, op: Optional[Function]) -> np.ndarray:
    """g summed back to like's shape (over the axes broadcasting added) and cast to its dtype, as an array."""
    g = np.asarray(g)
    try:
        fitted = _unbroadcast(g, like.shape)
    except (ValueError, IndexError):  # fewer axes than the input, or ones that cannot be summed away
        fitted = None
    if fitted is None or np.shape(fitted) != like.shape:
        who = "backward: the seed is a gradient" if op is None else f"{op.name}.backward returned a gradient"
        raise RuntimeError(f"{who} of shape {g.shape} for an input of shape {like.shape}")
    return np.asarray(fitted, dtype=like.dtype)  # summing to shape () gives a NumPy scalar: an array again


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
    if _node_tangents is not None and out._ctx is not None:  # for a create_graph backward inside (hvp)
        _node_tangents[out._ctx] = out._tangent


_node_tangents: Optional[dict] = None  # node -> its output's (token, tangent), in _forward_mode(keep_nodes=True)


@contextlib.contextmanager
def _forward_mode(seeds: Sequence[tuple], keep_nodes: bool = False) -> Iterator[None]:
    """Inside, ops push tangents; `seeds` are pairs (tensor, tangent (K, *tensor.shape)). keep_nodes: graph
    nodes keep their output's tangent too, until the end (tr.func's forward over reverse reads them)."""
    global _node_tangents
    if _state.forward is not None:
        raise RuntimeError("jvp: forward mode inside forward mode (nested jvp) is not supported")
    token = object()
    for t, tangent in seeds:
        t._tangent = (token, tangent)
    _state.forward = token
    _node_tangents = {} if keep_nodes else None
    try:
        yield
    finally:
        _state.forward = None
        _node_tangents = None
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
        grad_enabled, _state.grad_enabled = _state.grad_enabled, True  # a graph to differentiate, even when
        try:                                                             # backward() itself runs under no_grad
            with scope(ctx.scope) if ctx.scope else contextlib.nullcontext():
                out = ctx.fn(*args)
        finally:
            _state.grad_enabled = grad_enabled
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


def _backward_from(outputs: Sequence, grads: Sequence) -> None:
    """Backward from several tensors at once, output k seeded with grads[k] (one pass, as torch.autograd.backward);
    outputs without a graph are skipped. Runs inside another backward: keeps that one's switches."""
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
    if not pairs:
        return
    consumable = _state.consumable
    try:
        run_backward([o for o, _ in pairs], [np.asarray(g, dtype=o.dtype) for o, g in pairs])
    finally:
        _state.consumable = consumable


_ANCHOR: list = []  # one leaf that requires grad, so a checkpoint of constants still gets a node (see checkpoint)


def checkpoint(fn: Any, *args: Any) -> Any:
    """fn(*args) (Tensors in, a Tensor or tuple of Tensors out), keeping none of fn's intermediates: backward
    runs fn again and differentiates it (torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)).

    Memory: the inputs and outputs only, until backward, which then holds one run of fn's graph at a time.
    Outside a graph (no_grad) and in forward mode (jvp) fn simply runs. Randomness inside fn is the caller's.
    Under tr.grad the checkpoint's own inputs get their gradients; leaves fn closes over get theirs in .grad.
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
