"""Backpropagation through time for the LSTM, by hand in NumPy.

Gate blocks i, f, g, o as in PyTorch; with cell_input="sigmoid" it is exactly the Deep Learning book's
eqs. 10.40–10.44. The output layer and the loss are those of rnn.py.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from .rnn import _as_given, _check_params, _check_sequences, _check_shapes, _check_state
from .softmax import _softmax_cross_entropy

__all__ = ["lstm_bptt"]

_LSTM_NDIMS = {"W_x": 2, "W_h": 2, "b": 1, "W_hy": 2, "b_y": 1}


def lstm_bptt(params: Mapping[str, np.ndarray], inputs: ArrayLike, targets: ArrayLike,
              state0: Optional[tuple] = None, cell_input: str = "tanh"
              ) -> tuple[float, dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loss and exact gradients of a char-LSTM by BPTT; inputs/targets (T,) or (T, B), state0 = (h0, s0).

    Forward, x_t one-hot, W_x (4H, V), W_h (4H, H), b (4H,) stacked in blocks i, f, g, o:
        a = W_x x_t + W_h h_{t-1} + b
        i = σ(a_i),  f = σ(a_f),  g = act(a_g),  o = σ(a_o)       act = tanh, or σ if cell_input="sigmoid"
        s_t = f * s_{t-1} + i * g,   h_t = o * tanh(s_t)
        y_t = W_hy h_t + b_y,  loss = sum_t -log softmax(y_t)[target_t]
    Backward, t = T-1 ... 0, dh_next = ds_next = 0 at the end (ds_next is PyTorch/Karpathy's dc_next):
        dy = p_t - onehot(target_t),  dh = W_hy^T dy + dh_next
        do = dh * tanh(s_t),          ds = dh * o * (1 - tanh(s_t)^2) + ds_next
        di = ds * g,  df = ds * s_{t-1},  dg = ds * i,  ds_next = ds * f
        da = [di σ'(a_i), df σ'(a_f), dg act'(a_g), do σ'(a_o)]   with σ' = σ(1 - σ), tanh' = 1 - tanh^2
        db += da,  dW_h += da h_{t-1}^T,  dW_x += da x_t^T,  dh_next = W_h^T da
    Deep Learning book, cell_input="sigmoid" (eqs. 10.40–10.44; careful, the book's g is our i):
        here   book                                    rows of W_x / W_h / b
        i      g, external input gate (10.42)          0:H    (U^g, W^g, b^g)
        f      f, forget gate (10.40)                  H:2H   (U^f, W^f, b^f)
        g      σ(b + U x + W h), cell input (10.41)    2H:3H  (U, W, b)
        o      q, output gate (10.44)                  3H:4H  (U^o, W^o, b^o)
        s, h   s internal state (10.41), h (10.43)
    Returns (loss, grads, (h_last, s_last)); grads has params' keys, shapes and dtypes.
    """
    fn = "lstm_bptt"
    if cell_input not in ("tanh", "sigmoid"):
        raise ValueError(f"{fn}: cell_input must be 'tanh' or 'sigmoid', got {cell_input!r}")
    P = _check_params(fn, params, _LSTM_NDIMS)
    V, H, K = P["W_x"].shape[1], P["W_h"].shape[1], P["W_hy"].shape[0]
    _check_shapes(fn, P, {"W_x": (4 * H, V), "W_h": (4 * H, H), "b": (4 * H,), "W_hy": (K, H), "b_y": (K,)},
                  f"H={H} from W_h, V={V} from W_x, K={K} from W_hy")
    inputs, targets, batched = _check_sequences(fn, inputs, targets, V, K)
    T, B = inputs.shape
    dtype = np.result_type(*P.values())
    state0 = (None, None) if state0 is None else state0  # zeros, as for a first chunk
    if not (isinstance(state0, (tuple, list)) and len(state0) == 2):
        raise ValueError(f"{fn}: state0 must be a pair (h0, s0), got {type(state0).__name__}")
    h0 = _check_state(fn, "h0", state0[0], H, B, batched, dtype)
    s0 = _check_state(fn, "s0", state0[1], H, B, batched, dtype)
    W_x, W_h, b, W_hy, b_y = (P[k] for k in _LSTM_NDIMS)

    # Forward; rows are the batch. Keep the activated gates: their derivatives reuse them.
    gates = np.empty((T, B, 4 * H), dtype)
    hs, ss = np.empty((T, B, H), dtype), np.empty((T, B, H), dtype)
    h, s = h0, s0
    for t in range(T):
        z, s, h = _lstm_step(W_x[:, inputs[t]].T, h, s, W_h, b, cell_input)  # one-hot x_t: a column gather
        gates[t], ss[t], hs[t] = z, s, h
    h_prev = np.concatenate([h0[None], hs[:-1]])  # (T, B, H)
    s_prev = np.concatenate([s0[None], ss[:-1]])
    loss, dy = _softmax_cross_entropy(hs @ W_hy.T + b_y, targets)  # dy = p - onehot: (T, B, K)

    d = {k: np.zeros(v.shape, dtype) for k, v in P.items()}  # d["W_h"] reads as dW_h
    d["W_hy"] = np.einsum("tbk,tbh->kh", dy, hs)
    d["b_y"] = dy.sum(axis=(0, 1))
    dh_next, ds_next = np.zeros((B, H), dtype), np.zeros((B, H), dtype)
    for t in reversed(range(T)):
        dh = dy[t] @ W_hy + dh_next                   # from the output at t and from step t+1
        da, dh_next, ds_next = _lstm_step_back(dh, ds_next, gates[t], ss[t], s_prev[t], W_h, cell_input)
        d["b"] += da.sum(axis=0)
        d["W_h"] += da.T @ h_prev[t]
        np.add.at(d["W_x"], (slice(None), inputs[t]), da.T)  # da x_t^T: a column scatter-add

    grads = {k: d[k].astype(P[k].dtype, copy=False) for k in _LSTM_NDIMS}
    return loss, grads, (_as_given(hs[-1], state0[0], batched), _as_given(ss[-1], state0[1], batched))


def _lstm_step(xw: np.ndarray, h_prev: np.ndarray, s_prev: np.ndarray, W_h: np.ndarray, b: np.ndarray,
               cell_input: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step forward from xw = W_x x_t, rows (..., 4H) -> (gates [i, f, g, o] activated, s_t, h_t).

    Shared with nn.CharRNN(fused=True), whose step is this function and _lstm_step_back.
    """
    H = W_h.shape[1]
    a = xw + h_prev @ W_h.T + b                   # all four pre-activations: (..., 4H)
    z = _sigmoid(a)
    if cell_input == "tanh":
        z[..., 2 * H:3 * H] = np.tanh(a[..., 2 * H:3 * H])
    i, f, g, o = z[..., :H], z[..., H:2 * H], z[..., 2 * H:3 * H], z[..., 3 * H:]
    s = f * s_prev + i * g
    return z, s, o * np.tanh(s)


def _lstm_step_back(dh: np.ndarray, ds_next: np.ndarray, gates: np.ndarray, s: np.ndarray, s_prev: np.ndarray,
                    W_h: np.ndarray, cell_input: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step back from dh = dL/dh_t (every use summed) and ds_next (what s_{t+1} sends to s_t):
    (da, dh_next, ds_next) = (dL/da_t (..., 4H), dL/dh_{t-1}, dL/ds_{t-1}); the equations are lstm_bptt's."""
    H = W_h.shape[1]
    i, f, g, o = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H], gates[..., 3 * H:]
    tanh_s = np.tanh(s)
    do = dh * tanh_s                                # h = o * tanh(s)
    ds = dh * o * (1.0 - tanh_s * tanh_s) + ds_next  # s_t feeds h_t and s_{t+1}
    di, df, dg = ds * g, ds * s_prev, ds * i        # s = f * s_prev + i * g
    dg_act = dg * (1.0 - g * g) if cell_input == "tanh" else dg * g * (1.0 - g)
    da = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg_act, do * o * (1.0 - o)], axis=-1)
    return da, da @ W_h, ds * f                     # W_h^T da, and s_{t-1}'s share of s_t


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # tanh form: the same σ, but never overflows exp for large |a|
    return 0.5 * (1.0 + np.tanh(0.5 * a))
