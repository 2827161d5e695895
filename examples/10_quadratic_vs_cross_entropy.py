"""10 · the quadratic error against cross-entropy for a SIGMOID output: the learning slowdown, measured.

min-char-rnn's derivation compares the two errors. For y = σ(o) and a target t in {0, 1}:
  quadratic      E = ½ (y − t)²                      dE/dy = y − t               δ = dE/do = (y − t) y (1 − y)
  cross-entropy  E = −[t log y + (1 − t) log(1 − y)]  dE/dy = (y − t) / (y (1 − y))  δ = y − t
The sigmoid's y(1 − y) cancels in cross-entropy; in the quadratic error it stays, and when the unit
saturates (y near 0 or 1) on the WRONG answer it makes the gradient, and learning, nearly vanish.

    python examples/10_quadratic_vs_cross_entropy.py
"""
# %% [markdown]
# ## 1. dE/dy and δ = dE/do: the formulas above against autodiff

# %%
import numpy as np

from tinygrad_rnn import Tensor, nn

t = 0.0
o = Tensor(np.array([2.5]), requires_grad=True)
y = o.sigmoid()
y.retain_grad()
ce = -(t * y.log() + (1 - t) * (1 - y).log()).sum()     # written out: sigmoid, then the log loss
ce.backward()
yv = y.data[0]
print(f"y = σ({o.data[0]}) = {yv:.4f}, target t = {t}")
print(f"cross-entropy dE/dy: autodiff {y.grad[0]:.6f}, (y − t)/(y(1 − y)) = {(yv - t) / (yv * (1 - yv)):.6f}")
print(f"cross-entropy δ = dE/do: autodiff {o.grad[0]:.6f}, y − t = {yv - t:.6f}")
fused = Tensor(np.array([2.5]), requires_grad=True)
nn.binary_cross_entropy(fused, np.array([t])).backward()  # sigmoid + cross-entropy as one op: δ = y − t
quad = Tensor(np.array([2.5]), requires_grad=True)
nn.mse(quad.sigmoid(), np.array([t])).backward()
print(f"nn.binary_cross_entropy δ = {fused.grad[0]:.6f};  quadratic δ: autodiff {quad.grad[0]:.6f}, "
      f"(y − t) y (1 − y) = {(yv - t) * yv * (1 - yv):.6f}")

# %% [markdown]
# ## 2. At a saturated, wrong unit the quadratic error's gradient is tiny

# %%
print(f"\n{'o':>5s} {'y = σ(o)':>9s} {'quadratic δ':>12s} {'cross-entropy δ':>16s} {'ratio':>8s}   (target t = 0)")
for ov in (0.0, 2.0, 4.0, 6.0):
    yv = 1 / (1 + np.exp(-ov))
    q, c = (yv - t) * yv * (1 - yv), yv - t
    print(f"{ov:5.1f} {yv:9.4f} {q:12.5f} {c:16.5f} {c / q:8.1f}")
w0, b0 = 2.0, 2.0                                        # one input x = 1: o = w + b = 4, y ≈ 0.98, t = 0
y0 = 1 / (1 + np.exp(-(w0 + b0)))
ratio = (y0 - t) / ((y0 - t) * y0 * (1 - y0))
print(f"gradient ratio cross-entropy / quadratic at the saturated start (o = {w0 + b0}): {ratio:.1f}")

# %% [markdown]
# ## 3. The training curve: one sigmoid unit, x = 1, t = 0, started saturated at y ≈ 0.98, plain SGD

# %%
STEPS, LR = 600, 0.15                                    # a second of work: no quick mode needed
curves, reached = {}, {}
for name in ("quadratic", "cross-entropy"):
    w = Tensor(np.array([w0]), requires_grad=True, name="w")
    b = Tensor(np.array([b0]), requires_grad=True, name="b")
    opt = nn.optim.SGD([w, b], lr=LR)
    curve = []
    for step in range(STEPS + 1):
        o = w * 1.0 + b
        y = o.sigmoid()
        curve.append(y.data[0])
        loss = nn.mse(y, np.array([t])) if name == "quadratic" else nn.binary_cross_entropy(o, np.array([t]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    curves[name] = np.array(curve)
    below = np.flatnonzero(np.abs(curves[name] - t) < 0.1)
    reached[name] = int(below[0]) if below.size else None
print(f"{'step':>5s} {'quadratic y':>12s} {'cross-entropy y':>16s}")
for step in (0, 10, 25, 50, 100, 150, 200, 300, 400, 500, 600):
    print(f"{step:5d} {curves['quadratic'][step]:12.4f} {curves['cross-entropy'][step]:16.4f}")
print(f"steps until |y − t| < 0.1: cross-entropy {reached['cross-entropy']}, quadratic {reached['quadratic']}")
first = {k: c[0] - c[10] for k, c in curves.items()}
print(f"progress in the first 10 steps: cross-entropy {first['cross-entropy']:.4f}, quadratic {first['quadratic']:.4f}")
try:                                                     # the curve as a picture, when matplotlib is there
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, colour in (("cross-entropy", "#2f6fb0"), ("quadratic", "#c98200")):
        ax.plot(curves[name], color=colour, label=f"{name}: |y − t| < 0.1 after {reached[name]} steps")
    ax.set(xlabel="SGD step (learning rate 0.15)", ylabel="output y = σ(w + b)   (target t = 0)",
           title="Saturated sigmoid unit: the quadratic error learns slowly, cross-entropy fast")
    ax.title.set_fontsize(10)
    ax.axhline(0.1, color="#999999", lw=0.8, ls="--")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig("quadratic_vs_cross_entropy.png", dpi=120)
    print("wrote quadratic_vs_cross_entropy.png")
except ImportError:
    print("no plot: matplotlib is missing (pip install 'tinygrad_rnn[plot]')")

# %% [markdown]
# ## 4. A slip in min-char-rnn's derivation: min-char-rnn does NOT train with the quadratic error
# Its code adds −log p[target] (cross-entropy on a softmax) and back-propagates dy = p − y (example 02).
# The quadratic error on a softmax would give Jᵀ(p − y) instead, a different gradient:

# %%
z = np.array([3.0, -1.0, 0.5, 0.0])
target = 2
logits = Tensor(z, requires_grad=True)
nn.mse(logits.softmax(), np.eye(4)[target]).backward()
p = np.exp(z) / np.exp(z).sum()
print(f"softmax output, target {target}: cross-entropy gradient p − y = {np.round(p - np.eye(4)[target], 4).tolist()}")
print(f"                  quadratic-error gradient Jᵀ(p − y) = {np.round(logits.grad, 4).tolist()}")
