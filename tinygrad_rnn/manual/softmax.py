"""Softmax by hand: its Jacobian (the "hello" tutorial's quotient rule, the book's D_j S_i = S_i(δ_ij - S_j)),
and softmax + cross-entropy whose gradient is dy = p - onehot (the book's eq. 10.18; min-char-rnn's code, not
the min-char-rnn derivation, whose y - t is the quadratic error of a linear output).

Pure NumPy; the stable forms subtract the max first. rnn.py, lstm.py and rtrl.py share the loss here.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["softmax_jacobian"]


def _log_softmax(y: np.ndarray) -> np.ndarray:
    """log softmax over the last axis."""
    z = y - y.max(axis=-1, keepdims=True)  # subtract the max so exp cannot overflow
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax_jacobian(z: ArrayLike) -> np.ndarray:
    """dσ_i/dz_j = σ_i (δ_ij - σ_j), i.e. diag(σ) - σσ^T, for σ = softmax(z); z (K,) -> (K, K)."""
    z = np.asarray(z)
    if z.ndim != 1:
        raise ValueError(f"softmax_jacobian: z must be 1-D, got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    p = np.exp(_log_softmax(z))
    return np.diag(p) - np.outer(p, p)


def _softmax_cross_entropy(y: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed -log p[target] and dy = dloss/dy = p - onehot(target); y (..., K), targets (...) ints."""
    K = y.shape[-1]
    logp = _log_softmax(y).reshape(-1, K)
    rows, cols = np.arange(logp.shape[0]), targets.reshape(-1)
    loss = -logp[rows, cols].sum()  # natural log, summed over time and batch (eq. 10.14)
    dy = np.exp(logp)
    dy[rows, cols] -= 1.0  # eq. 10.18: the softmax Jacobian times -1/p[target] collapses to p - onehot
    return float(loss), dy.reshape(y.shape)
