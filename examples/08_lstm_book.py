"""08 · the Deep Learning book's LSTM (eq. 10.40–10.44), letter by letter.

The book names the gates f (forget), g (external input) and q (output) and the state s; PyTorch, and
this library's LSTMCell, stack the blocks i, f, g, o, where g is the CELL CANDIDATE, not the input gate.
nn.LSTMCell(cell_input="sigmoid") is exactly the book's cell; the default "tanh" is PyTorch's.

    python examples/08_lstm_book.py
"""
# %% [markdown]
# ## 1. The gate letters: book vs PyTorch (and this library)

# %%
import numpy as np

from tinygrad_rnn import Tensor, manual, nn

TABLE = [("forget gate", "f  (10.40)", "f", "H:2H"),
         ("input gate", "g  (10.42)", "i", "0:H"),
         ("cell input", "σ(b + Ux + Wh)  (10.41)", "g  (tanh)", "2H:3H"),
         ("output gate", "q  (10.44)", "o", "3H:4H"),
         ("state", "s  (10.41)", "c (PyTorch), s here", "-"),
         ("output", "h = tanh(s) q  (10.43)", "h = o tanh(c)", "-")]
print(f"{'role':12s} {'Deep Learning book':26s} {'PyTorch / LSTMCell':22s} rows of W_x, W_h, b")
for row in TABLE:
    print(f"{row[0]:12s} {row[1]:26s} {row[2]:22s} {row[3]}")

# %% [markdown]
# ## 2. The book's equations in NumPy, with the book's letters, against nn.LSTMCell(cell_input="sigmoid")

# %%
D, H, T = 3, 4, 6
rng = np.random.default_rng(0)
cell = nn.LSTMCell(D, H, cell_input="sigmoid", rng=rng)
Wx, Wh, bias = cell.W_x.data, cell.W_h.data, cell.b.data
block = {"g": slice(0, H), "f": slice(H, 2 * H), "cell": slice(2 * H, 3 * H), "q": slice(3 * H, 4 * H)}
U_, W_, b_ = ({k: M[s] for k, s in block.items()} for M in (Wx, Wh, bias))  # U^f, W^f, b^f, ...


def sigma(a):
    return 1 / (1 + np.exp(-a))


xs = rng.standard_normal((T, D))
h_book, s_book = np.zeros(H), np.zeros(H)
h, s = Tensor(np.zeros(H)), Tensor(np.zeros(H))
worst = 0.0
for t in range(T):
    x = xs[t]
    f = sigma(b_["f"] + U_["f"] @ x + W_["f"] @ h_book)                        # eq. 10.40
    g = sigma(b_["g"] + U_["g"] @ x + W_["g"] @ h_book)                        # eq. 10.42
    q = sigma(b_["q"] + U_["q"] @ x + W_["q"] @ h_book)                        # eq. 10.44
    s_book = f * s_book + g * sigma(b_["cell"] + U_["cell"] @ x + W_["cell"] @ h_book)  # eq. 10.41
    h_book = np.tanh(s_book) * q                                               # eq. 10.43
    h, s = cell(Tensor(x), (h, s))
    worst = max(worst, np.abs(h.data - h_book).max(), np.abs(s.data - s_book).max())
print(f"\nmax |book eq. 10.40-10.44 - LSTMCell(cell_input='sigmoid')| over {T} steps (h and s) = {worst:.1e}")
tanh_cell = nn.LSTMCell(D, H, rng=np.random.default_rng(0))                    # same weights, PyTorch's tanh
state = None
for t in range(T):
    state = tanh_cell(Tensor(xs[t]), state)
print(f"PyTorch's cell input tanh differs from the book's σ: max |h| difference = "
      f"{np.abs(state[0].data - h_book).max():.3f}")

# %% [markdown]
# ## 3. Gradients of the book's LSTM: autodiff against the hand-derived BPTT (manual.lstm_bptt)

# %%
V = 5
model = nn.CharRNN(V, H, cell="lstm", cell_input="sigmoid", rng=np.random.default_rng(1))
inputs, targets = rng.integers(0, V, 12), rng.integers(0, V, 12)
loss = nn.cross_entropy(model(inputs)[0], targets)
loss.backward()
P = model.named_parameters()
params = {"W_x": P["cell.W_x"].data, "W_h": P["cell.W_h"].data, "b": P["cell.b"].data,
          "W_hy": P["out.W"].data, "b_y": P["out.b"].data}
hand_loss, hand, _ = manual.lstm_bptt(params, inputs, targets, None, cell_input="sigmoid")
ours = {"W_x": "cell.W_x", "W_h": "cell.W_h", "b": "cell.b", "W_hy": "out.W", "b_y": "out.b"}
print(f"loss: autodiff {loss.item():.12f}, manual.lstm_bptt {hand_loss:.12f}")
for k, name in ours.items():
    print(f"max |{name} manual - autodiff| = {np.abs(hand[k] - P[name].grad).max():.1e}")
grad_f = P["cell.W_h"].grad[block["f"]]
print(f"the forget gate's rows of W_h (book W^f): gradient norm {np.linalg.norm(grad_f):.4f}")

# %% [markdown]
# ## 4. Why the forget gate helps: with h(t−1) held, ∂s(t)/∂s(t−1) = diag(f(t)) (eq. 10.41)
# The state's gradient is multiplied by gates the network learns to hold open, not by W and tanh′.

# %%
x, h_prev = Tensor(xs[0]), Tensor(rng.standard_normal(H))
s_prev = Tensor(rng.standard_normal(H), requires_grad=True)
jac = np.zeros((H, H))
for i in range(H):
    s_prev.grad = None
    cell(x, (h_prev, s_prev))[1][i].backward()           # row i: ∇_{s(t−1)} s_i(t)
    jac[i] = s_prev.grad
f = sigma(b_["f"] + U_["f"] @ xs[0] + W_["f"] @ h_prev.data)
print(f"f(t) = {np.round(f, 4).tolist()}")
print(f"max |∂s(t)/∂s(t−1) by autodiff - diag(f(t))| = {np.abs(jac - np.diag(f)).max():.1e}")
