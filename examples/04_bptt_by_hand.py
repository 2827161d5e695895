"""04 · backpropagation through time by hand, against autodiff.

The Deep Learning book's eq. 10.17–10.28 written out in NumPy for the RNN of eq. 10.8–10.11, next to the
engine's autodiff, min-char-rnn's loop (manual.rnn_bptt), forward-mode RTRL (manual.rnn_rtrl) and
central finite differences (check.compare_cell, for an RNN and an LSTM; `tinygrad-rnn gradcheck`).
Book names: U = W_xh, W = W_hh, b = b_h, V = out.W (W_hy), c = out.b (b_y).

    python examples/04_bptt_by_hand.py
"""
# %% [markdown]
# ## 1. Forward (eq. 10.8–10.11) through the engine, and its gradient by autodiff

# %%
import numpy as np

from tinygrad_rnn import analysis, check, manual, nn
from tinygrad_rnn.data import Vocab

vocab = Vocab("hello")
ids = vocab.encode("hellohello")
x, y = ids[:-1], ids[1:]                                 # τ = 9 steps: read h e l l o h e l l
H, T = 5, len(x)
model = nn.CharRNN(vocab.size, H, cell="rnn", rng=np.random.default_rng(0))
logits, _ = model(x)
loss = nn.cross_entropy(logits, y)                       # L = Σ_t L(t), eq. 10.12–10.14
loss.backward()
g = {name: p.grad for name, p in model.named_parameters().items()}
U, W, b = (model.cell.W_xh.data, model.cell.W_hh.data, model.cell.b_h.data)
V, c = model.out.W.data, model.out.b.data

# %% [markdown]
# ## 2. The book's backward pass, one equation per line

# %%
h = np.zeros((T + 1, H))                                 # h[t + 1] is h(t); h[0] is h(0) = 0
for t in range(T):
    h[t + 1] = np.tanh(b + W @ h[t] + U[:, x[t]])        # eq. 10.8–10.9 (U x(t) is a column of U)
o = h[1:] @ V.T + c                                      # eq. 10.10
p = np.exp(o - o.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)                             # eq. 10.11: ŷ(t)
grad_o = p - np.eye(vocab.size)[y]                       # eq. 10.18: ∇_o(t) L = ŷ(t) − 1_{i = y(t)}
grad_h = np.zeros((T, H))
grad_h[T - 1] = V.T @ grad_o[T - 1]                      # eq. 10.19: ∇_h(τ) L = Vᵀ ∇_o(τ) L
for t in range(T - 2, -1, -1):                           # eq. 10.20–10.21
    grad_h[t] = W.T @ ((1 - h[t + 2] ** 2) * grad_h[t + 1]) + V.T @ grad_o[t]
da = (1 - h[1:] ** 2) * grad_h                           # diag(1 − h(t)²) ∇_h(t) L
book = {"out.b": grad_o.sum(0),                          # eq. 10.22: ∇_c L
        "cell.b_h": da.sum(0),                           # eq. 10.23: ∇_b L
        "out.W": grad_o.T @ h[1:],                       # eq. 10.24: ∇_V L = Σ_t ∇_o(t) L h(t)ᵀ
        "cell.W_hh": da.T @ h[:-1],                      # eq. 10.25–10.26: ∇_W L = Σ_t diag(1 − h²) ∇_h(t) L h(t−1)ᵀ
        "cell.W_xh": da.T @ np.eye(vocab.size)[x]}       # eq. 10.27–10.28: ∇_U L = Σ_t diag(1 − h²) ∇_h(t) L x(t)ᵀ
print(f"loss: autodiff {loss.item():.12f}, the book's equations {-np.log(p[np.arange(T), y]).sum():.12f}")
print(f"max |∇_h(t) L book - analysis.hidden_grads| = "
      f"{np.abs(grad_h - analysis.hidden_grads(model, x, y)).max():.1e}")
for name in g:
    print(f"max |{name} book - autodiff| = {np.abs(book[name] - g[name]).max():.1e}")

# %% [markdown]
# ## 3. A slip to watch for: dh_next = W_hhᵀ dhraw
# The "hello" tutorial writes W_xhᵀ in the dh recursion. The gradient flows back along the recurrent
# weight W (= W_hh), which maps h(t−1) to h(t); W_xh maps the input. Here W_xhᵀ cannot even be applied:

# %%
dhraw = da[-1]
print(f"W_hhᵀ dhraw has shape {(W.T @ dhraw).shape} (that of h); W_xhᵀ dhraw has shape {(U.T @ dhraw).shape} "
      f"(that of x): V = {vocab.size} ≠ H = {H}")

# %% [markdown]
# ## 4. min-char-rnn's loop (manual.rnn_bptt) and forward-mode RTRL (manual.rnn_rtrl): the same numbers

# %%
names = {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"}
weights = {ours: model.named_parameters()[k].data for k, ours in names.items()}
bptt_loss, bptt, _ = manual.rnn_bptt(weights, x, y, np.zeros(H))
rtrl_loss, rtrl = manual.rnn_rtrl(weights, x, y, np.zeros(H))
print(f"{'parameter':10s} {'|autodiff - BPTT|':>18s} {'|BPTT - RTRL|':>14s}")
for k, ours in names.items():
    print(f"{k:10s} {np.abs(g[k] - bptt[ours]).max():18.2e} {np.abs(bptt[ours] - rtrl[ours]).max():14.2e}")
worst = max(max(np.abs(g[k] - bptt[v]).max(), np.abs(bptt[v] - rtrl[v]).max()) for k, v in names.items())
print(f"max |autodiff - BPTT - RTRL| over all parameters = {worst:.1e}")

# %% [markdown]
# ## 5. With central finite differences, for an RNN and an LSTM (the table of `tinygrad-rnn gradcheck`)

# %%
for cell in ("rnn", "lstm"):
    report = check.compare_cell(nn.CharRNN(vocab.size, H, cell=cell, rng=np.random.default_rng(0)), x, y)
    print(f"\n{report}")
    print(f"{cell}: {'all three agree' if report.ok else 'DISAGREE'}")
