"""Backpropagation through time for the GRU, by hand in NumPy.

PyTorch's nn.GRUCell (gate blocks r, z, n; the reset gate multiplies W_hn h + b_hn, after the matmul,
where the Deep Learning book's eq. 10.45 puts it before). The output layer and the loss are those of rnn.py.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from .lstm import _sigmoid
from .rnn import _as_given, _check_params, _check_sequences, _check_shapes, _check_state
from .softmax import _softmax_cross_entropy

__all__ = ["gru_bptt"]

_GRU_NDIMS = {"W_x": 2, "W_h": 2, "b_x": 1, "b_h": 1, "W_hy": 2, "b_y": 1}


def gru_bptt(params: Mapping[str, np.ndarray], inputs: ArrayLike, targets: ArrayLike,
             h0: Optional[ArrayLike] = None) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Loss and exact gradients of a char-GRU by BPTT; inputs/targets (T,) or (T, B), h0 (H,) or (B, H)
    (a column (H, 1) works too; None is zeros).

    Forward, x_t one-hot, W_x (3H, V), W_h (3H, H), b_x, b_h (3H,) stacked in blocks r, z, n:
        ax = W_x x_t + b_x,   ah = W_h h_{t-1} + b_h                      (input side, hidden side)
        r = σ(ax_r + ah_r),   z = σ(ax_z + ah_z)                          (reset, update gates)
        n = tanh(ax_n + r * ah_n)                                         (candidate)
        h_t = (1 - z) * n + z * h_{t-1}
        y_t = W_hy h_t + b_y,  loss = sum_t -log softmax(y_t)[target_t]
    Backward, t = T-1 ... 0, dh_next = 0 at the end:
        dy = p_t - onehot(target_t),  dh = W_hy^T dy + dh_next
        dn = dh * (1 - z),   dz = dh * (h_{t-1} - n)
        dnraw = dn * (1 - n^2),   dr = dnraw * ah_n
        drraw = dr * r (1 - r),   dzraw = dz * z (1 - z)
        dax = [drraw, dzraw, dnraw],   dah = [drraw, dzraw, r * dnraw]
        db_x += dax,  dW_x += dax x_t^T,  db_h += dah,  dW_h += dah h_{t-1}^T
        dh_next = z * dh + W_h^T dah                                      (h_{t-1} reaches h_t two ways)
    Returns (loss, grads, h_last): grads with params' keys, shapes and dtypes; h_last in h0's shape.
    """
    fn = "gru_bptt"
    P = _check_params(fn, params, _GRU_NDIMS)
    V, H, K = P["W_x"].shape[1], P["W_h"].shape[1], P["W_hy"].shape[0]
    _check_shapes(fn, P, {"W_x": (3 * H, V), "W_h": (3 * H, H), "b_x": (3 * H,), "b_h": (3 * H,),
                          "W_hy": (K, H), "b_y": (K,)}, f"H={H} from W_h, V={V} from W_x, K={K} from W_hy")
    inputs, targets, batched = _check_sequences(fn, inputs, targets, V, K)
    T, B = inputs.shape
    given_h0 = h0
    h0 = _check_state(fn, "h0", h0, H, B, batched, np.result_type(*P.values()))
    dtype = h0.dtype
    W_x, W_h, b_x, b_h, W_hy, b_y = (P[k] for k in _GRU_NDIMS)

    # Forward; rows are the batch. Keep the gates and ah_n: the backward reuses them.
    rs, zs, ns, ah_ns = (np.empty((T, B, H), dtype) for _ in range(4))
    hs = np.empty((T, B, H), dtype)
    h = h0
    for t in range(T):
        r, z, n, ah_n, h = _gru_step(W_x[:, inputs[t]].T + b_x, h, W_h, b_h)  # one-hot x_t: a column gather
        rs[t], zs[t], ns[t], ah_ns[t], hs[t] = r, z, n, ah_n, h
    h_prev = np.concatenate([h0[None], hs[:-1]])  # h_{t-1} for every t: (T, B, H)
    loss, dy = _softmax_cross_entropy(hs @ W_hy.T + b_y, targets)  # dy = p - onehot: (T, B, K)

    d = {k: np.zeros(v.shape, dtype) for k, v in P.items()}  # d["W_h"] reads as dW_h
    d["W_hy"] = np.einsum("tbk,tbh->kh", dy, hs)
    d["b_y"] = dy.sum(axis=(0, 1))
    dh_next = np.zeros((B, H), dtype)
    for t in reversed(range(T)):
        dh = dy[t] @ W_hy + dh_next               # from the output at t and from step t+1
        dax, dah, dh_next = _gru_step_back(dh, rs[t], zs[t], ns[t], ah_ns[t], h_prev[t], W_h)
        d["b_x"] += dax.sum(axis=0)
        np.add.at(d["W_x"], (slice(None), inputs[t]), dax.T)          # dax x_t^T: a column scatter-add
        d["b_h"] += dah.sum(axis=0)
        d["W_h"] += dah.T @ h_prev[t]

    grads = {k: d[k].astype(P[k].dtype, copy=False) for k in _GRU_NDIMS}
    return loss, grads, _as_given(hs[-1], given_h0, batched)


def _gru_step(ax: np.ndarray, h_prev: np.ndarray, W_h: np.ndarray, b_h: np.ndarray) -> tuple:
    """One step forward from the input side ax = W_x x_t + b_x (..., 3H) -> (r, z, n, ah_n, h_t), rows (..., H).

    Shared with nn.CharRNN(fused=True), whose step is this function and _gru_step_back.
    """
    H = W_h.shape[1]
    ah = h_prev @ W_h.T + b_h                     # hidden side: (..., 3H)
    r = _sigmoid(ax[..., :H] + ah[..., :H])
    z = _sigmoid(ax[..., H:2 * H] + ah[..., H:2 * H])
    ah_n = ah[..., 2 * H:]
    n = np.tanh(ax[..., 2 * H:] + r * ah_n)
    return r, z, n, ah_n, (1.0 - z) * n + z * h_prev


def _gru_step_back(dh: np.ndarray, r: np.ndarray, z: np.ndarray, n: np.ndarray, ah_n: np.ndarray,
                   h_prev: np.ndarray, W_h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step back from dh = dL/dh_t (every use summed): (dax, dah, dh_next), the gradients on the
    input side (..., 3H), the hidden side (..., 3H) and h_{t-1}; the equations are gru_bptt's."""
    dn = dh * (1.0 - z)                           # h = (1 - z) * n + z * h_prev
    dz = dh * (h_prev - n)
    dnraw = dn * (1.0 - n * n)                    # back through tanh
    dr = dnraw * ah_n                             # n's pre-activation holds r * ah_n
    drraw, dzraw = dr * r * (1.0 - r), dz * z * (1.0 - z)
    dax = np.concatenate([drraw, dzraw, dnraw], axis=-1)
    dah = np.concatenate([drraw, dzraw, r * dnraw], axis=-1)  # the reset gate scales ah_n
    return dax, dah, dh * z + dah @ W_h           # straight through z, and through W_h into all gates
