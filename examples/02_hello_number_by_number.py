"""02 · "hello" number by number: every vector of the 4-step example, in the documents' notation.

The FAU lecture's one-hot order h, e, l, o; x(1) … x(4) = "hell", targets "ello". §2 the book's forward
(eq. 10.8–10.11) and backward (10.18–10.21) per step: h(t), ŷ(t), ∇o(t)L, ∇h(t)L, min-char-rnn's dhnext.
§3 the FAU lecture's sigmoid output with a learned h(0), backward by hand. §4 the min-char-rnn derivation's
own model (no biases, linear output, E = ½(t − y)², eq. 1) as its §8.1–8.7, eqs 18–32. §5 generation.

    python examples/02_hello_number_by_number.py
"""
# %% [markdown]
# ## 1. The documents' one-hot order: Vocab("helo", sort=False)

# %%
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import analysis, nn
from tinygrad_rnn.data import Vocab

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
vocab = Vocab("hello", sort=False)                       # h, e, l, o get ids 0, 1, 2, 3
x_ids, y_ids = vocab.encode("hell"), vocab.encode("ello")
X, Y = np.eye(4)[x_ids], np.eye(4)[y_ids]                # x(t), y(t) one-hot: rows t = 1 … 4
vec = lambda v: "[" + " ".join(f"{a:+.3f}" for a in v) + "]"
print("vocabulary", list(vocab.chars), "| x(t):", ", ".join(f"{c}={X[t].astype(int).tolist()}" for t, c in enumerate("hell")))

# %% [markdown]
# ## 2. Forward and backward, step by step (the book's U, W, V, b, c = cell.W_xh, cell.W_hh, out.W, cell.b_h, out.b)
# a(t) = b + W h(t−1) + U x(t), h(t) = tanh(a(t)), o(t) = c + V h(t), ŷ(t) = softmax(o(t)), L = Σ_t −log ŷ(t)[y(t)].
# Back: ∇o(t)L = ŷ(t) − y(t) (10.18); ∇h(t)L = Vᵀ ∇o(t)L + dhnext (10.19–10.21), dhnext = Wᵀ diag(1 − h(t+1)²) ∇h(t+1)L.

# %%
model = nn.CharRNN(4, 3, rng=np.random.default_rng(0))
U, W, b, V, c = (p.data for p in model.parameters())
h = [np.zeros(3)]                                        # h(0) = 0
for t in range(4): h.append(np.tanh(b + W @ h[t] + U @ X[t]))
o = np.array([c + V @ h[t] for t in range(1, 5)])
y_hat = np.exp(o) / np.exp(o).sum(axis=1, keepdims=True)
grad_o = y_hat - Y
grad_h, dhnext = np.zeros((5, 3)), np.zeros((5, 3))      # rows 1 … 4 used; dhnext(4) = 0
for t in range(4, 0, -1):
    dhnext[t] = W.T @ ((1 - h[t + 1] ** 2) * grad_h[t + 1]) if t < 4 else 0
    grad_h[t] = V.T @ grad_o[t - 1] + dhnext[t]
print(f"{'t':>2} x(t)  {'h(t)':^22} {'ŷ(t)':^29} target")
print("\n".join(f"{t:>2}  {'hell'[t - 1]}   {vec(h[t])} {vec(y_hat[t - 1])}  {'ello'[t - 1]}" for t in range(1, 5)))
print(f"{'t':>2} {'∇o(t)L = ŷ(t) − y(t)':^29} {'∇h(t)L':^22} {'dhnext (from t+1)':^22}")
print("\n".join(f"{t:>2} {vec(grad_o[t - 1])} {vec(grad_h[t])} {vec(dhnext[t])}" for t in range(1, 5)))
logits, _ = model(x_ids); logits.retain_grad()           # keep ∂L/∂o(t) of the op's output
nn.cross_entropy(logits, y_ids).backward()
print(f"max |∇o(t)L by hand - autodiff| = {np.abs(grad_o - logits.grad).max():.1e}")
auto_h = analysis.hidden_grads(model, x_ids, y_ids)      # row t − 1 is ∂L/∂h(t)
print(f"max |∇h(t)L by hand - analysis.hidden_grads| = {np.abs(grad_h[1:] - auto_h).max():.1e}")

# %% [markdown]
# ## 3. The FAU lecture: ŷ_t = σ(o_t), cross-entropy per unit, a learned h(0); backward from t = T to 1
# ∂L/∂o_t = σ′(o_t) ∂L/∂ŷ_t; ∇W_hy = Σ ∂L/∂o_t h_tᵀ, ∇b_y = Σ ∂L/∂o_t;
# ∇h_t = W_hhᵀ tanh′(u_{t+1}) ∇h_{t+1} + W_hyᵀ ∂L/∂o_t; ∇W_hh = Σ tanh′(u_t) ∇h_t h_{t−1}ᵀ, ∇W_xh (x_tᵀ), ∇b_h.

# %%
fau = nn.CharRNN(4, 3, learn_h0=True, rng=np.random.default_rng(1))
fau.h0.data[:] = [0.1, -0.2, 0.3]                        # a learned h(0) is a parameter like W
W_xh, W_hh, b_h, W_hy, b_y, h0 = (p.data for p in fau.parameters())
hs = [h0]
for t in range(4): hs.append(np.tanh(W_hh @ hs[t] + W_xh @ X[t] + b_h))
sig = 1 / (1 + np.exp(-np.array([W_hy @ hs[t] + b_y for t in range(1, 5)])))
dL_dyhat = (sig - Y) / (sig * (1 - sig))                 # L = −Σ [y log ŷ + (1 − y) log(1 − ŷ)]
d_o = sig * (1 - sig) * dL_dyhat                         # σ′(o) ∂L/∂ŷ, which is ŷ − y
hand, g_h = {n: np.zeros_like(p) for n, p in fau.named_parameters().items()}, np.zeros(3)
for t in range(4, 0, -1):
    g_h = W_hy.T @ d_o[t - 1] + (W_hh.T @ (tanh_d * g_h) if t < 4 else 0)
    tanh_d = 1 - hs[t] ** 2                              # tanh′(u_t)
    for n, (a, col) in {"out.W": (d_o[t - 1], hs[t]), "cell.W_hh": (tanh_d * g_h, hs[t - 1]),
                        "cell.W_xh": (tanh_d * g_h, X[t - 1])}.items():
        hand[n] += np.outer(a, col)
    hand["out.b"] += d_o[t - 1]; hand["cell.b_h"] += tanh_d * g_h
hand["h0"] = W_hh.T @ (tanh_d * g_h)                     # ∂L/∂h(0): one step further back
print(f"∂L/∂o_1 = σ′(o_1) ∂L/∂ŷ_1 = {vec(d_o[0])} = ŷ_1 − y_1 = {vec(sig[0] - Y[0])}")
logits, _ = fau(x_ids)
nn.binary_cross_entropy(logits, Y).backward()
for name, p in fau.named_parameters().items():
    print(f"max |∇{name} by hand - autodiff| = {np.abs(hand[name] - p.grad).max():.1e}")

# %% [markdown]
# ## 4. The min-char-rnn derivation's own model: h^t = tanh(Whh h^{t−1} + u), u = Wxh x (§5, eqs 4, 7–9),
# y = u′ = Why h (eqs 6, 10), no biases, quadratic error E = ½ Σ (t − y)² (eq. 1); its §8, backward:

# %%
Wxh, Whh, Why = W_xh, W_hh, W_hy                         # its names; its t is the target, its h^t the state
hd = [np.zeros(3)]
for t in range(4): hd.append(np.tanh(Whh @ hd[t] + Wxh @ X[t]))
yd = np.array([Why @ hd[t] for t in range(1, 5)])
grads, dnext = {"Wxh": 0, "Whh": 0, "Why": 0}, np.zeros(3)
print(f"{'t':>2} {'8.1–8.2 ∂E/∂y = ∂E/∂u′ = y − t':^29} {'8.4 dhnext (26)':^22} {'8.4 ∂E/∂h (27)':^22} {'8.5 hraw (28)':^22}")
for t in range(4, 0, -1):
    dE_dy = yd[t - 1] - Y[t - 1]                          # eqs 18–21
    dE_dh = Why.T @ dE_dy + dnext                        # eqs 24, 27
    hraw = (1 - hd[t] * hd[t]) * dE_dh                   # eq 28: ∂E/∂u
    print(f"{t:>2} {vec(dE_dy)} {vec(dnext)} {vec(dE_dh)} {vec(hraw)}")
    for n, (a, col) in dict(Why=(dE_dy, hd[t]), Wxh=(hraw, X[t - 1]), Whh=(hraw, hd[t - 1])).items():
        grads[n] = grads[n] + np.outer(a, col)           # 8.3 eqs 22–23, 8.6 eqs 29–30, 8.7 eqs 31–32
    dnext = Whh.T @ hraw                                 # eqs 25–26, for step t − 1
w = {n: tr.Tensor(a, requires_grad=True) for n, a in (("Wxh", Wxh), ("Whh", Whh), ("Why", Why))}
state, outs = tr.zeros(3), []
for t in range(4):
    state = (w["Whh"] @ state + w["Wxh"] @ tr.Tensor(X[t])).tanh(); outs.append(w["Why"] @ state)
nn.mse(tr.stack(outs), Y).backward()                     # E = ½ Σ (y − t)²
for n in w:
    print(f"max |∂E/∂{n} by eq. {dict(Why=23, Wxh=30, Whh=32)[n]} - autodiff| = {np.abs(grads[n] - w[n].grad).max():.1e}")
print(f"at t = 1 the derivation's y − t = {vec(yd[0] - Y[0])}; min-char-rnn's code (softmax, −log p) "
      f"back-propagates p − y = {vec(np.exp(yd[0]) / np.exp(yd[0]).sum() - Y[0])}")

# %% [markdown]
# ## 5. Train (min-char-rnn's recipe: Adagrad, clip to [−5, 5]), then let it run free from 'h'

# %%
opt = nn.optim.Adagrad(model.parameters(), lr=0.1)
for step in range(1, (150 if QUICK else 200) + 1):
    loss = nn.cross_entropy(model(x_ids)[0], y_ids)
    opt.zero_grad()
    loss.backward()
    nn.clip_grad_value(model.parameters(), 5.0)
    opt.step()
text, state = "h", None
with tr.no_grad():
    for t in range(4):                                   # feed each prediction back in as x(t + 1)
        logits, state = model(vocab.encode(text[-1]), state)
        text += vocab.chars[int(logits.numpy()[-1].argmax())]
print(f"after {step} steps (loss {loss.item():.4f}), generated from 'h' alone: {text!r}")
