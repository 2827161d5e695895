"""Real-time recurrent learning (the Oxford lecture notes): the RNN's exact gradient in forward mode, in NumPy.

Carries the sensitivities dh_t/dθ forward in time instead of storing the states for a backward
sweep; the result equals rnn_bptt's, at a much higher cost per step.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from .rnn import _RNN_NDIMS, _check_rnn_args
from .softmax import _softmax_cross_entropy

__all__ = ["rnn_rtrl"]


def rnn_rtrl(params: Mapping[str, np.ndarray], inputs: ArrayLike, targets: ArrayLike,
             h0: Optional[ArrayLike] = None) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of rnn_bptt's RNN by real-time recurrent learning; inputs (T,) or (T, B).

    With a_t = W_xh x_t + W_hh h_{t-1} + b_h and h_t = tanh(a_t), carry J_t = dh_t/dθ for each
    recurrent θ in {W_xh, W_hh, b_h} forward, starting from J_{-1} = 0 (h0 is a constant):
        J_t = diag(1 - h_t^2) (∂a_t/∂θ + W_hh J_{t-1})
        ∂a_i/∂W_hh[j,k] = δ_ij h_{t-1,k},  ∂a_i/∂W_xh[j,v] = δ_ij [v = x_t],  ∂a_i/∂b_h[j] = δ_ij
    and add each loss term as soon as it is seen: dθ += (W_hy^T dy_t)^T J_t with dy_t = p_t - onehot;
    W_hy and b_y do not recur, so dW_hy += dy_t h_t^T and db_y += dy_t as in BPTT.
    Cost: W_hh J_{t-1} is O(H^2·|θ|) per step with |θ| = H·V + H^2 + H, and J takes O(H·|θ|) memory
    whatever T is; BPTT costs O(H^2) per step but keeps all T states (O(T) memory) for its backward
    sweep. Returns (loss, grads) with params' keys, shapes and dtypes.
    """
    P, inputs, targets, h, _ = _check_rnn_args("rnn_rtrl", params, inputs, targets, h0)
    (T, B), (H, V), dtype = inputs.shape, P["W_xh"].shape, h.dtype
    W_xh, W_hh, b_h, W_hy, b_y = (P[k] for k in _RNN_NDIMS)

    eye, rows = np.eye(H, dtype=dtype), np.arange(B)
    J = {"W_xh": np.zeros((B, H, H, V), dtype),  # J[b, i, j, v] = dh_i / dW_xh[j, v], row b of the batch
         "W_hh": np.zeros((B, H, H, H), dtype),
         "b_h": np.zeros((B, H, H), dtype)}
    d = {k: np.zeros(v.shape, dtype) for k, v in P.items()}
    loss = 0.0
    for t in range(T):
        h_prev = h
        h = np.tanh(W_xh[:, inputs[t]].T + h_prev @ W_hh.T + b_h)  # (B, H), as in rnn_bptt
        x = np.zeros((B, V), dtype)
        x[rows, inputs[t]] = 1.0  # one-hot x_t, only to spell out ∂a/∂W_xh below
        da_dtheta = {"W_xh": np.einsum("ij,bv->bijv", eye, x),
                     "W_hh": np.einsum("ij,bk->bijk", eye, h_prev),
                     "b_h": np.broadcast_to(eye, (B, H, H))}
        for k in J:
            J[k] = np.einsum("bi,bi...->bi...", 1.0 - h ** 2,
                             da_dtheta[k] + np.einsum("ij,bj...->bi...", W_hh, J[k]))  # the O(H^2·|θ|) step

        step_loss, dy = _softmax_cross_entropy(h @ W_hy.T + b_y, targets[t])  # dy: (B, K)
        loss += step_loss
        dh = dy @ W_hy  # dL_t/dh_t = W_hy^T dy: (B, H)
        for k in J:
            d[k] += np.einsum("bi,bi...->...", dh, J[k])
        d["W_hy"] += dy.T @ h
        d["b_y"] += dy.sum(axis=0)

    return loss, {k: d[k].astype(P[k].dtype, copy=False) for k in _RNN_NDIMS}
