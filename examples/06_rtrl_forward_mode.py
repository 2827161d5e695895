"""06 · real-time recurrent learning is forward-mode differentiation; BPTT is reverse mode.

The Oxford lecture notes call RTRL "the forward mode of automatic differentiation": carry the
sensitivities dh(t)/dθ forward with the state, add dL(t)/dθ as each step's loss appears, and never go
back. The engine has both modes on the same ops: backward() (reverse) and tr.jvp (forward, one
directional derivative J·v per pass); analysis.rtrl_grads carries every direction of θ at once.

    python examples/06_rtrl_forward_mode.py   (TINYGRAD_RNN_QUICK=1: shorter runs)
"""
# %% [markdown]
# ## 1. One direction v: the forward-mode tangent of L equals ∇L · v from the backward pass

# %%
import os
import time
import tracemalloc

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, analysis, manual, nn
from tinygrad_rnn.data import Vocab

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
vocab = Vocab("hello")
ids = vocab.encode("hellohello")
x, y = ids[:-1], ids[1:]
H = 4
model = nn.CharRNN(vocab.size, H, rng=np.random.default_rng(0))
names = list(model.named_parameters())
theta = [p.data for p in model.parameters()]


def loss_of(W_xh, W_hh, b_h, W_hy, b_y):
    """L(θ) written with the parameters as arguments, so tr.jvp can move them."""
    h, total = Tensor(np.zeros(H)), 0.0
    for t in range(len(x)):
        h = (W_xh[:, int(x[t])] + W_hh @ h + b_h).tanh()              # eq. 10.8–10.9
        total = total + nn.cross_entropy((W_hy @ h + b_y).reshape(1, -1), y[t:t + 1])
    return total


rng = np.random.default_rng(1)
v = [rng.standard_normal(p.shape) for p in theta]
loss, tangent = tr.jvp(loss_of, theta, v)                 # one forward pass, no backward
nn.cross_entropy(model(x)[0], y).backward()
grad = [p.grad for p in model.parameters()]
print(f"L = {loss.item():.12f}; forward mode dL·v = {float(tangent):.12f}; "
      f"reverse mode ∇L·v = {sum((g * d).sum() for g, d in zip(grad, v)):.12f}")

# %% [markdown]
# ## 2. The whole gradient in forward mode: one direction per entry of θ (here P passes)

# %%
P = sum(p.size for p in theta)
forward = []
for k, p in enumerate(theta):
    g = np.zeros(p.size)
    for i in range(p.size):                               # basis direction e_i of parameter k
        e = [np.zeros(q.shape) for q in theta]
        e[k].flat[i] = 1.0
        g[i] = float(tr.jvp(loss_of, theta, e)[1])
    forward.append(g.reshape(p.shape))
print(f"{P} forward passes for P = {P} parameters, against one backward pass")
print(f"max |forward mode, one pass per entry - backward| = {max(np.abs(f - g).max() for f, g in zip(forward, grad)):.1e}")

# %% [markdown]
# ## 3. RTRL: all P directions carried at once through the steps (analysis.rtrl_grads), any cell

# %%
rtrl = analysis.rtrl_grads(model, x, y)
print(f"max |analysis.rtrl_grads - backward| = {max(np.abs(rtrl[n] - g).max() for n, g in zip(names, grad)):.1e}")
seed_names = {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"}
_, hand = manual.rnn_rtrl({k: model.named_parameters()[n].data for n, k in seed_names.items()}, x, y)
print(f"max |analysis.rtrl_grads - manual.rnn_rtrl (by hand)| = "
      f"{max(np.abs(rtrl[n] - hand[k]).max() for n, k in seed_names.items()):.1e}")
lstm = nn.CharRNN(vocab.size, H, cell="lstm", rng=np.random.default_rng(0))
nn.cross_entropy(lstm(x)[0], y).backward()
lstm_rtrl = analysis.rtrl_grads(lstm, x, y)
print(f"max |LSTM rtrl_grads - backward| = "
      f"{max(np.abs(lstm_rtrl[n] - p.grad).max() for n, p in lstm.named_parameters().items()):.1e}")

# %% [markdown]
# ## 4. The cost: forward mode's memory does not grow with T; its time grows with P

# %%
print(f"{'T':>5s} {'BPTT ms':>8s} {'RTRL ms':>8s} {'BPTT peak KiB':>14s} {'RTRL peak KiB':>14s}   (H = 8)")
long_model = nn.CharRNN(vocab.size, 8, rng=np.random.default_rng(0))
for T in ((10, 50) if QUICK else (10, 100, 300)):
    seq = np.resize(ids, T + 1)
    costs = []
    for mode in ("bptt", "rtrl"):
        tracemalloc.start()
        start = time.perf_counter()
        if mode == "bptt":
            long_model.zero_grad()
            nn.cross_entropy(long_model(seq[:-1])[0], seq[1:]).backward()
        else:
            analysis.rtrl_grads(long_model, seq[:-1], seq[1:])
        costs.append((1000 * (time.perf_counter() - start), tracemalloc.get_traced_memory()[1] / 1024))
        tracemalloc.stop()
    print(f"{T:5d} {costs[0][0]:8.1f} {costs[1][0]:8.1f} {costs[0][1]:14.0f} {costs[1][1]:14.0f}")
