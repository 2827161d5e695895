"""03 · softmax and cross-entropy: the softmax derivative by the quotient rule, and why dL/do = p − y.

The "hello" char-RNN tutorial and min-char-rnn use ŷ = softmax(o) with L = −log ŷ_y and write its
gradient as dy = p − onehot(y) (min-char-rnn: `dy[targets[t]] -= 1`; Deep Learning book eq. 10.18).
Here both steps by hand, next to manual.softmax_jacobian, autodiff and finite differences.

    python examples/03_softmax_cross_entropy.py
"""
# %% [markdown]
# ## 1. The quotient rule, step by step
# σ_i = e_i / S with e_i = exp(z_i) and S = Σ_k e_k.  Quotient rule:
# ∂σ_i/∂z_j = (∂e_i/∂z_j · S − e_i · ∂S/∂z_j) / S²,  with ∂e_i/∂z_j = δ_ij e_i and ∂S/∂z_j = e_j
#           = (δ_ij e_i S − e_i e_j) / S² = δ_ij σ_i − σ_i σ_j,  i.e. J = diag(σ) − σσᵀ.

# %%
import numpy as np

from tinygrad_rnn import Tensor, manual, nn

np.set_printoptions(precision=4, suppress=True)
z = np.array([1.0, 2.0, 0.5, -1.0])
e = np.exp(z)
S = e.sum()
sigma = e / S
print("z =", z, " σ = softmax(z) =", sigma, " Σσ =", sigma.sum())
de_dz = np.diag(e)                                   # ∂e_i/∂z_j = δ_ij e_i
dS_dz = e                                            # ∂S/∂z_j = e_j
J_quotient = (de_dz * S - np.outer(e, dS_dz)) / S**2  # (∂e_i/∂z_j · S − e_i · ∂S/∂z_j) / S²
J_closed = np.diag(sigma) - np.outer(sigma, sigma)   # δ_ij σ_i − σ_i σ_j
J_manual = manual.softmax_jacobian(z)
print("J by the quotient rule:\n", J_quotient)

# %% [markdown]
# ## 2. The same Jacobian by autodiff (one backward per output σ_i) and by central differences

# %%
J_autodiff = np.zeros((4, 4))
for i in range(4):
    x = Tensor(z, requires_grad=True)
    x.softmax()[i].backward()                        # row i: ∇_z σ_i
    J_autodiff[i] = x.grad
eps = 1e-6
J_numeric = np.stack([(np.exp(z + eps * u) / np.exp(z + eps * u).sum()
                       - np.exp(z - eps * u) / np.exp(z - eps * u).sum()) / (2 * eps)
                      for u in np.eye(4)], axis=1)   # column j: ∂σ/∂z_j
print(f"max |quotient rule - closed form diag(σ) - σσᵀ| = {np.abs(J_quotient - J_closed).max():.1e}")
print(f"max |quotient rule - manual.softmax_jacobian| = {np.abs(J_quotient - J_manual).max():.1e}")
print(f"max |quotient rule - autodiff| = {np.abs(J_quotient - J_autodiff).max():.1e}")
print(f"max |quotient rule - finite differences| = {np.abs(J_quotient - J_numeric).max():.1e}")
print(f"rows of J sum to {np.abs(J_quotient.sum(axis=1)).max():.1e}: adding a constant to z changes nothing")

# %% [markdown]
# ## 3. Cross-entropy: the 1/σ_y of the log cancels the σ_y of the Jacobian
# L = −log σ_y, so ∂L/∂z_j = −(1/σ_y) ∂σ_y/∂z_j = −(1/σ_y) σ_y (δ_yj − σ_j) = σ_j − δ_yj:  p − y.

# %%
y = 1                                                # the target class
dL_dsigma = np.zeros(4)
dL_dsigma[y] = -1 / sigma[y]                         # ∂(−log σ_y)/∂σ
chain = J_quotient.T @ dL_dsigma                     # Jᵀ ∂L/∂σ: the chain rule through the softmax
p_minus_y = sigma - np.eye(4)[y]
logits = Tensor(z, requires_grad=True)
loss = nn.cross_entropy(logits.reshape(1, 4), np.array([y]))  # the fused op: one node, gradient p − y
loss.backward()
print(f"L = −log σ_y = {-np.log(sigma[y]):.6f}, nn.cross_entropy = {loss.item():.6f}")
print("Jᵀ ∂L/∂σ =", chain, " p − y =", p_minus_y)
print(f"max |chain rule - (p - y)| = {np.abs(chain - p_minus_y).max():.1e}")
print(f"max |nn.cross_entropy gradient - (p - y)| = {np.abs(logits.grad - p_minus_y).max():.1e}")

# %% [markdown]
# ## 4. Why fused: at logits of 1e4 the textbook formula overflows, the fused op does not

# %%
big = np.array([1e4, 0.0, -1e4, 5.0])
with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    naive = -np.log(np.exp(big) / np.exp(big).sum())[1]
fused = Tensor(big, requires_grad=True)
stable = nn.cross_entropy(fused.reshape(1, 4), np.array([1]))
stable.backward()
print(f"logits {big}: textbook −log softmax = {naive}, fused = {stable.item():.1f}, "
      f"gradient {fused.grad} (finite: {np.isfinite(fused.grad).all()})")
