"""The min-char-rnn training step on PyTorch tensors, for RNN and LSTM: the PyTorch column of
benchmarks/bench.py, the same math as numpy_reference.py with autograd doing the backward.

Hand-written cells (gates i, f, g, o), the one-hot inputs as a row gather of W_xh^T, one output
matmul over all steps, summed cross-entropy; Adagrad by hand, since torch.optim.Adagrad adds its
eps outside the square root (min-char-rnn: p -= lr * g / sqrt(mem + 1e-8)).
Everything is kept row-major: a state is rows (B, H) or a vector (H,), and `h @ W.T` comes first in
each sum. A column-major h sends the backward to a transposed MKL GEMM about 10x slower.
"""
import torch
import torch.nn.functional as F

__all__ = ["rnn_loss_fun", "lstm_loss_fun", "adagrad_update"]


def _loss_and_clipped_grads(P, hs, targets):
    """Summed cross-entropy of the outputs over hs (T, [B,] H); leaves each P[k].grad clipped to [-5, 5]."""
    logits = hs @ P["W_hy"].T + P["b_y"]  # (T, [B,] V)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    for p in P.values():
        p.grad = None
    loss.backward()
    for p in P.values():
        p.grad.clamp_(-5, 5)
    return loss.item()


def rnn_loss_fun(P, inputs, targets, hprev):
    """inputs, targets (T,) or (T, B) int64 tensors, hprev (H,) or (B, H) -> loss, last h (detached)."""
    W_hh, b_h = P["W_hh"], P["b_h"]
    xw = P["W_xh"].T[inputs]  # (T, [B,] H): W_xh x_t for one-hot x_t, all steps at once
    h, hs = hprev, []
    for t in range(len(inputs)):
        h = torch.tanh(h @ W_hh.T + xw[t] + b_h)
        hs.append(h)
    loss = _loss_and_clipped_grads(P, torch.stack(hs), targets)
    return loss, h.detach()


def lstm_loss_fun(P, inputs, targets, state):
    """The same for the LSTM (gates i, f, g, o stacked in W_x, W_h, b): state (h, s) -> loss, (h, s)."""
    W_h, b = P["W_h"], P["b"]
    H = W_h.shape[1]
    xw = P["W_x"].T[inputs]  # (T, [B,] 4H)
    (h, s), hs = state, []
    for t in range(len(inputs)):
        a = h @ W_h.T + xw[t] + b
        i, f, o = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H:2 * H]), torch.sigmoid(a[..., 3 * H:])
        g = torch.tanh(a[..., 2 * H:3 * H])
        s = f * s + i * g
        h = o * torch.tanh(s)
        hs.append(h)
    loss = _loss_and_clipped_grads(P, torch.stack(hs), targets)
    return loss, (h.detach(), s.detach())


def adagrad_update(P, mem, learning_rate):
    """min-char-rnn's parameter update from P[k].grad, in place."""
    with torch.no_grad():
        for k, p in P.items():
            mem[k] += p.grad * p.grad
            p -= learning_rate * p.grad / torch.sqrt(mem[k] + 1e-8)
