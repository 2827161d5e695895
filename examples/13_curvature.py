# %% [markdown]
"""13 · curvature: the hello RNN's loss Hessian, the learning rate 2/λ_max, and a regularizer made of gradients.

Near a minimum θ* gradient descent multiplies the error along each eigenvector of the Hessian H by (1 − η λ_i)
per step: it settles for η < 2/λ_max and swings ever wider for η > 2/λ_max. λ_max by power iteration with
tr.func.hvp (forward mode over the gradient: H never formed). Then Pascanu, Mikolov & Bengio (2013), "On the
difficulty of training recurrent neural networks", eq. (9):
    Ω = Σ_k ( ‖(∂L/∂h_{k+1}) ∂h_{k+1}/∂h_k‖ / ‖∂L/∂h_{k+1}‖ − 1 )²,
made of gradients, so its gradient is a gradient of gradients (create_graph; the paper keeps only its
"immediate" part, eq. 10; here all of it).   python examples/13_curvature.py   (TINYGRAD_RNN_QUICK=1: shorter)
"""
# %% 1. The hello RNN at a minimum (weight decay μ makes one exist): Adagrad, then Newton with the full H
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import nn
from tinygrad_rnn.data import Vocab

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
vocab, MU = Vocab("hello"), 0.05
inputs, targets = vocab.encode("hell"), vocab.encode("ello")
model = nn.CharRNN(vocab.size, 3, rng=np.random.default_rng(0))      # the hello tutorial's RNN: 40 weights
params = model.named_parameters()
cuts = np.cumsum([p.size for p in params.values()])


def loss_of(theta):                                                  # L(θ) for all weights as one vector θ
    named = {n: theta[a:b].reshape(p.shape) for (n, p), a, b in zip(params.items(), [0, *cuts[:-1]], cuts)}
    logits, _ = tr.func.functional_call(model, named, inputs)
    return nn.cross_entropy(logits, targets) + 0.5 * MU * (theta * theta).sum()


grad, hessian = tr.func.grad(loss_of), tr.func.hessian(loss_of)
theta, memory = np.concatenate([p.data.ravel() for p in params.values()]), 0.0
for step in range(1500):                                             # Adagrad into the basin
    g = grad(theta)
    memory = memory + g * g
    theta = theta - 0.1 * g / np.sqrt(memory + 1e-8)
for step in range(5):                                                # Newton: θ ← θ − H⁻¹ g, quadratic convergence
    theta = theta - np.linalg.solve(hessian(theta), grad(theta))
H = hessian(theta)                                                   # (40, 40): jacfwd of jacrev
eig = np.linalg.eigvalsh(H)
print(f"(1) at θ*: L = {loss_of(theta).item():.6f}, ‖∇L‖ = {np.linalg.norm(grad(theta)):.1e}; "
      f"H is {H.shape}, eigenvalues from {eig[0]:.4f} to {eig[-1]:.4f}: all positive, a minimum")

# %% 2. λ_max by power iteration: v ← H v / ‖H v‖, each H v one forward-over-reverse pass
v = np.random.default_rng(1).standard_normal(theta.size)
for it in range(150):
    _, Hv = tr.func.hvp(loss_of, (theta,), (v,))
    lam, v = v @ Hv / (v @ v), Hv / np.linalg.norm(Hv)
print(f"(2) λ_max by power iteration with hvp = {lam:.10f}; by eigvalsh of the full H = {eig[-1]:.10f}\n"
      f"max |power iteration - eigvalsh| = {abs(lam - eig[-1]):.1e}\n"
      f"max |H v by hvp - H @ v| = {np.abs(tr.func.hvp(loss_of, (theta,), (v,))[1] - H @ v).max():.1e}")

# %% 3. Plain GD at η = c · 2/λ_max from 10⁻³ off θ* along the top eigenvector: |1 − η λ_max| per step
N, verdicts = 150, {}
print(f"(3) {'c':>6s} {'η':>7s} {'|1-ηλ| predicted':>17s} {'measured, 20 steps':>19s} {'‖θ-θ*‖ after 150':>16s}  GD")
for c in (0.9, 0.98, 0.995, 1.005, 1.02, 1.1):
    eta, x, along = c * 2 / lam, theta + 1e-3 * v, []
    for step in range(N):
        x = x - eta * grad(x)
        along.append((x - theta) @ v)                                # the swing along the top eigenvector
    rate = abs(along[20] / along[0]) ** (1 / 20)                     # per step, while still near θ*
    verdicts[c] = "settles" if np.linalg.norm(x - theta) < 1e-3 else "oscillates"  # started at 1e-3
    flips = np.mean(np.sign(along[1:]) != np.sign(along[:-1]))      # a swing: the sign flips every step
    print(f"    {c:6.3f} {eta:7.4f} {abs(1 - eta * lam):17.4f} {rate:19.4f} {np.linalg.norm(x - theta):16.2e}  "
          f"{verdicts[c]} (sign flips {flips:.0%} of steps)")
print(f"measured boundary: settles at η = {max(c for c in verdicts if verdicts[c] == 'settles')} · 2/λ_max, "
      f"oscillates at {min(c for c in verdicts if verdicts[c] == 'oscillates')} · 2/λ_max (2/λ_max = {2 / lam:.4f})")

# %% 4. Pascanu et al.'s Ω on a longer sequence (name the first character after T steps); with
# ∂h_{k+1}/∂h_k = diag(1 − h_{k+1}²) W_hh (the lecture notes) and δ_k = ∂L/∂h_k from one tr.grad(create_graph)
V, Hn, T, B = 4, 8, 20, 16


def loss_and_omega(rnn, idx):
    h0 = tr.Tensor(np.zeros((B, Hn)), requires_grad=True)
    logits, states = rnn.unroll(idx, h0)
    L = nn.cross_entropy(logits[-1], idx[0], reduction="mean")     # at the end, name the first character
    delta = tr.grad(L, [h0, *states], create_graph=True)            # δ_0 … δ_T, each (B, H)
    omega = 0
    for d, h in zip(delta[1:], states):                             # δ_{k+1} and h_{k+1}, k = 0 … T−1
        back = (d * (1 - h * h)) @ rnn.cell.W_hh                     # δ_{k+1} ∂h_{k+1}/∂h_k
        omega = omega + (((back * back).sum(axis=-1).sqrt() / (d * d).sum(axis=-1).sqrt() - 1) ** 2).mean()
    return L, omega, np.array([np.linalg.norm(d.numpy(), axis=-1).mean() for d in delta])  # ‖∂L/∂h_k‖, k = 0 … T


rnn = nn.CharRNN(V, Hn, rng=np.random.default_rng(0))
idx = np.random.default_rng(2).integers(0, V, (T, B))
L, omega, _ = loss_and_omega(rnn, idx)
grads = tr.grad(omega, rnn.parameters())                             # the gradient of a function of gradients
rng, eps, worst = np.random.default_rng(3), 1e-6, 0.0
for trial in range(3):                                               # central differences along random directions d
    dirs, values = [rng.standard_normal(p.shape) for p in rnn.parameters()], []
    for step in (eps, -2 * eps, eps):                                # to θ + εd, to θ − εd, back to θ
        for p, d in zip(rnn.parameters(), dirs):
            p.data += step * d
        values.append(loss_and_omega(rnn, idx)[1].item())
    exact = sum((g.numpy() * d).sum() for g, d in zip(grads, dirs))
    worst = max(worst, abs(exact - (values[0] - values[1]) / (2 * eps)) / abs(exact))
print(f"(4) Ω = {omega.item():.4f} over T = {T} steps; its gradient by create_graph against central differences:\n"
      f"max |∇Ω·d - (Ω(θ+εd) - Ω(θ-εd))/2ε| / |∇Ω·d| over 3 directions = {worst:.1e}")

# %% 5. Train with and without Ω (weight α), clipped SGD: does ∂L/∂h_0 still arrive?
STEPS, ALPHA = (40 if QUICK else 300), 1.0
test = np.random.default_rng(99).integers(0, V, (T, B))
print(f"(5) ‖∂L/∂h_0‖ (mean over {B} test sequences of length {T}) at the start: "
      f"{loss_and_omega(nn.CharRNN(V, Hn, rng=np.random.default_rng(0)), test)[2][0]:.2e}")
for alpha in (0.0, ALPHA):
    rnn, rng = nn.CharRNN(V, Hn, rng=np.random.default_rng(0)), np.random.default_rng(1)
    for step in range(STEPS):
        L, omega, _ = loss_and_omega(rnn, rng.integers(0, V, (T, B)))
        for p, g in zip(rnn.parameters(), tr.grad(L + alpha * omega, rnn.parameters())):
            p.data -= 0.1 * np.clip(g.numpy(), -1, 1)                 # clipping: Ω alone lets gradients explode
    L, omega, dh = loss_and_omega(rnn, test)
    print(f"    after {STEPS} steps with α = {alpha}: L = {L.item():.4f}, Ω = {omega.item():.3f}, ‖∂L/∂h_0‖ = {dh[0]:.2e}")
    print("      ‖∂L/∂h_k‖, k = 0, 5, 10, 15, 20 (lab influence's last row):", "  ".join(f"{v:.1e}" for v in dh[::5]))
