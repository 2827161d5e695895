"""07 · vanishing and exploding gradients: the eigenvalue heuristic, checked by measurement.

The Oxford lecture notes write ∂h(T)/∂h(t) = Π_{n=t+1..T} diag(tanh′(a(n))) W_hh and conclude that the
gradient neither vanishes nor explodes only when W_hh's largest |eigenvalue| (its spectral radius ρ)
is near 1: ‖∂h(T)/∂h(t)‖ ≈ ρ^(T−t). The Deep Learning book (§10.7) says the same. Here the product by
hand against the engine (analysis.state_jacobians), the heuristic where it holds (tanh′ ≈ 1), and the
lab's experiment, which also shows where it is too simple (saturated tanh makes ρ > 1 vanish too).

    python examples/07_vanishing_and_exploding.py   (TINYGRAD_RNN_QUICK=1: shorter runs)
"""
# %% [markdown]
# ## 1. The Jacobian product by hand against analysis.state_jacobians

# %%
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import analysis, lab, nn

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
V, H, T = 4, 6, 12
rng = np.random.default_rng(0)
x = rng.integers(0, V, T)
model = nn.CharRNN(V, H, rng=np.random.default_rng(1))
with tr.no_grad():
    _, states = model.unroll(x)
h = np.stack([s.data for s in states])                   # h(t) after step t: (T, H)
W = model.cell.W_hh.data
J = analysis.state_jacobians(model, x)                   # J[t] = ∂h(T−1)/∂h(t)
product = np.eye(H)
worst = 0.0
for t in range(T - 2, -1, -1):                           # ∂h(T−1)/∂h(t) = ∂h(T−1)/∂h(t+1) diag(1 − h(t+1)²) W
    product = product @ np.diag(1 - h[t + 1] ** 2) @ W
    worst = max(worst, np.abs(product - J[t]).max())
print(f"max |Π diag(tanh′) W_hh by hand - analysis.state_jacobians| over {T - 1} steps = {worst:.1e}")

# %% [markdown]
# ## 2. The heuristic where it holds: W_hh = ρ Q (Q orthogonal), tiny inputs so that tanh′ ≈ 1

# %%
Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
print(f"{'ρ':>5s} {'spectral_radius':>16s} {'‖∂h(T−1)/∂h(0)‖':>18s} {'ρ^(T−1)':>10s} {'rate per step':>14s}")
rates = {}
for rho in (0.5, 0.9, 1.0, 1.1, 1.5):
    m = nn.CharRNN(V, H, rng=np.random.default_rng(1))
    m.cell.W_hh.data[...] = rho * Q
    m.cell.W_xh.data[...] *= 1e-6                         # h stays near 0, so tanh′(a) ≈ 1
    m.cell.b_h.data[...] = 0.0
    norms = np.array([np.linalg.norm(Jt, 2) for Jt in analysis.state_jacobians(m, x)])
    rates[rho] = norms[0] ** (1 / (T - 1))
    print(f"{rho:5.2f} {analysis.spectral_radius(m.cell.W_hh):16.4f} {norms[0]:18.3e} {rho ** (T - 1):10.3e} "
          f"{rates[rho]:14.6f}")
print(f"max |measured rate - ρ| = {max(abs(r - rho) for rho, r in rates.items()):.1e}")

# %% [markdown]
# ## 3. The loss's gradient through time, RNN against LSTM, and the lab's table (`tinygrad-rnn lab vanishing`)

# %%
for cell in ("rnn", "lstm"):
    m = nn.CharRNN(V, H, cell=cell, rng=np.random.default_rng(2))
    g = np.linalg.norm(analysis.hidden_grads(m, x, x, loss="last"), axis=-1)  # ‖∂L(T−1)/∂h(t)‖
    print(f"{cell:4s} ‖∂L_T/∂h_t‖ for t = 1 … {T}: " + " ".join(f"{v:.1e}" for v in g))
result = lab.run("vanishing", T=15, H=8) if QUICK else lab.run("vanishing")
print(result.table)

# %% [markdown]
# ## 4. Exploding gradients are cut by clipping: nn.clip_grad_norm rescales θ's gradient to a maximum norm

# %%
m = nn.CharRNN(V, H, rng=np.random.default_rng(1))
m.cell.W_hh.data[...] = 3.0 * Q                          # ρ = 3: large gradients
long = rng.integers(0, V, 40)
nn.cross_entropy(m(long)[0], long).backward()
before = nn.clip_grad_norm(m.parameters(), 5.0)
after = np.sqrt(sum((p.grad ** 2).sum() for p in m.parameters()))
print(f"ρ = 3: gradient norm {before:.1f} before clipping, {after:.4f} after clip_grad_norm(5.0)")
