"""Backpropagation through time for the vanilla RNN, by hand in NumPy, as the "hello" tutorial, the
Oxford lecture notes, min-char-rnn's derivation and the Deep Learning book derive it.

Follows Karpathy's min-char-rnn line by line and the Deep Learning book's eqs. 10.8–10.28; also holds
the input checks that lstm.py and rtrl.py share, so every function rejects bad input the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from .softmax import _softmax_cross_entropy

__all__ = ["rnn_bptt"]

_RNN_NDIMS = {"W_xh": 2, "W_hh": 2, "b_h": 1, "W_hy": 2, "b_y": 1}


def rnn_bptt(params: Mapping[str, np.ndarray], inputs: ArrayLike, targets: ArrayLike,
             h0: Optional[ArrayLike] = None, truncate: Optional[int] = None
             ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Loss and exact gradients of a char-RNN by BPTT; inputs/targets (T,) or (T, B), h0 (H,) or (B, H)
    (min-char-rnn's column (H, 1) works too; None is zeros).

    Forward, x_t one-hot (book: U = W_xh, W = W_hh, V = W_hy, b = b_h, c = b_y):
        h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)                              (10.8, 10.9)
        y_t = W_hy h_t + b_y,   p_t = softmax(y_t),   loss = sum_t -log p_t[target_t]   (10.10–10.14)
    Backward, t = T-1 ... 0, dh_next = 0 at the end (min-char-rnn's names):
        dy      = p_t - onehot(target_t)                                       (10.18)
        dW_hy  += dy h_t^T,   db_y += dy                                       (10.24, 10.22)
        dh      = W_hy^T dy + dh_next                                          (10.19–10.21)
        dhraw   = (1 - h_t^2) * dh                                             (back through tanh)
        db_h   += dhraw,  dW_hh += dhraw h_{t-1}^T,  dW_xh += dhraw x_t^T      (10.23, 10.26, 10.28)
        dh_next = W_hh^T dhraw
    truncate=k lets the loss term at t reach back through steps t, ..., t-k+1 only, with h_{t-k} held
    constant (per-loss-term truncation, which none of the documents describes; the lecture notes' truncation
    is chunks of k steps with the state carried and detached, nn.detach_state); None or k >= T is full BPTT.
    Batches add over rows.
    Returns (loss, grads, h_last): the summed natural-log cross-entropy, grads with params' keys,
    shapes and dtypes, and the last hidden state in h0's shape (feed it back as h0 to chain chunks).
    """
    fn = "rnn_bptt"
    given_h0 = h0
    P, inputs, targets, h0, batched = _check_rnn_args(fn, params, inputs, targets, h0)
    (T, B), H, dtype = inputs.shape, h0.shape[1], h0.dtype
    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer))
                                 or truncate < 1):
        raise ValueError(f"{fn}: truncate must be None or a positive int, got {truncate!r}")
    W_xh, W_hh, b_h, W_hy, b_y = (P[k] for k in _RNN_NDIMS)

    # Forward; rows are the batch, so W x becomes x @ W.T.
    hs = np.empty((T, B, H), dtype)
    h = h0
    for t in range(T):
        # W_xh x_t for a one-hot x_t is the column W_xh[:, x_t]: gather, never a one-hot matmul
        h = _rnn_step(W_xh[:, inputs[t]].T, h, W_hh, b_h)  # (B, H)
        hs[t] = h
    h_prev = np.concatenate([h0[None], hs[:-1]])  # h_{t-1} for every t: (T, B, H)
    loss, dy = _softmax_cross_entropy(hs @ W_hy.T + b_y, targets)  # dy = p - onehot: (T, B, K)

    # Backward. The output layer does not recur, so its gradients sum over all t at once.
    d = {k: np.zeros(v.shape, dtype) for k, v in P.items()}  # d["W_hh"] reads as dW_hh
    d["W_hy"] = np.einsum("tbk,tbh->kh", dy, hs)  # sum_t dy h_t^T  (10.24)
    d["b_y"] = dy.sum(axis=(0, 1))                 # (10.22)
    dh_out = dy @ W_hy                             # W_hy^T dy for every t: (T, B, H)

    def step_back(t: int, dh: np.ndarray) -> np.ndarray:
        """Through step t's tanh into W_xh, W_hh, b_h; returns dh_next, the gradient on h_{t-1}."""
        dhraw, dh_next = _rnn_step_back(dh, hs[t], W_hh)         # (B, H) each
        d["b_h"] += dhraw.sum(axis=0)                            # (10.23)
        d["W_hh"] += dhraw.T @ h_prev[t]                         # sum over rows of dhraw h_{t-1}^T  (10.26)
        np.add.at(d["W_xh"], (slice(None), inputs[t]), dhraw.T)  # dhraw x_t^T: a column scatter-add (10.28)
        return dh_next

    if truncate is None or truncate >= T:
        dh_next = np.zeros((B, H), dtype)
        for t in reversed(range(T)):
            dh = dh_out[t] + dh_next  # from the output at t and from every later step (10.21)
            dh_next = step_back(t, dh)
    else:
        # each loss term walks back on its own, at most `truncate` steps: O(T * truncate)
        for t in range(T):
            dh = dh_out[t]
            for s in range(t, max(t - truncate, -1), -1):
                dh = step_back(s, dh)

    grads = {k: d[k].astype(P[k].dtype, copy=False) for k in _RNN_NDIMS}
    return loss, grads, _as_given(hs[-1], given_h0, batched)


def _rnn_step(xw: np.ndarray, h_prev: np.ndarray, W_hh: np.ndarray, b_h: np.ndarray,
              out: Optional[np.ndarray] = None) -> np.ndarray:
    """One step forward, h_t = tanh(xw + W_hh h_{t-1} + b_h) with xw = W_xh x_t (10.8, 10.9): rows (..., H),
    written into `out` when given (then no temporary array is made).

    Shared with nn.CharRNN(fused=True), whose step is this function and _rnn_step_back.
    """
    a = np.matmul(h_prev, W_hh.T, out=out)  # W_hh h_{t-1} for every row
    a += xw
    a += b_h
    return np.tanh(a, out=a)


def _rnn_step_back(dh: np.ndarray, h: np.ndarray, W_hh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step back from dh = dL/dh_t (every use of h_t summed): (dhraw, dh_next), rows (..., H).

    dhraw = (1 - h_t^2) * dh is dL/da_t (back through tanh); dh_next = W_hh^T dhraw is dL/dh_{t-1}.
    The weights' gradients are dhraw x_t^T, dhraw h_{t-1}^T and dhraw (10.23, 10.26, 10.28).
    """
    dhraw = (1.0 - h * h) * dh
    return dhraw, dhraw @ W_hh


def _check_rnn_args(fn: str, params: Mapping, inputs: ArrayLike, targets: ArrayLike, h0: ArrayLike
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, bool]:
    """The checks rnn_bptt and rnn_rtrl share: (params, inputs (T, B), targets (T, B), h0 (B, H), batched)."""
    P = _check_params(fn, params, _RNN_NDIMS)
    (H, V), K = P["W_xh"].shape, P["W_hy"].shape[0]
    _check_shapes(fn, P, {"W_hh": (H, H), "b_h": (H,), "W_hy": (K, H), "b_y": (K,)},
                  f"H={H}, V={V} from W_xh, K={K} from W_hy")
    inputs, targets, batched = _check_sequences(fn, inputs, targets, V, K)
    h0 = _check_state(fn, "h0", h0, H, inputs.shape[1], batched, np.result_type(*P.values()))
    return P, inputs, targets, h0, batched


def _check_params(fn: str, params: Mapping, ndims: dict[str, int]) -> dict[str, np.ndarray]:
    """params as float arrays of the right ndim, under exactly the keys of ndims."""
    expected = ", ".join(ndims)
    if not isinstance(params, Mapping):
        raise ValueError(f"{fn}: params must be a dict with keys {expected}, got {type(params).__name__}")
    for k in ndims:
        if k not in params:
            raise ValueError(f"{fn}: params is missing key {k!r} (expected keys {expected})")
    for k in params:
        if k not in ndims:
            raise ValueError(f"{fn}: params has unexpected key {k!r} (expected keys {expected})")
    arrays = {}
    for k, ndim in ndims.items():
        a = np.asarray(params[k])
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{fn}: {k} must be a floating-point array, got dtype {a.dtype}")
        if a.ndim != ndim:
            raise ValueError(f"{fn}: {k} must be {ndim}-D, got shape {a.shape}")
        arrays[k] = a
    return arrays


def _check_shapes(fn: str, arrays: dict[str, np.ndarray], expected: dict[str, tuple], sizes: str) -> None:
    """Each named array has its expected shape; `sizes` says where the sizes were read from."""
    for k, shape in expected.items():
        if arrays[k].shape != shape:
            raise ValueError(f"{fn}: {k} has shape {arrays[k].shape}, expected {shape} ({sizes})")


def _check_sequences(fn: str, inputs: ArrayLike, targets: ArrayLike, V: int, K: int
                     ) -> tuple[np.ndarray, np.ndarray, bool]:
    """inputs in [0, V) and targets in [0, K), both (T,) or (T, B); returned as (T, B) plus `batched`."""
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    for name, a, n, size in (("inputs", inputs, V, "V"), ("targets", targets, K, "K")):
        if a.size == 0:
            raise ValueError(f"{fn}: {name} is empty, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{fn}: {name} must be integers, got dtype {a.dtype}")
        if a.ndim not in (1, 2):
            raise ValueError(f"{fn}: {name} must have shape (T,) or (T, B), got {a.shape}")
        bad = a[(a < 0) | (a >= n)]
        if bad.size:
            raise ValueError(f"{fn}: {name} holds {bad[0]}, outside [0, {n}) ({size}={n})")
    if inputs.shape != targets.shape:
        raise ValueError(f"{fn}: inputs shape {inputs.shape} and targets shape {targets.shape} differ")
    batched = inputs.ndim == 2
    T = inputs.shape[0]
    return inputs.reshape(T, -1), targets.reshape(T, -1), batched


def _check_state(fn: str, name: str, state: Optional[ArrayLike], H: int, B: int, batched: bool,
                 dtype: np.dtype) -> np.ndarray:
    """A state of shape (B, H) for batched inputs, else (H,) or min-char-rnn's column (H, 1);
    None means zeros. Returned as (B, H) in dtype."""
    if state is None:
        return np.zeros((B, H), dtype)
    state = np.asarray(state)
    if not (np.issubdtype(state.dtype, np.floating) or np.issubdtype(state.dtype, np.integer)):
        raise ValueError(f"{fn}: {name} must be a real array, got dtype {state.dtype}")
    want = (B, H) if batched else (H,)
    if state.shape != want and not (not batched and state.shape == (H, 1)):
        kind = f"inputs of shape (T, B) with B={B}" if batched else "unbatched inputs of shape (T,)"
        raise ValueError(f"{fn}: {name} has shape {state.shape}, expected {want} for {kind}")
    return state.astype(dtype).reshape(B, H)


def _as_given(last: np.ndarray, given: Optional[ArrayLike], batched: bool) -> np.ndarray:
    """The last state, (B, H) rows, in the shape the first one was given: (B, H), (H,) or (H, 1)."""
    if batched:
        return last
    return last[0] if given is None else last[0].reshape(np.shape(given))
