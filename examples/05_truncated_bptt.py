"""05 · truncated backpropagation through time: what is cut off, and how much it costs the gradient.

Two ways to truncate BPTT to k steps. Per loss term: each L(t) sends its gradient back through h(t), …,
h(t−k+1) only, with h(t−k) held constant (manual.rnn_bptt(truncate=k); none of the five documents
describes this one). In chunks, as the lecture notes describe it ("split the data into fixed chunks of
size k … initialising the initial hidden state as the last hidden state of the previous truncated
sequence") and as min-char-rnn and `tinygrad-rnn train` do: the state is carried across chunks but
detached (nn.detach_state), so a loss near a chunk's start sees less than k steps back. Both equal full
BPTT once k ≥ T.

    python examples/05_truncated_bptt.py     (TINYGRAD_RNN_QUICK=1: a shorter sequence)
"""
# %% [markdown]
# ## 1. Per-term truncation by hand (manual.rnn_bptt) against the same truncation built from autodiff

# %%
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import lab, manual, nn
from tinygrad_rnn.data import Vocab

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
vocab = Vocab("hello")
ids = vocab.encode("hello" * 4)
x, y = ids[:-1], ids[1:]                                 # T = 19
T, H, k = len(x), 6, 3
model = nn.CharRNN(vocab.size, H, rng=np.random.default_rng(0))
P = model.named_parameters()
names = {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"}
weights = {ours: P[k_].data for k_, ours in names.items()}
_, hand, _ = manual.rnn_bptt(weights, x, y, None, truncate=k)

with tr.no_grad():
    _, states = model.unroll(x)                          # h(t) for every t, without a graph
model.zero_grad()
for t in range(T):                                       # L(t) alone, from h(t−k) held constant
    s = max(t - k + 1, 0)
    start = None if s == 0 else states[s - 1].detach()
    logits, _ = model(x[s:t + 1], start)
    nn.cross_entropy(logits[-1:], y[t:t + 1]).backward()  # gradients add up over t
for k_, ours in names.items():
    print(f"max |{k_} manual truncate={k} - autodiff truncated the same way| = "
          f"{np.abs(hand[ours] - P[k_].grad).max():.1e}")

# %% [markdown]
# ## 2. How far each truncation is from the full gradient, as k grows

# %%
_, full, _ = manual.rnn_bptt(weights, x, y, None)
flat = lambda g: np.concatenate([g[n].ravel() for n in names.values()])  # noqa: E731
chunked = {}
for kk in (1, 2, 5, 10, T):
    model.zero_grad()
    state = None
    for s in range(0, T, kk):                            # chunks of kk, the state carried but detached
        logits, state = model(x[s:s + kk], state)
        nn.cross_entropy(logits, y[s:s + kk]).backward()
        state = nn.detach_state(state)
    chunked[kk] = np.concatenate([P[n].grad.ravel() for n in names])
print(f"{'k':>3s} {'per-term ‖g_k − g‖/‖g‖':>24s} {'chunked ‖g_k − g‖/‖g‖':>23s}")
g = flat(full)
for kk, gc in chunked.items():
    per_term = flat(manual.rnn_bptt(weights, x, y, None, truncate=kk)[1])
    print(f"{kk:3d} {np.linalg.norm(per_term - g) / np.linalg.norm(g):24.2e} "
          f"{np.linalg.norm(gc - g) / np.linalg.norm(g):23.2e}")
print(f"max |chunked k=T - full BPTT| = {np.abs(chunked[T] - g).max():.1e}")

# %% [markdown]
# ## 3. The lab's experiment on the trained "hello" model: `tinygrad-rnn lab truncation`

# %%
result = lab.run("truncation", long=40 if QUICK else 100)
print(result.table)

# %% [markdown]
# ## 4. The price of truncation: memory. A chunk keeps k steps of graph, not T.

# %%
for kk in (5, T):
    logits, _ = model(x[:kk])
    loss = nn.cross_entropy(logits, y[:kk])
    nodes, stack, seen = 0, [loss], set()
    while stack:                                         # count the graph's nodes behind the loss
        node = stack.pop()
        ctx = getattr(node, "grad_fn", None)
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        nodes += 1
        stack.extend(ctx.parents)
    print(f"graph kept for a chunk of {kk:2d} steps: {nodes} op nodes")
