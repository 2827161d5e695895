"""Losses: the fused softmax cross-entropy of min-char-rnn, the fused sigmoid cross-entropy of a
binary output, and the quadratic error of the documents.

CrossEntropy is one op (log-softmax and pick in one node) whose gradient is the familiar
softmax(z) - onehot(t); BinaryCrossEntropy takes logits like PyTorch's binary_cross_entropy_with_logits,
gradient sigmoid(z) - t; mse is 0.5 * sum((y - t)**2), so its gradient is y - t.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import Function
from ..function import _sigmoid, scatter_add, sigmoid
from ..tensor import Tensor

__all__ = ["cross_entropy", "binary_cross_entropy", "mse"]

_REDUCTIONS = ("sum", "mean")


def _probs_minus_onehot(ctx: Function, reuse: bool = False) -> np.ndarray:
    """dL/dz for g = 1 on the counted rows: softmax(z_n) - onehot(t_n), (N', V), an array of the caller's:
    the saved softmax itself when backward frees it afterwards (one (N, V) array less at the peak)."""
    probs, picks = ctx.saved_tensors[:2]
    dz = probs if reuse else probs.copy()
    dz[picks] -= 1
    return dz


def _all_rows(dz: np.ndarray, keep: np.ndarray, shape: tuple) -> np.ndarray:
    """Counted rows (N', V) back to the logits' shape; ignored rows get exactly zero."""
    if keep is None:
        return dz.reshape(shape)
    full = np.zeros((keep.size, shape[-1]), dtype=dz.dtype)
    full[keep.reshape(-1)] = dz
    return full.reshape(shape)


class CrossEntropy(Function):
    """L = -sum_n m_n log softmax(z_n)[t_n] (/ sum_n m_n for "mean"), m_n = [t_n != ignore_index];
    dL/dz_n = g * m_n * (softmax(z_n) - onehot(t_n)) (/ sum_n m_n);
    dL = sum_n m_n dz_n · (softmax(z_n) - onehot(t_n)) (/ sum_n m_n)"""
    __slots__ = ("scale",)
    lowering = ("{tmp} = {a}.reshape(-1, {a}.shape[-1]){kw[keep]!k}\n"
                "{tmp} = {tmp} - {tmp}.max(axis=1, keepdims=True)\n"
                "{y} = (np.log(np.exp({tmp}).sum(axis=1)) - {tmp}[np.arange(len({tmp})), "
                "{kw[targets]}.reshape(-1){kw[keep]!k}]).sum() * {ctx.scale}")
    batched_jvp = True  # takes tangents (K, *shape), as every built-in op
    differentiable_backward = True
    saves = (None, None, None, None)  # the softmax is recomputed from the logits under create_graph

    @staticmethod
    def forward(ctx, logits, targets=None, mean=False, keep=None):
        rows = logits.reshape(-1, logits.shape[-1])                # (N, V)
        if keep is not None:                                       # padded positions: no loss, no gradient
            rows, targets = rows[keep.reshape(-1)], targets[keep]
        picks = (np.arange(rows.shape[0]), targets.reshape(-1))
        shifted = rows - rows.max(axis=1, keepdims=True)           # subtract the max: exp cannot overflow
        picked = shifted[picks]
        e = np.exp(shifted, out=shifted)                           # in place: one (N, V) array, kept as the softmax
        total = e.sum(axis=1, keepdims=True)
        # "mean" divides by the targets that count; none left is 0/0 = nan, as in PyTorch
        ctx.scale = (1.0 / rows.shape[0] if rows.shape[0] else np.nan) if mean else 1.0
        loss = (np.log(total[:, 0]) - picked).sum()
        e /= total
        ctx.save_for_backward(e, picks, logits.shape, keep)
        return np.asarray(loss * ctx.scale, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        if type(g) is not np.ndarray:  # create_graph: the softmax as an op of the logits, so this differentiates again
            return (_graph_backward(ctx, g),)
        dz = _probs_minus_onehot(ctx, reuse=ctx.may_reuse_saved())  # softmax - onehot
        dz *= g * ctx.scale
        shape, keep = ctx.saved_tensors[2:]
        return (_all_rows(dz, keep, shape),)

    @staticmethod
    def jvp(ctx, dz):
        shape, keep = ctx.saved_tensors[2:]
        dz = dz.reshape(len(dz), -1, shape[-1])                    # (K, N, V)
        if keep is not None:
            dz = dz[:, keep.reshape(-1)]
        return dz.reshape(len(dz), -1) @ _probs_minus_onehot(ctx).ravel() * ctx.scale  # (K,)


def _graph_backward(ctx: Function, g: Tensor) -> Tensor:
    """CrossEntropy's rule on Tensors: g * scale * (softmax(z_n) - onehot(t_n)) on the counted rows. The logits'
    values are not kept; log softmax(z) differs from z by a constant per row, which softmax ignores (to every
    order), so the logits' tensor stands in holding log of the saved softmax."""
    probs, picks, shape, keep = ctx.saved_tensors
    rows = np.zeros((int(np.prod(shape[:-1])), shape[-1]), probs.dtype)
    with np.errstate(divide="ignore"):
        rows[slice(None) if keep is None else keep.reshape(-1)] = np.log(probs)
    z = ctx.input_tensor(0, rows.reshape(shape)).reshape(rows.shape)
    if keep is not None:
        z = z[keep.reshape(-1)]
    onehot = np.zeros(probs.shape, probs.dtype)
    onehot[picks] = 1
    dz = (z.softmax(axis=-1) - onehot) * (g * ctx.scale)
    if keep is None:
        return dz.reshape(shape)
    return scatter_add(dz, np.flatnonzero(keep), rows.shape).reshape(shape)


def cross_entropy(logits: Tensor, targets: Any, reduction: str = "sum", ignore_index: int = -100) -> Tensor:
    """Softmax cross-entropy of logits (..., V) against int targets (...) -> scalar (natural log).

    Targets equal to ignore_index (PyTorch's default -100) add nothing and get zero gradient, so
    padded batches of sequences of different lengths train as if unpadded; "mean" divides by
    the number of targets that count.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    logits = logits if isinstance(logits, Tensor) else Tensor(logits)
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if logits.ndim == 0:
        raise ValueError("cross_entropy: logits must have a class axis, got a scalar")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"cross_entropy: targets must hold integers, got dtype {targets.dtype}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {targets.shape} do not match "
                         f"logits of shape {logits.shape} (want {logits.shape[:-1]})")
    V = logits.shape[-1]
    if targets.size == 0:
        raise ValueError("cross_entropy: there are no targets")
    keep = targets != ignore_index
    counted = targets[keep]
    if counted.size and (counted.min() < 0 or counted.max() >= V):
        raise ValueError(f"cross_entropy: targets must lie in [0, {V}) or equal ignore_index={ignore_index}, "
                         f"got values from {counted.min()} to {counted.max()}")
    return CrossEntropy.apply(logits, targets=targets, mean=reduction == "mean",
                              keep=None if keep.all() else keep)


class BinaryCrossEntropy(Function):
    """L = sum -[t log σ(z) + (1 - t) log(1 - σ(z))] = sum max(z, 0) - z t + log(1 + exp(-|z|)) (/ N);
    dL/dz = g * (σ(z) - t) (/ N);  dL = sum dz · (σ(z) - t) (/ N)"""
    __slots__ = ("scale",)
    lowering = ("{y} = (np.maximum({a}, 0) - {a} * {kw[targets]} + np.log1p(np.exp(-np.abs({a})))).sum()"
                " * {ctx.scale}")
    batched_jvp = True
    differentiable_backward = True
    saves = (0, None)

    @staticmethod
    def forward(ctx, z, targets=None, mean=False):
        ctx.scale = 1.0 / z.size if mean else 1.0
        ctx.save_for_backward(z, targets)
        # the log-sum-exp form: never log(0) nor exp of a large positive number
        loss = (np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))).sum()
        return np.asarray(loss * ctx.scale, dtype=z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, targets = ctx.saved_tensors
        return ((sigmoid(z) - targets) * (g * ctx.scale),)         # the sigmoid's y(1-y) cancels

    @staticmethod
    def jvp(ctx, dz):
        z, targets = ctx.saved_tensors
        return dz.reshape(len(dz), -1) @ (_sigmoid(z) - targets).ravel() * ctx.scale  # (K,)


def binary_cross_entropy(logits: Tensor, targets: Any, reduction: str = "sum") -> Tensor:
    """Cross-entropy of a sigmoid output y = σ(logits) against targets t in [0, 1], same shape -> scalar.

    Takes the LOGITS, as PyTorch's binary_cross_entropy_with_logits does: the sigmoid and the loss are
    one op, finite for logits of ±1e4, with gradient σ(z) - t (the cancellation of the documents).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"binary_cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    logits = logits if isinstance(logits, Tensor) else Tensor(logits)
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if targets.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy: targets of shape {targets.shape} do not match "
                         f"logits of shape {logits.shape}")
    if logits.size == 0:
        raise ValueError("binary_cross_entropy: there are no targets")
    if targets.dtype == bool or np.issubdtype(targets.dtype, np.integer):
        targets = targets.astype(logits.dtype)
    if not np.issubdtype(targets.dtype, np.floating):
        raise ValueError(f"binary_cross_entropy: targets must be real numbers in [0, 1], got dtype {targets.dtype}")
    if targets.min() < 0 or targets.max() > 1:
        raise ValueError(f"binary_cross_entropy: targets must lie in [0, 1], "
                         f"got values from {targets.min()} to {targets.max()}")
    return BinaryCrossEntropy.apply(logits, targets=targets.astype(logits.dtype, copy=False),
                                    mean=reduction == "mean")


def mse(pred: Tensor, target: Any, reduction: str = "sum") -> Tensor:
    """Quadratic error 0.5 * sum((pred - target)**2) -> scalar; "mean" divides by pred.size.

    The 0.5 is the min-char-rnn derivation's eq. (1), E = ½(t − y)², so that dE/dy = y − t (its eq. 12, 18–19);
    PyTorch's MSELoss has no 0.5.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    pred = pred if isinstance(pred, Tensor) else Tensor(pred)
    target_shape = np.shape(target.data if isinstance(target, Tensor) else target)
    if target_shape != pred.shape:
        raise ValueError(f"mse: target of shape {target_shape} does not match pred of shape {pred.shape}")
    d = pred - target
    sq = d * d
    return 0.5 * (sq.sum() if reduction == "sum" else sq.mean())
