"""A hand-written NumPy training step in the style of Karpathy's min-char-rnn, for RNN and LSTM.

The yardstick for benchmarks/bench.py: the same math as nn.CharRNN + cross_entropy (summed) + backward
+ clip to [-5, 5] + Adagrad, written out per time step with dicts as min-char-rnn does. A state is a
vector (H,) for one sequence, as in min-char-rnn, or rows (B, H) for a batch; np.dot(h, W.T) is
min-char-rnn's np.dot(W, h) in a form that takes both. The one-hot input is a column of W_xh.
"""
import numpy as np

__all__ = ["rnn_loss_fun", "lstm_loss_fun", "adagrad_update"]


def _outer_sum(u, v):
    """u v^T summed over rows: u (H,) or (B, H), v (D,) or (B, D) -> (H, D), one BLAS call
    (for vectors min-char-rnn's np.dot of a column and a row, ~2x np.outer at H=100)."""
    return np.dot(u[:, None], v[None, :]) if u.ndim == 1 else np.dot(u.T, v)


def _row_sum(d):
    return d if d.ndim == 1 else d.sum(axis=0)


def _add_columns(dW, idx, d):
    """dW[:, idx] += d^T: the gradient of a one-hot input's column gather (repeats in a batch add up)."""
    if np.ndim(idx) == 0:
        dW[:, idx] += d
    else:
        np.add.at(dW, (slice(None), idx), d.T)


def _softmax_step(ys, target):
    """-> (loss of this step, dy = p - onehot(target)) for logits ys (V,) or (B, V)."""
    e = np.exp(ys - ys.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    pick = target if ys.ndim == 1 else (np.arange(len(ys)), target)
    loss = -np.log(p[pick]).sum()
    p[pick] -= 1
    return loss, p


def rnn_loss_fun(P, inputs, targets, hprev):
    """min-char-rnn's lossFun: inputs/targets (T,) or (T, B) -> loss, grads (P's keys, clipped to [-5, 5]), last h."""
    W_xh, W_hh, b_h, W_hy, b_y = P["W_xh"], P["W_hh"], P["b_h"], P["W_hy"], P["b_y"]
    hs, dys = {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        hs[t] = np.tanh(W_xh[:, inputs[t]].T + np.dot(hs[t - 1], W_hh.T) + b_h)
        loss_t, dys[t] = _softmax_step(np.dot(hs[t], W_hy.T) + b_y, targets[t])
        loss += loss_t
    d = {k: np.zeros_like(v) for k, v in P.items()}
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = dys[t]
        d["W_hy"] += _outer_sum(dy, hs[t])
        d["b_y"] += _row_sum(dy)
        dh = np.dot(dy, W_hy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        d["b_h"] += _row_sum(dhraw)
        _add_columns(d["W_xh"], inputs[t], dhraw)
        d["W_hh"] += _outer_sum(dhraw, hs[t - 1])
        dhnext = np.dot(dhraw, W_hh)
    for dparam in d.values():
        np.clip(dparam, -5, 5, out=dparam)
    return loss, d, hs[len(inputs) - 1]


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))


def lstm_loss_fun(P, inputs, targets, state):
    """The same for the LSTM (gates i, f, g, o stacked in W_x, W_h, b): -> loss, grads, (h, s)."""
    W_x, W_h, b, W_hy, b_y = P["W_x"], P["W_h"], P["b"], P["W_hy"], P["b_y"]
    H = W_h.shape[1]
    hs, ss, gates, dys = {}, {}, {}, {}
    hs[-1], ss[-1] = np.copy(state[0]), np.copy(state[1])
    loss = 0.0
    for t in range(len(inputs)):
        a = W_x[:, inputs[t]].T + np.dot(hs[t - 1], W_h.T) + b
        i, f, o = _sigmoid(a[..., :H]), _sigmoid(a[..., H:2 * H]), _sigmoid(a[..., 3 * H:])
        g = np.tanh(a[..., 2 * H:3 * H])
        ss[t] = f * ss[t - 1] + i * g
        hs[t] = o * np.tanh(ss[t])
        gates[t] = (i, f, g, o)
        loss_t, dys[t] = _softmax_step(np.dot(hs[t], W_hy.T) + b_y, targets[t])
        loss += loss_t
    d = {k: np.zeros_like(v) for k, v in P.items()}
    dhnext, dsnext = np.zeros_like(hs[0]), np.zeros_like(ss[0])
    for t in reversed(range(len(inputs))):
        i, f, g, o = gates[t]
        dy = dys[t]
        d["W_hy"] += _outer_sum(dy, hs[t])
        d["b_y"] += _row_sum(dy)
        dh = np.dot(dy, W_hy) + dhnext
        tanh_s = np.tanh(ss[t])
        do = dh * tanh_s
        ds = dh * o * (1 - tanh_s * tanh_s) + dsnext
        di, df, dg = ds * g, ds * ss[t - 1], ds * i
        dsnext = ds * f
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=-1)
        d["b"] += _row_sum(da)
        _add_columns(d["W_x"], inputs[t], da)
        d["W_h"] += _outer_sum(da, hs[t - 1])
        dhnext = np.dot(da, W_h)
    for dparam in d.values():
        np.clip(dparam, -5, 5, out=dparam)
    return loss, d, (hs[len(inputs) - 1], ss[len(inputs) - 1])


def adagrad_update(P, d, mem, learning_rate):
    """min-char-rnn's parameter update, verbatim."""
    for k in P:
        mem[k] += d[k] * d[k]
        P[k] += -learning_rate * d[k] / np.sqrt(mem[k] + 1e-8)
