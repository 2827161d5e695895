"""A hand-written NumPy training step in the style of Karpathy's min-char-rnn, for RNN and LSTM.

The yardstick for benchmarks/char_rnn_step.py: the same math as nn.CharRNN + cross_entropy + backward
+ clip to [-5, 5] + Adagrad, written out per time step with dicts and 1-D vectors as min-char-rnn does.
The one-hot input is a column of W_xh (min-char-rnn's np.dot(Wxh, xs[t]) without the zeros).
"""
import numpy as np

__all__ = ["rnn_loss_fun", "lstm_loss_fun", "adagrad_update"]


def _outer(u, v):
    """u v^T as min-char-rnn writes it, np.dot of a column and a row (BLAS; ~2x np.outer at H=100)."""
    return np.dot(u[:, None], v[None, :])


def rnn_loss_fun(P, inputs, targets, hprev):
    """min-char-rnn's lossFun: -> loss, grads (P's keys, clipped to [-5, 5]), last h."""
    W_xh, W_hh, b_h, W_hy, b_y = P["W_xh"], P["W_hh"], P["b_h"], P["W_hy"], P["b_y"]
    hs, ps = {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        hs[t] = np.tanh(W_xh[:, inputs[t]] + np.dot(W_hh, hs[t - 1]) + b_h)
        ys = np.dot(W_hy, hs[t]) + b_y
        e = np.exp(ys - ys.max())
        ps[t] = e / np.sum(e)
        loss += -np.log(ps[t][targets[t]])
    d = {k: np.zeros_like(v) for k, v in P.items()}
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        d["W_hy"] += _outer(dy, hs[t])
        d["b_y"] += dy
        dh = np.dot(W_hy.T, dy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        d["b_h"] += dhraw
        d["W_xh"][:, inputs[t]] += dhraw
        d["W_hh"] += _outer(dhraw, hs[t - 1])
        dhnext = np.dot(W_hh.T, dhraw)
    for dparam in d.values():
        np.clip(dparam, -5, 5, out=dparam)
    return loss, d, hs[len(inputs) - 1]


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))


def lstm_loss_fun(P, inputs, targets, state):
    """The same for the LSTM (gates i, f, g, o stacked in W_x, W_h, b): -> loss, grads, (h, s)."""
    W_x, W_h, b, W_hy, b_y = P["W_x"], P["W_h"], P["b"], P["W_hy"], P["b_y"]
    H = W_h.shape[1]
    hs, ss, gates, ps = {}, {}, {}, {}
    hs[-1], ss[-1] = np.copy(state[0]), np.copy(state[1])
    loss = 0.0
    for t in range(len(inputs)):
        a = W_x[:, inputs[t]] + np.dot(W_h, hs[t - 1]) + b
        i, f, o = _sigmoid(a[:H]), _sigmoid(a[H:2 * H]), _sigmoid(a[3 * H:])
        g = np.tanh(a[2 * H:3 * H])
        ss[t] = f * ss[t - 1] + i * g
        hs[t] = o * np.tanh(ss[t])
        gates[t] = (i, f, g, o)
        ys = np.dot(W_hy, hs[t]) + b_y
        e = np.exp(ys - ys.max())
        ps[t] = e / np.sum(e)
        loss += -np.log(ps[t][targets[t]])
    d = {k: np.zeros_like(v) for k, v in P.items()}
    dhnext, dsnext = np.zeros(H), np.zeros(H)
    for t in reversed(range(len(inputs))):
        i, f, g, o = gates[t]
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        d["W_hy"] += _outer(dy, hs[t])
        d["b_y"] += dy
        dh = np.dot(W_hy.T, dy) + dhnext
        tanh_s = np.tanh(ss[t])
        do = dh * tanh_s
        ds = dh * o * (1 - tanh_s * tanh_s) + dsnext
        di, df, dg = ds * g, ds * ss[t - 1], ds * i
        dsnext = ds * f
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)])
        d["b"] += da
        d["W_x"][:, inputs[t]] += da
        d["W_h"] += _outer(da, hs[t - 1])
        dhnext = np.dot(W_h.T, da)
    for dparam in d.values():
        np.clip(dparam, -5, 5, out=dparam)
    return loss, d, (hs[len(inputs) - 1], ss[len(inputs) - 1])


def adagrad_update(P, d, mem, learning_rate):
    """min-char-rnn's parameter update, verbatim."""
    for k in P:
        mem[k] += d[k] * d[k]
        P[k] += -learning_rate * d[k] / np.sqrt(mem[k] + 1e-8)
