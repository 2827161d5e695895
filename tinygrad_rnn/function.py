"""The built-in ops: one Function subclass each; forward, vector-Jacobian product (backward) and
Jacobian-vector product (jvp) side by side: the same Jacobian, applied from either side.

Each docstring is the math: g is dL/d(output) for backward; da, db are the inputs' tangents (how
they move along a direction) and dy the output's for jvp. A jvp rule gets its tangents with a
leading axis of K directions, (K, *shape), and None for an input that does not move.
Shapes are checked here, where the op's name is known, so a mismatch reads
`matmul: (3, 4) @ (5, 6): inner dimensions 4 and 5 differ`.
Gradients over broadcast axes are summed back to each input's shape by the engine.

Each backward is written once, for both of the engine's modes (JAX's rules in lax ops, PyTorch's
derivatives.yaml): with Python operators, the methods ndarray and Tensor share (.T, .reshape, .sum,
.transpose) and the functions of the rules' namespace below, which run NumPy on ndarrays and the ops
here on Tensors. A first-order backward gets ndarrays (fast, as ever); under create_graph=True the
engine passes g and the saved values as Tensors of the graph (`saves` says which saved array is which
input, or the output "y"; None marks a constant such as a mask), so the same rule records ops and its
result can be differentiated again, to any order.
`lowering` is the op as a line of NumPy for tr.trace's program (tracer.py): {y} the output, {a} {b} {c}
the inputs, {ctx.…} the node's fields, {kw[…]} the op's keywords, {dtype} the output's dtype, {dot} a @ b.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import engine
from .engine import Function, OuterGrad, SparseGrad

__all__ = ["Add", "Sub", "Mul", "Div", "Pow", "Neg", "MatMul", "Affine", "Exp", "Log", "Tanh", "Sigmoid",
           "Relu", "Sqrt", "Abs", "Clip", "Sum", "Mean", "Max", "Softmax", "LogSoftmax", "Reshape",
           "Transpose", "GetItem", "Concat", "Stack", "Where", "BroadcastTo", "ScatterAdd"]


# ---- the rules' namespace: NumPy for ndarrays (first order), the ops below for Tensors (create_graph) ----
# A rule tells the modes apart by isinstance(x, engine.Tensor), written out: a helper would add a call per op.
def value(x):
    """The array of x, a Tensor or an array: for masks and other constants a rule derives from its values."""
    return x.data if isinstance(x, engine.Tensor) else x


def exp(x):
    return Exp.apply(x) if isinstance(x, engine.Tensor) else np.exp(x)


def log(x):
    return Log.apply(x) if isinstance(x, engine.Tensor) else np.log(x)


def sigmoid(x):
    return Sigmoid.apply(x) if isinstance(x, engine.Tensor) else _sigmoid(x)


def where(cond, a, b):
    """a where cond, else b; cond is a constant (no gradient flows into a choice)."""
    if not (isinstance(a, engine.Tensor) or isinstance(b, engine.Tensor)):
        return np.where(cond, a, b)
    like = a if isinstance(a, engine.Tensor) else b
    a, b = (x if isinstance(x, engine.Tensor) else like._lift(x) for x in (a, b))
    return Where.apply(value(cond), a, b)


def broadcast_to(x, shape: tuple):
    """x repeated over the axes that shape adds or stretches (the backward of a sum)."""
    if not isinstance(x, engine.Tensor):
        return np.broadcast_to(x, shape)
    return x if x.shape == tuple(shape) else BroadcastTo.apply(x, shape=tuple(shape))


def sum_to(x, shape: tuple):
    """x summed over the axes broadcasting added or stretched, back to shape (the backward of a broadcast)."""
    if not isinstance(x, engine.Tensor):
        return engine._unbroadcast(x, shape)
    if x.shape == tuple(shape):
        return x
    extra = x.ndim - len(shape)
    stretched = tuple(i + extra for i, n in enumerate(shape) if n == 1 and x.shape[i + extra] != 1)
    return x.sum(axis=tuple(range(extra)) + stretched).reshape(shape)


def outer(u, v):
    """sum over rows of u^T v, u (..., H), v (..., D): a weight's gradient dL/dW of W x;
    kept as its factors (OuterGrad) in first order, so the engine sums a weight's T terms in one product."""
    if not isinstance(u, engine.Tensor):
        return OuterGrad(u, v)
    rows = u.reshape(-1, u.shape[-1])
    return rows.T @ (v if isinstance(v, engine.Tensor) else rows._lift(v)).reshape(-1, v.shape[-1])


def scatter_add(values, index, shape: tuple):
    """zeros(shape) with values added at index (repeated indices add up): the backward of a gather.
    In first order a SparseGrad, which the engine adds into .grad without building the zeros."""
    if not isinstance(values, engine.Tensor):
        return SparseGrad(index, values)
    return ScatterAdd.apply(values, index=index, shape=tuple(shape))


def split(x, splits, axis: int) -> tuple:
    """x cut along axis before each index in splits (np.split), the backward of a concatenation."""
    if not isinstance(x, engine.Tensor):
        return tuple(np.split(x, splits, axis=axis))
    bounds = [0, *[int(s) for s in splits], x.shape[axis]]
    head = (slice(None),) * axis
    return tuple(x[head + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:]))


def unstack(x, axis: int) -> tuple:
    """The slices of x along axis, the backward of a stack."""
    if not isinstance(x, engine.Tensor):
        return tuple(np.moveaxis(x, axis, 0))
    head = (slice(None),) * axis
    return tuple(x[head + (i,)] for i in range(x.shape[axis]))


def _broadcast_error(op: str, *shapes: tuple) -> ValueError:
    return ValueError(f"{op}: shapes {' and '.join(map(str, shapes))} cannot be broadcast together")


def _binary(op: str, fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return fn(a, b)
    except ValueError as e:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise _broadcast_error(op, a.shape, b.shape) from None
        reason = str(e).strip().rstrip(".")  # NumPy's own, e.g. integers to negative integer powers
        raise ValueError(f"{op}: {reason[:1].lower()}{reason[1:]} "
                         f"({a.dtype} {a.shape} and {b.dtype} {b.shape})") from None


# ---- forward-mode helpers: a tangent is (K, *shape), K directions at once; None is a zero tangent
def _lift(t: np.ndarray, ndim: int) -> np.ndarray:
    """Tangent t (K, *s) with axes put after K, so it broadcasts against an ndim-d array as s would."""
    return t.reshape(t.shape[:1] + (1,) * (ndim + 1 - t.ndim) + t.shape[1:]) if t.ndim <= ndim else t


def _times(t, x: np.ndarray):
    """Tangent t times the array x in every direction; a missing tangent stays missing."""
    return None if t is None else _lift(t, np.ndim(x)) * x


def _total(*terms):
    """The sum of the tangents that are present, broadcast together as their primals are."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    ndim = max(t.ndim for t in terms) - 1
    total = _lift(terms[0], ndim)
    for t in terms[1:]:
        total = total + _lift(t, ndim)
    return total


def _shift(axis, ndim: int) -> tuple:
    """A reduction's axes of the primal (None: all ndim) as axes of its tangent, behind K."""
    return tuple(range(1, ndim + 1)) if axis is None else tuple(ax + 1 for ax in axis)


def _fill(tangents: Sequence, shapes: Sequence) -> list:
    """Zeros (K, *shape) in place of missing tangents, for the ops that join their inputs."""
    like = next(t for t in tangents if t is not None)
    return [np.zeros(like.shape[:1] + tuple(s), like.dtype) if t is None else t for t, s in zip(tangents, shapes)]


# ---- arithmetic -----------------------------------------------------------------------------------
class Add(Function):
    """y = a + b;  dL/da = g,  dL/db = g;  dy = da + db"""
    __slots__ = ()
    lowering = "{y} = {a} + {b}"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, b):
        return _binary("add", np.add, a, b)

    @staticmethod
    def backward(ctx, g):
        return g, g

    @staticmethod
    def jvp(ctx, da, db):
        return _total(da, db)


class Sub(Function):
    """y = a - b;  dL/da = g,  dL/db = -g;  dy = da - db"""
    __slots__ = ()
    lowering = "{y} = {a} - {b}"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, b):
        return _binary("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)

    @staticmethod
    def jvp(ctx, da, db):
        return _total(da, None if db is None else -db)


class Mul(Function):
    """y = a * b;  dL/da = g * b,  dL/db = g * a;  dy = da * b + a * db"""
    __slots__ = ()
    lowering = "{y} = {a} * {b}"
    batched_jvp = True
    differentiable_backward = True
    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _binary("mul", np.multiply, a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)

    @staticmethod
    def jvp(ctx, da, db):
        a, b = ctx.saved_tensors
        return _total(_times(da, b), _times(db, a))


class Div(Function):
    """y = a / b;  dL/da = g / b,  dL/db = -g * y / b;  dy = da / b - db * y / b"""
    __slots__ = ()
    lowering = "{y} = {a} / {b}"
    batched_jvp = True
    differentiable_backward = True
    saves = (1, "y")

    @staticmethod
    def forward(ctx, a, b):
        y = _binary("div", np.divide, a, b)
        ctx.save_for_backward(b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        b, y = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = g / b
        return (ga if need_a else None), (-ga * y if need_b else None)

    @staticmethod
    def jvp(ctx, da, db):
        b, y = ctx.saved_tensors
        return _total(_times(da, 1 / b), _times(db, -y / b))


def _pow_partials(a, b, y, need_a: bool, need_b: bool) -> tuple:
    """dy/da = b * a**(b-1) and dy/db = y * log(a) entrywise (None where not needed), PyTorch's edges."""
    dy_da = dy_db = None
    av, bv = value(a), value(b)  # the edges' masks are constants
    with np.errstate(divide="ignore", invalid="ignore"):
        if need_a:  # a**0 is constant: 0, not 0 * inf, at a = 0 (as PyTorch)
            dy_da = where(bv == 0, 0, b * a ** (b - 1))
        if need_b:  # y * log(a) -> 0 as a -> 0 for b >= 0 (as PyTorch); undefined for a < 0
            log_a = log(where(av > 0, a, 1))
            dy_db = where(av > 0, y * log_a, np.where((av == 0) & (bv >= 0), 0, np.nan))
    return dy_da, dy_db


class Pow(Function):
    """y = a ** b;  dL/da = g * b * a**(b-1),  dL/db = g * y * log(a);
    dy = da * b * a**(b-1) + db * y * log(a)"""
    __slots__ = ()
    lowering = "{y} = {a} ** {b}"
    batched_jvp = True
    differentiable_backward = True
    saves = (0, 1, "y")

    @staticmethod
    def forward(ctx, a, b):
        y = _binary("pow", np.power, a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        dy_da, dy_db = _pow_partials(*ctx.saved_tensors, *ctx.needs_input_grad)
        return (None if dy_da is None else g * dy_da), (None if dy_db is None else g * dy_db)

    @staticmethod
    def jvp(ctx, da, db):
        dy_da, dy_db = _pow_partials(*ctx.saved_tensors, da is not None, db is not None)
        return _total(_times(da, dy_da), _times(db, dy_db))


class Neg(Function):
    """y = -a;  dL/da = -g;  dy = -da"""
    __slots__ = ()
    lowering = "{y} = -{a}"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return (-g,)

    @staticmethod
    def jvp(ctx, da):
        return -da


class MatMul(Function):
    """y = a @ b;  dL/da = g @ b^T,  dL/db = a^T @ g;  dy = da @ b + a @ db  (1-D operands as in np.matmul)"""
    __slots__ = ()
    lowering = "{y} = {dot}"
    batched_jvp = True
    differentiable_backward = True
    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: {a.shape} @ {b.shape}: both operands need at least one dimension")
        inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if a.shape[-1] != inner_b:
            raise ValueError(f"matmul: {a.shape} @ {b.shape}: inner dimensions {a.shape[-1]} and {inner_b} differ")
        ctx.save_for_backward(a, b)
        try:
            return np.matmul(a, b)
        except ValueError:
            raise ValueError(f"matmul: {a.shape} @ {b.shape}: batch dimensions cannot be broadcast") from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        if a.ndim == 2 and b.ndim == 2:  # the common case, kept free of reshaping
            return (g @ b.T if need_a else None), (a.T @ g if need_b else None)
        if a.ndim == 2 and b.ndim == 1:  # matrix-vector W @ h: dL/dW = g h^T, summed with W's other uses
            return (outer(g, b) if need_a else None), (a.T @ g if need_b else None)
        # general case: lift 1-D operands to matrices, then drop the added axis again
        a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
        b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
        g2 = g.reshape(g.shape + (1,)) if b.ndim == 1 else g
        g2 = g2.reshape(g2.shape[:-1] + (1,) + g2.shape[-1:]) if a.ndim == 1 else g2
        ga = gb = None
        if need_a:
            ga = g2 @ _swap_last(b2)
            ga = ga.reshape(ga.shape[:-2] + (a.shape[-1],)) if a.ndim == 1 else ga
        if need_b:
            gb = _swap_last(a2) @ g2
            gb = gb.reshape(gb.shape[:-2] + (b.shape[0],)) if b.ndim == 1 else gb
        return ga, gb

    @staticmethod
    def jvp(ctx, da, db):
        a, b = ctx.saved_tensors
        # 1-D operands as matrices (as np.matmul does), K directions in front; the added axes go after
        a2, b2 = (a[None, :] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)
        da = da[:, None, :] if da is not None and a.ndim == 1 else da
        db = db[..., None] if db is not None and b.ndim == 1 else db
        n = max(a2.ndim, b2.ndim)
        dy = _total(None if da is None else _lift(da, n) @ b2, None if db is None else a2 @ _lift(db, n))
        dy = dy[..., 0, :] if a.ndim == 1 else dy
        return dy[..., 0] if b.ndim == 1 else dy


def _swap_last(x):
    """x with its last two axes swapped (a stack of matrices transposed), an ndarray or a Tensor."""
    return x.transpose(tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


class Affine(Function):
    """y = W x + b (+ further terms) for a vector x, x W^T + b (+ ...) for rows of x; as PyTorch's
    F.linear, or the book's a = b + W h + U x (eq. 10.8) with U x passed as a further term;
    dL/dx = g W,  dL/dW = g^T x (summed over rows),  dL/db = g summed over rows,  dL/dterm = g;
    dy = W dx + dW x + db (+ dterms)"""
    __slots__ = ()
    lowering = "{y} = {a} @ {b}.T + {c}{rest}"
    batched_jvp = True
    differentiable_backward = True
    saves = (0, 1)

    @staticmethod
    def forward(ctx, x, W, b, *terms):
        if W.ndim != 2 or x.ndim == 0 or x.shape[-1] != W.shape[1] or b.shape != (W.shape[0],):
            raise ValueError(f"affine: x {x.shape}, W {W.shape}, b {b.shape}: "
                             f"want x (..., D), W (H, D), b (H,)")
        ctx.save_for_backward(x, W)
        if x.ndim <= 2:
            y = (W @ x if x.ndim == 1 else x @ W.T) + b
        else:  # rows (T, B, D) as one (T*B, D) matrix: one BLAS product, 2-3x faster than a stack of them
            y = (x.reshape(-1, x.shape[-1]) @ W.T).reshape(x.shape[:-1] + (W.shape[0],)) + b
        for term in terms:
            if term.shape != y.shape:
                raise ValueError(f"affine: a further term of shape {term.shape} does not match the output {y.shape}")
            y += term  # y is our own fresh array
        return y

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        need_x, need_W, need_b = ctx.needs_input_grad[:3]
        terms = (g,) * (len(ctx.inputs) - 3)
        gW = outer(g, x) if need_W else None  # summed with W's other uses in one product
        if x.ndim == 1:
            return (g @ W if need_x else None), gW, g, *terms
        return (g @ W if need_x else None), gW, (g.reshape(-1, g.shape[-1]).sum(axis=0) if need_b else None), *terms

    @staticmethod
    def jvp(ctx, dx, dW, db, *dterms):
        return _affine_tangent(*ctx.saved_tensors, dx, dW, db, *dterms)


def _affine_tangent(x: np.ndarray, W: np.ndarray, dx, dW, db, *dterms):
    """Affine's rule dy = W dx + dW x + db (+ dterms), also the first line of a fused step's."""
    dWx = None
    if dW is not None:  # dW x for every direction: rows of x (N, D) @ dW^T (K, D, H) -> (K, N, H)
        dWx = (x.reshape(-1, x.shape[-1]) @ dW.swapaxes(-1, -2)).reshape(dW.shape[:1] + x.shape[:-1] + W.shape[:1])
    return _total(None if dx is None else dx @ W.T, dWx, db, *dterms)


# ---- elementwise functions --------------------------------------------------------------------------
class Exp(Function):
    """y = exp(a);  dL/da = g * y;  dy = da * y"""
    __slots__ = ()
    lowering = "{y} = np.exp({a})"
    batched_jvp = True
    differentiable_backward = True
    saves = ("y",)

    @staticmethod
    def forward(ctx, a):
        y = np.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g * y,)

    @staticmethod
    def jvp(ctx, da):
        (y,) = ctx.saved_tensors
        return da * y


class Log(Function):
    """y = log(a);  dL/da = g / a;  dy = da / a"""
    __slots__ = ()
    lowering = "{y} = np.log({a})"
    batched_jvp = True
    differentiable_backward = True
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g / a,)

    @staticmethod
    def jvp(ctx, da):
        (a,) = ctx.saved_tensors
        return da / a


class Tanh(Function):
    """y = tanh(a);  dL/da = g * (1 - y**2);  dy = da * (1 - y**2)"""
    __slots__ = ()
    lowering = "{y} = np.tanh({a})"
    batched_jvp = True
    differentiable_backward = True
    saves = ("y",)

    @staticmethod
    def forward(ctx, a):
        y = np.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g * (1 - y * y),)

    @staticmethod
    def jvp(ctx, da):
        (y,) = ctx.saved_tensors
        return da * (1 - y * y)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(a/2)) is sigmoid without overflow in exp for large |a|
    return 0.5 * (1 + np.tanh(0.5 * a))


class Sigmoid(Function):
    """y = 1 / (1 + exp(-a));  dL/da = g * y * (1 - y);  dy = da * y * (1 - y)"""
    __slots__ = ()
    lowering = "{y} = 0.5 * (1 + np.tanh(0.5 * {a}))"
    batched_jvp = True
    differentiable_backward = True
    saves = ("y",)

    @staticmethod
    def forward(ctx, a):
        y = _sigmoid(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g * y * (1 - y),)

    @staticmethod
    def jvp(ctx, da):
        (y,) = ctx.saved_tensors
        return da * (y * (1 - y))


class Relu(Function):
    """y = max(a, 0);  dL/da = g * (a > 0);  dy = da * (a > 0)"""
    __slots__ = ()
    lowering = "{y} = np.maximum({a}, 0)"
    batched_jvp = True
    differentiable_backward = True
    saves = (None,)

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.maximum(a, 0)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * (a > 0),)

    @staticmethod
    def jvp(ctx, da):
        (a,) = ctx.saved_tensors
        return da * (a > 0)


class Sqrt(Function):
    """y = sqrt(a);  dL/da = g / (2 y);  dy = da / (2 y)"""
    __slots__ = ()
    lowering = "{y} = np.sqrt({a})"
    batched_jvp = True
    differentiable_backward = True
    saves = ("y",)

    @staticmethod
    def forward(ctx, a):
        y = np.sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g / (2 * y),)

    @staticmethod
    def jvp(ctx, da):
        (y,) = ctx.saved_tensors
        return da / (2 * y)


class Abs(Function):
    """y = |a|;  dL/da = g * sign(a);  dy = da * sign(a)  (0 at a = 0, as PyTorch)"""
    __slots__ = ()
    lowering = "{y} = np.abs({a})"
    batched_jvp = True
    differentiable_backward = True
    saves = (None,)

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.sign(a),)  # a is a constant here (saves None): its sign does not move

    @staticmethod
    def jvp(ctx, da):
        (a,) = ctx.saved_tensors
        return da * np.sign(a)


class Clip(Function):
    """y = min(max(a, lo), hi);  dL/da = g where lo <= a <= hi, else 0;  dy = da there, else 0"""
    __slots__ = ()
    lowering = "{y} = np.clip({a}, {kw[lo]}, {kw[hi]})"
    batched_jvp = True
    differentiable_backward = True
    saves = (None,)

    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        if lo is None and hi is None:
            raise ValueError("clip: give lo, hi or both")
        if not all(b is None or (np.ndim(b) == 0 and np.issubdtype(np.asarray(b).dtype, np.number)) for b in (lo, hi)):
            raise TypeError(f"clip: lo and hi must be numbers or None, got {lo!r} and {hi!r}")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"clip: lo={lo} is greater than hi={hi}")
        inside = np.ones(a.shape, dtype=bool)
        if lo is not None:
            inside &= a >= lo
        if hi is not None:
            inside &= a <= hi
        ctx.save_for_backward(inside)
        return np.clip(a, lo, hi).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return (g * inside,)

    @staticmethod
    def jvp(ctx, da):
        (inside,) = ctx.saved_tensors
        return da * inside


# ---- reductions ------------------------------------------------------------------------------------
def _check_axis(op: str, axis, ndim: int) -> tuple:
    """axis (int or tuple) as a tuple of non-negative axes, or a sentence naming the op."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis) if isinstance(axis, (tuple, list)) else None
    if axes is None or not all(isinstance(ax, (int, np.integer)) and not isinstance(ax, bool) for ax in axes):
        raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"{op}: axis {ax} is out of range for a tensor with {ndim} dimensions")
    axes = tuple(ax % ndim for ax in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis {axis} names the same axis twice")
    return axes


def _expand(g, shape: tuple, axis, keepdims: bool):
    """Put back the axes a reduction removed, so g broadcasts against the input."""
    if keepdims:
        return g
    if axis is None:
        return g.reshape((1,) * len(shape))
    return g.reshape(tuple(1 if i in axis else n for i, n in enumerate(shape)))


class Sum(Function):
    """y = sum(a, axis);  dL/da = g broadcast back over the summed axes;  dy = sum(da, axis)"""
    __slots__ = ("shape", "axis", "keepdims")
    lowering = "{y} = {a}.sum(axis={ctx.axis}, keepdims={ctx.keepdims})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if axis is not None:
            axis = _check_axis("sum", axis, a.ndim)
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (broadcast_to(_expand(g, ctx.shape, ctx.axis, ctx.keepdims), ctx.shape),)

    @staticmethod
    def jvp(ctx, da):
        return da.sum(axis=_shift(ctx.axis, len(ctx.shape)), keepdims=ctx.keepdims)


class Mean(Function):
    """y = mean(a, axis);  dL/da = g / n broadcast back (n = number of entries averaged);  dy = mean(da, axis)"""
    __slots__ = ("shape", "axis", "keepdims")
    lowering = "{y} = {a}.mean(axis={ctx.axis}, keepdims={ctx.keepdims})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if axis is not None:
            axis = _check_axis("mean", axis, a.ndim)
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return a.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        n = np.prod(ctx.shape) if ctx.axis is None else np.prod([ctx.shape[ax] for ax in ctx.axis])
        return (broadcast_to(_expand(g, ctx.shape, ctx.axis, ctx.keepdims) / n, ctx.shape),)

    @staticmethod
    def jvp(ctx, da):
        return da.mean(axis=_shift(ctx.axis, len(ctx.shape)), keepdims=ctx.keepdims)


class Max(Function):
    """y = max(a, axis);  dL/da = g at the maxima (shared equally between ties), 0 elsewhere;
    dy = da at the maximum (the mean of da over ties)"""
    __slots__ = ("axis", "keepdims")
    lowering = "{y} = {a}.max(axis={ctx.axis}, keepdims={ctx.keepdims})"
    batched_jvp = True
    differentiable_backward = True
    saves = (None,)

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if a.size == 0:
            raise ValueError("max: the tensor is empty")
        if axis is not None:
            axis = _check_axis("max", axis, a.ndim)
        ctx.axis, ctx.keepdims = axis, keepdims
        y = a.max(axis=axis, keepdims=True)
        winners = a == y
        ctx.save_for_backward(winners / winners.sum(axis=axis, keepdims=True))
        return y if keepdims else (y.reshape(()) if axis is None else np.squeeze(y, axis))

    @staticmethod
    def backward(ctx, g):
        (share,) = ctx.saved_tensors
        return (_expand(g, share.shape, ctx.axis, ctx.keepdims) * share,)

    @staticmethod
    def jvp(ctx, da):
        (share,) = ctx.saved_tensors
        return (da * share).sum(axis=_shift(ctx.axis, share.ndim), keepdims=ctx.keepdims)


class Softmax(Function):
    """y = exp(a - max) / sum(exp(a - max));  dL/da = y * (g - sum(g * y));  dy = y * (da - sum(da * y))"""
    __slots__ = ("axis",)
    lowering = ("{y} = np.exp({a} - {a}.max(axis={ctx.axis}, keepdims=True))\n"
                "{y} = {y} / {y}.sum(axis={ctx.axis}, keepdims=True)")
    batched_jvp = True
    differentiable_backward = True
    saves = ("y",)

    @staticmethod
    def forward(ctx, a, axis=-1):
        ctx.axis = _check_axis("softmax", axis, a.ndim)
        if a.size == 0:  # nothing to normalise: an empty result, as PyTorch
            ctx.save_for_backward(a)
            return a.copy()
        e = np.exp(a - a.max(axis=ctx.axis, keepdims=True))  # subtract the max: no overflow
        y = e / e.sum(axis=ctx.axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (y * (g - (g * y).sum(axis=ctx.axis, keepdims=True)),)

    @staticmethod
    def jvp(ctx, da):
        (y,) = ctx.saved_tensors
        return y * (da - (da * y).sum(axis=_shift(ctx.axis, y.ndim), keepdims=True))


class LogSoftmax(Function):
    """y = a - logsumexp(a);  dL/da = g - softmax(a) * sum(g);  dy = da - sum(softmax(a) * da)"""
    __slots__ = ("axis",)
    lowering = ("{y} = {a} - {a}.max(axis={ctx.axis}, keepdims=True)\n"
                "{y} = {y} - np.log(np.exp({y}).sum(axis={ctx.axis}, keepdims=True))")
    batched_jvp = True
    differentiable_backward = True
    saves = ("y",)

    @staticmethod
    def forward(ctx, a, axis=-1):
        ctx.axis = _check_axis("log_softmax", axis, a.ndim)
        if a.size == 0:  # nothing to normalise: an empty result, as PyTorch
            ctx.save_for_backward(a)
            return a.copy()
        shifted = a - a.max(axis=ctx.axis, keepdims=True)
        y = shifted - np.log(np.exp(shifted).sum(axis=ctx.axis, keepdims=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g - exp(y) * g.sum(axis=ctx.axis, keepdims=True),)

    @staticmethod
    def jvp(ctx, da):
        (y,) = ctx.saved_tensors
        return da - (da * np.exp(y)).sum(axis=_shift(ctx.axis, y.ndim), keepdims=True)


# ---- shape and indexing ---------------------------------------------------------------------------
class _View(Function):
    """An op whose output may be a view of its input's array (reshape, transpose, basic slicing). As PyTorch's
    views share their base's version counter, an in-place edit of the input (an optimizer step) counts as an
    edit of this output: backward then refuses an op that saved the view before the edit."""
    __slots__ = ()

    @property
    def _version(self) -> int:
        return self.inputs[0]._version


class Reshape(_View):
    """y = a reshaped;  dL/da = g reshaped back;  dy = da reshaped"""
    __slots__ = ("shape", "out_shape")
    lowering = "{y} = {a}.reshape({ctx.out_shape})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, shape=()):
        ctx.shape = a.shape
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
            raise TypeError(f"reshape: the new shape must be ints, got {tuple(shape)}")
        try:
            y = a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {a.shape} ({a.size} entries) into {tuple(shape)}") from None
        ctx.out_shape = y.shape
        return y

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.shape),)

    @staticmethod
    def jvp(ctx, da):
        return da.reshape(da.shape[:1] + ctx.out_shape)


class Transpose(_View):
    """y = a with axes permuted;  dL/da = g with the inverse permutation;  dy = da with the same permutation"""
    __slots__ = ("axes",)
    lowering = "{y} = {a}{ctx.axes!T}"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, axes=None):
        if axes is not None:
            if len(axes) != a.ndim or not all(-a.ndim <= ax < a.ndim for ax in axes):
                raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation of a {a.ndim}-d tensor's axes")
            axes = tuple(ax % a.ndim for ax in axes)  # argsort in backward needs them non-negative
            if sorted(axes) != list(range(a.ndim)):
                raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation of a {a.ndim}-d tensor's axes")
        ctx.axes = axes
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        return (g.transpose() if ctx.axes is None else g.transpose(tuple([int(i) for i in np.argsort(ctx.axes)])),)

    @staticmethod
    def jvp(ctx, da):
        axes = range(da.ndim - 1, 0, -1) if ctx.axes is None else (ax + 1 for ax in ctx.axes)
        return np.transpose(da, (0, *axes))  # K stays in front


class GetItem(_View):
    """y = a[index];  dL/da = zeros with g scatter-added at index (repeated indices add up);  dy = da[index]"""
    __slots__ = ("index",)
    lowering = "{y} = {a}[{ctx.index!i}]"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, index=None):
        ctx.index = index
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"getitem: index {index!r} does not fit a tensor of shape {a.shape} ({e})") from None

    @staticmethod
    def backward(ctx, g):
        if type(g) is np.ndarray:  # first order: a SparseGrad, added into a leaf's .grad without the zeros
            return (SparseGrad(ctx.index, g),)
        parent = ctx.inputs[0]  # the input's shape, read only here: a node keeps no more than it must
        return (scatter_add(g, ctx.index, (parent._out_like if isinstance(parent, Function) else parent.data).shape),)

    @staticmethod
    def jvp(ctx, da):
        # index the entries' positions once, then take those from every direction: any index works
        # (slices, ints, arrays, masks, Ellipsis) without K moving among the indexed axes
        picked = np.arange(da[0].size).reshape(da.shape[1:])[ctx.index]
        return da.reshape(len(da), -1)[:, picked]


class Concat(Function):
    """y = concatenate(xs, axis);  dL/dx_i = the slice of g that x_i filled;  dy = concatenate(dxs, axis)"""
    __slots__ = ("axis", "splits", "shapes")
    lowering = "{y} = np.concatenate({list}, axis={ctx.axis})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, *xs, axis=0):
        if not xs:
            raise ValueError("concat: needs at least one tensor")
        ctx.axis = _check_axis("concat", axis, xs[0].ndim)[0]
        ctx.splits = np.cumsum([x.shape[ctx.axis] for x in xs])[:-1]
        ctx.shapes = [x.shape for x in xs]
        try:
            return np.concatenate(xs, axis=ctx.axis)
        except ValueError:
            raise ValueError(f"concat: shapes {[x.shape for x in xs]} differ off axis {axis}") from None

    @staticmethod
    def backward(ctx, g):
        return split(g, ctx.splits, ctx.axis)

    @staticmethod
    def jvp(ctx, *dxs):
        return np.concatenate(_fill(dxs, ctx.shapes), axis=ctx.axis + 1)


class Stack(Function):
    """y = stack(xs, axis);  dL/dx_i = g taken at position i along axis;  dy = stack(dxs, axis)"""
    __slots__ = ("axis",)
    lowering = "{y} = np.stack({list}, axis={ctx.axis})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, *xs, axis=0):
        if not xs:
            raise ValueError("stack: needs at least one tensor")
        shapes = {x.shape for x in xs}
        if len(shapes) > 1:
            raise ValueError(f"stack: all tensors need the same shape, got {[x.shape for x in xs]}")
        ctx.axis = _check_axis("stack", axis, xs[0].ndim + 1)[0]
        return np.stack(xs, axis=ctx.axis)

    @staticmethod
    def backward(ctx, g):
        return unstack(g, ctx.axis)

    @staticmethod
    def jvp(ctx, *dxs):
        shape = next(d for d in dxs if d is not None).shape[1:]  # all inputs have one shape
        return np.stack(_fill(dxs, [shape] * len(dxs)), axis=ctx.axis + 1)


class Where(Function):
    """y = where(cond, a, b);  dL/da = g where cond, dL/db = g where not cond;  dy = where(cond, da, db)"""
    __slots__ = ()
    lowering = "{y} = np.where({a}, {b}, {c})"
    batched_jvp = True
    differentiable_backward = True
    saves = (None,)

    @staticmethod
    def forward(ctx, cond, a, b):
        cond = cond.astype(bool, copy=False)
        ctx.save_for_backward(cond)
        try:
            return np.where(cond, a, b)
        except ValueError:
            raise _broadcast_error("where", cond.shape, a.shape, b.shape) from None

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        _, need_a, need_b = ctx.needs_input_grad
        zero = np.zeros((), dtype=g.dtype)
        return (None, where(cond, g, zero) if need_a else None, where(cond, zero, g) if need_b else None)

    @staticmethod
    def jvp(ctx, dcond, da, db):
        (cond,) = ctx.saved_tensors
        moving = [d for d in (da, db) if d is not None]
        if not moving:  # only the condition moved: it selects, it has no derivative
            return None
        n = max([cond.ndim] + [d.ndim - 1 for d in moving])
        zero = np.zeros((), moving[0].dtype)
        return np.where(cond, zero if da is None else _lift(da, n), zero if db is None else _lift(db, n))


class BroadcastTo(Function):
    """y = a broadcast to shape (repeated over added or stretched axes);  dL/da = g summed back to a's shape;
    dy = da broadcast likewise (the backward of a sum, under create_graph)"""
    __slots__ = ("in_shape", "shape")
    lowering = "{y} = np.broadcast_to({a}, {ctx.shape})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, a, shape=()):
        ctx.in_shape, ctx.shape = a.shape, tuple(shape)
        try:
            return np.broadcast_to(a, ctx.shape)
        except ValueError:
            raise _broadcast_error("broadcast_to", a.shape, ctx.shape) from None

    @staticmethod
    def backward(ctx, g):
        return (sum_to(g, ctx.in_shape),)

    @staticmethod
    def jvp(ctx, da):
        return np.broadcast_to(_lift(da, len(ctx.shape)), da.shape[:1] + ctx.shape)


class ScatterAdd(Function):
    """y = zeros(shape) with v added at index (repeated indices add up);  dL/dv = g[index];  dy = the same of dv
    (the backward of GetItem and of a column gather, under create_graph)"""
    __slots__ = ("index", "shape")
    lowering = "{y} = np.zeros({ctx.shape}, {dtype})\nnp.add.at({y}, np.s_[{ctx.index!i}], {a})"
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, v, index=None, shape=()):
        ctx.index, ctx.shape = index, tuple(shape)
        y = np.zeros(ctx.shape, v.dtype)
        SparseGrad(index, v).add_to(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return (g[ctx.index],)

    @staticmethod
    def jvp(ctx, dv):
        size = int(np.prod(ctx.shape))
        picked = np.arange(size).reshape(ctx.shape)[ctx.index]  # the entries' positions, as GetItem's jvp
        dy = np.zeros((len(dv), size), dv.dtype)
        np.add.at(dy, (slice(None), picked.reshape(-1)), dv.reshape(len(dv), -1))
        return dy.reshape(dv.shape[:1] + ctx.shape)
