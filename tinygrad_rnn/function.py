"""The built-in ops: one Function subclass each, forward and vector-Jacobian product side by side.

Each docstring is the math (g is dL/d(output)). Shapes are checked here, where the op's name is
known, so a mismatch reads `matmul: (3, 4) @ (5, 6): inner dimensions 4 and 5 differ`.
Gradients over broadcast axes are summed back to each input's shape by the engine.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .tensor import Function, OuterGrad, SparseGrad, Tensor

__all__ = ["Add", "Sub", "Mul", "Div", "Pow", "Neg", "MatMul", "Affine", "Exp", "Log", "Tanh", "Sigmoid",
           "Relu", "Sqrt", "Abs", "Clip", "Sum", "Mean", "Max", "Softmax", "LogSoftmax", "Reshape",
           "Transpose", "GetItem", "Concat", "Stack", "Where", "concat", "stack", "where"]


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
        raise ValueError(f"{op}: {reason[:1].lower()}{reason[1:]} ({a.dtype} {a.shape} and {b.dtype} {b.shape})") from None


# ---- arithmetic -----------------------------------------------------------------------------------
class Add(Function):
    """y = a + b;  dL/da = g,  dL/db = g"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a, b):
        return _binary("add", np.add, a, b)

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    """y = a - b;  dL/da = g,  dL/db = -g"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a, b):
        return _binary("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """y = a * b;  dL/da = g * b,  dL/db = g * a"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _binary("mul", np.multiply, a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    """y = a / b;  dL/da = g / b,  dL/db = -g * y / b"""
    __slots__ = ()

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


class Pow(Function):
    """y = a ** b;  dL/da = g * b * a**(b-1),  dL/db = g * y * log(a)"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a, b):
        y = _binary("pow", np.power, a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if need_a:  # a**0 is constant: 0, not 0 * inf, at a = 0 (as PyTorch)
                ga = np.where(b == 0, 0, g * b * np.power(a, b - 1))
            if need_b:  # y * log(a) -> 0 as a -> 0 for b >= 0 (as PyTorch); undefined for a < 0
                log_a = np.log(np.where(a > 0, a, 1))
                gb = np.where(a > 0, g * y * log_a, np.where((a == 0) & (b >= 0), 0, np.nan))
        return ga, gb


class Neg(Function):
    """y = -a;  dL/da = -g"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return (-g,)


class MatMul(Function):
    """y = a @ b;  dL/da = g @ b^T,  dL/db = a^T @ g  (1-D operands as in np.matmul)"""
    __slots__ = ()

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
            return (OuterGrad(g, b) if need_a else None), (a.T @ g if need_b else None)
        # general case: lift 1-D operands to matrices, then drop the added axis again
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = np.expand_dims(g, -1) if b.ndim == 1 else g
        g2 = np.expand_dims(g2, -2) if a.ndim == 1 else g2
        ga = gb = None
        if need_a:
            ga = g2 @ np.swapaxes(b2, -1, -2)
            ga = ga.reshape(ga.shape[:-2] + (a.shape[-1],)) if a.ndim == 1 else ga
        if need_b:
            gb = np.swapaxes(a2, -1, -2) @ g2
            gb = gb.reshape(gb.shape[:-2] + (b.shape[0],)) if b.ndim == 1 else gb
        return ga, gb


class Affine(Function):
    """y = W x + b (+ further terms) for a vector x, x W^T + b (+ ...) for rows of x; as PyTorch's
    F.linear, or the book's a = b + W h + U x (eq. 10.8) with U x passed as a further term;
    dL/dx = g W,  dL/dW = g^T x (summed over rows),  dL/db = g summed over rows,  dL/dterm = g"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, x, W, b, *terms):
        if W.ndim != 2 or x.ndim == 0 or x.shape[-1] != W.shape[1] or b.shape != (W.shape[0],):
            raise ValueError(f"affine: x {x.shape}, W {W.shape}, b {b.shape}: "
                             f"want x (..., D), W (H, D), b (H,)")
        ctx.save_for_backward(x, W)
        y = (W @ x if x.ndim == 1 else x @ W.T) + b
        for term in terms:
            if term.shape != y.shape:
                raise ValueError(f"affine: a further term of shape {term.shape} does not match the output {y.shape}")
            y += term  # y is our own fresh array
        return y

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        need_x, need_W, need_b = ctx.needs_input_grad[:3]
        terms = (g,) * (len(ctx.parents) - 3)
        gW = OuterGrad(g, x) if need_W else None  # summed with W's other uses in one product
        if x.ndim == 1:
            return (g @ W if need_x else None), gW, g, *terms
        return (g @ W if need_x else None), gW, (g.reshape(-1, g.shape[-1]).sum(axis=0) if need_b else None), *terms


# ---- elementwise functions --------------------------------------------------------------------------
class Exp(Function):
    """y = exp(a);  dL/da = g * y"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        y = np.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g * y,)


class Log(Function):
    """y = log(a);  dL/da = g / a"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g / a,)


class Tanh(Function):
    """y = tanh(a);  dL/da = g * (1 - y**2)"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        y = np.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g * (1 - y * y),)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(a/2)) is sigmoid without overflow in exp for large |a|
    return 0.5 * (1 + np.tanh(0.5 * a))


class Sigmoid(Function):
    """y = 1 / (1 + exp(-a));  dL/da = g * y * (1 - y)"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        y = _sigmoid(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g * y * (1 - y),)


class Relu(Function):
    """y = max(a, 0);  dL/da = g * (a > 0)"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.maximum(a, 0)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * (a > 0),)


class Sqrt(Function):
    """y = sqrt(a);  dL/da = g / (2 y)"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        y = np.sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g / (2 * y),)


class Abs(Function):
    """y = |a|;  dL/da = g * sign(a)  (0 at a = 0, as PyTorch)"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.sign(a),)


class Clip(Function):
    """y = min(max(a, lo), hi);  dL/da = g where lo <= a <= hi, else 0"""
    __slots__ = ()

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


def _expand(g: np.ndarray, shape: tuple, axis, keepdims: bool) -> np.ndarray:
    """Put back the axes a reduction removed, so g broadcasts against the input."""
    if keepdims:
        return g
    if axis is None:
        return np.reshape(g, (1,) * len(shape))
    return np.expand_dims(g, axis)


class Sum(Function):
    """y = sum(a, axis);  dL/da = g broadcast back over the summed axes"""
    __slots__ = ("shape", "axis", "keepdims")

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if axis is not None:
            axis = _check_axis("sum", axis, a.ndim)
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (np.broadcast_to(_expand(g, ctx.shape, ctx.axis, ctx.keepdims), ctx.shape),)


class Mean(Function):
    """y = mean(a, axis);  dL/da = g / n broadcast back (n = number of entries averaged)"""
    __slots__ = ("shape", "axis", "keepdims")

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if axis is not None:
            axis = _check_axis("mean", axis, a.ndim)
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return a.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        n = np.prod(ctx.shape) if ctx.axis is None else np.prod([ctx.shape[ax] for ax in ctx.axis])
        return (np.broadcast_to(_expand(g, ctx.shape, ctx.axis, ctx.keepdims) / n, ctx.shape),)


class Max(Function):
    """y = max(a, axis);  dL/da = g at the maxima (shared equally between ties), 0 elsewhere"""
    __slots__ = ("axis", "keepdims")

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


class Softmax(Function):
    """y = exp(a - max) / sum(exp(a - max));  dL/da = y * (g - sum(g * y))"""
    __slots__ = ("axis",)

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


class LogSoftmax(Function):
    """y = a - logsumexp(a);  dL/da = g - softmax(a) * sum(g)"""
    __slots__ = ("axis",)

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
        return (g - np.exp(y) * g.sum(axis=ctx.axis, keepdims=True),)


# ---- shape and indexing ---------------------------------------------------------------------------
class Reshape(Function):
    """y = a reshaped;  dL/da = g reshaped back"""
    __slots__ = ("shape",)

    @staticmethod
    def forward(ctx, a, shape=()):
        ctx.shape = a.shape
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
            raise TypeError(f"reshape: the new shape must be ints, got {tuple(shape)}")
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {a.shape} ({a.size} entries) into {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.shape),)


class Transpose(Function):
    """y = a with axes permuted;  dL/da = g with the inverse permutation"""
    __slots__ = ("axes",)

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
        return (np.transpose(g, None if ctx.axes is None else np.argsort(ctx.axes)),)


class GetItem(Function):
    """y = a[index];  dL/da = zeros with g scatter-added at index (repeated indices add up)"""
    __slots__ = ("index",)

    @staticmethod
    def forward(ctx, a, index=None):
        ctx.index = index
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"getitem: index {index!r} does not fit a tensor of shape {a.shape} ({e})") from None

    @staticmethod
    def backward(ctx, g):
        return (SparseGrad(ctx.index, g),)  # into a leaf's .grad directly; made dense otherwise


class Concat(Function):
    """y = concatenate(xs, axis);  dL/dx_i = the slice of g that x_i filled"""
    __slots__ = ("axis", "splits")

    @staticmethod
    def forward(ctx, *xs, axis=0):
        if not xs:
            raise ValueError("concat: needs at least one tensor")
        ctx.axis = _check_axis("concat", axis, xs[0].ndim)[0]
        ctx.splits = np.cumsum([x.shape[ctx.axis] for x in xs])[:-1]
        try:
            return np.concatenate(xs, axis=ctx.axis)
        except ValueError:
            raise ValueError(f"concat: shapes {[x.shape for x in xs]} differ off axis {axis}") from None

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.splits, axis=ctx.axis))


class Stack(Function):
    """y = stack(xs, axis);  dL/dx_i = g taken at position i along axis"""
    __slots__ = ("axis",)

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
        return tuple(np.moveaxis(g, ctx.axis, 0))


class Where(Function):
    """y = where(cond, a, b);  dL/da = g where cond, dL/db = g where not cond"""
    __slots__ = ()

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
        return (None, np.where(cond, g, zero) if need_a else None,
                np.where(cond, zero, g) if need_b else None)


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
