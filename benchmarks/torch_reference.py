"""The min-char-rnn training step on PyTorch tensors, for RNN and LSTM: the PyTorch column of
benchmarks/char_rnn_step.py, the same math as numpy_reference.py with autograd doing the backward.

Hand-written cells (gates i, f, g, o), the one-hot inputs as a column gather of W_xh, one output
matmul over all steps, summed cross-entropy; Adagrad by hand, since torch.optim.Adagrad adds its
eps outside the square root (min-char-rnn: p -= lr * g / sqrt(mem + 1e-8)).
"""
import torch
import torch.nn.functional as F

__all__ = ["rnn_loss_fun", "lstm_loss_fun", "adagrad_update"]


def _loss_and_clipped_grads(P, hs, targets):
    """Summed cross-entropy of the outputs over hs (T, H); leaves each P[k].grad clipped to [-5, 5]."""
    logits = hs @ P["W_hy"].T + P["b_y"]  # (T, V)
    loss = F.cross_entropy(logits, targets, reduction="sum")
    for p in P.values():
        p.grad = None
    loss.backward()
    for p in P.values():
        p.grad.clamp_(-5, 5)
    return loss.item()


def rnn_loss_fun(P, inputs, targets, hprev):
    """inputs, targets (T,) int64 tensors, hprev (H,) -> loss, last h (detached); grads in P[k].grad."""
    W_hh, b_h = P["W_hh"], P["b_h"]
    xw = P["W_xh"][:, inputs].T  # (T, H): W_xh x_t for one-hot x_t, all steps at once
    h, hs = hprev, []
    for t in range(len(inputs)):
        h = torch.tanh(xw[t] + W_hh @ h + b_h)
        hs.append(h)
    loss = _loss_and_clipped_grads(P, torch.stack(hs), targets)
    return loss, h.detach()


def lstm_loss_fun(P, inputs, targets, state):
    """The same for the LSTM (gates i, f, g, o stacked in W_x, W_h, b): state (h, s) -> loss, (h, s)."""
    W_h, b = P["W_h"], P["b"]
    H = W_h.shape[1]
    xw = P["W_x"][:, inputs].T  # (T, 4H)
    (h, s), hs = state, []
    for t in range(len(inputs)):
        a = xw[t] + W_h @ h + b
        i, f, o = torch.sigmoid(a[:H]), torch.sigmoid(a[H:2 * H]), torch.sigmoid(a[3 * H:])
        g = torch.tanh(a[2 * H:3 * H])
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
