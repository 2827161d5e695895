"""Losses: the fused softmax cross-entropy of min-char-rnn and the quadratic error of the seeds.

CrossEntropy is one op (log-softmax and pick in one node) whose gradient is the familiar
softmax(z) - onehot(t); mse is 0.5 * sum((y - t)**2), so its gradient is y - t.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Function, Tensor

__all__ = ["cross_entropy", "mse"]

_REDUCTIONS = ("sum", "mean")


def _probs_minus_onehot(ctx: Function) -> np.ndarray:
    """dL/dz for g = 1: softmax(z_n) - onehot(t_n), rows (N, V), a fresh array."""
    probs, picks, _ = ctx.saved_tensors
    dz = probs.copy()
    dz[picks] -= 1
    return dz


class CrossEntropy(Function):
    """L = -sum_n log softmax(z_n)[t_n] (/ N for "mean");  dL/dz_n = g * (softmax(z_n) - onehot(t_n)) (/ N);
    dL = sum_n dz_n · (softmax(z_n) - onehot(t_n)) (/ N)"""
    __slots__ = ("scale",)
    batched_jvp = True  # takes tangents (K, *shape), as every built-in op

    @staticmethod
    def forward(ctx, logits, targets=None, mean=False):
        rows = logits.reshape(-1, logits.shape[-1])                # (N, V)
        picks = (np.arange(rows.shape[0]), targets.reshape(-1))
        shifted = rows - rows.max(axis=1, keepdims=True)           # subtract the max: exp cannot overflow
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        ctx.scale = 1.0 / rows.shape[0] if mean else 1.0
        ctx.save_for_backward(e / total, picks, logits.shape)
        loss = (np.log(total[:, 0]) - shifted[picks]).sum()
        return np.asarray(loss * ctx.scale, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        dz = _probs_minus_onehot(ctx)
        dz *= g * ctx.scale
        return (dz.reshape(ctx.saved_tensors[2]),)

    @staticmethod
    def jvp(ctx, dz):
        return dz.reshape(len(dz), -1) @ _probs_minus_onehot(ctx).ravel() * ctx.scale  # (K,)


def cross_entropy(logits: Tensor, targets: Any, reduction: str = "sum") -> Tensor:
    """Softmax cross-entropy of logits (..., V) against int targets (...) -> scalar (natural log)."""
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
    if targets.min() < 0 or targets.max() >= V:
        raise ValueError(f"cross_entropy: targets must lie in [0, {V}), "
                         f"got values from {targets.min()} to {targets.max()}")
    return CrossEntropy.apply(logits, targets=targets, mean=reduction == "mean")


def mse(pred: Tensor, target: Any, reduction: str = "sum") -> Tensor:
    """Quadratic error 0.5 * sum((pred - target)**2) -> scalar; "mean" divides by pred.size.

    The 0.5 is the seeds' convention (dL/dpred = pred - target); PyTorch's MSELoss has no 0.5.
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
