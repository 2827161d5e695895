"""11 · your own cell: a GRU written from tensor ops, and the variant the library does not have.

PyTorch's GRU (nn.GRUCell here) lets the reset gate r scale W_hn h after the product; Cho et al. (2014)
and the Deep Learning book (eq. 10.45) put r on h before it: n = tanh(W_xn x + W_hn (r * h) + b).
We write both in one cell, check the first against nn.GRUCell and the second with gradcheck, draw
it unrolled, and train it on the shipped corpus with the library's own training loop (train.fit).

    python examples/11_custom_cell.py          (TINYGRAD_RNN_QUICK=1 for small sizes)
"""
# %% [markdown]
# ## 1. The cell: a Module with `hidden_size` and `forward(x, state) -> state`; the engine does the rest

# %%
import os
import re

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, check, data, nn, train, viz

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"


class MyGRU(nn.Module):
    """r = σ(.), z = σ(.) from x and h; n = tanh(.) the candidate; h' = (1 - z) * n + z * h.
    Weights stacked r, z, n as in nn.GRUCell, so its state_dict loads straight in."""

    def __init__(self, input_size, hidden_size, reset_after=True, rng=None):
        rng = np.random.default_rng(1) if rng is None else rng
        self.input_size, self.hidden_size, self.reset_after = input_size, hidden_size, reset_after
        k, H = 1 / np.sqrt(hidden_size), hidden_size

        def weight(name, *shape):
            return Tensor(rng.uniform(-k, k, shape), requires_grad=True, name=name)

        self.W_x, self.W_h = weight("W_x", 3 * H, input_size), weight("W_h", 3 * H, H)
        self.b_x, self.b_h = weight("b_x", 3 * H), weight("b_h", 3 * H)

    def forward(self, x, h):
        H = self.hidden_size
        h = tr.zeros(*x.shape[:-1], H) if h is None else h    # None on the first step means zeros
        ax = x @ self.W_x.T + self.b_x                          # (..., 3H): the x side of r, z, n
        W_hr, W_hz, W_hn = self.W_h[:H], self.W_h[H:2 * H], self.W_h[2 * H:]
        b_hr, b_hz, b_hn = self.b_h[:H], self.b_h[H:2 * H], self.b_h[2 * H:]
        r = (ax[..., :H] + h @ W_hr.T + b_hr).sigmoid()         # reset gate
        z = (ax[..., H:2 * H] + h @ W_hz.T + b_hz).sigmoid()    # update gate
        if self.reset_after:                                    # PyTorch: r * (W_hn h + b_hn)
            n = (ax[..., 2 * H:] + r * (h @ W_hn.T + b_hn)).tanh()
        else:                                                   # the book, eq. 10.45: W_hn (r * h)
            n = (ax[..., 2 * H:] + (r * h) @ W_hn.T + b_hn).tanh()
        return (1 - z) * n + z * h


# %% [markdown]
# ## 2. Where it coincides with nn.GRUCell: same weights, same h, same gradients

# %%
D, H, B, T = 4, 5, 3, 6
rng = np.random.default_rng(0)
ref, mine, book = nn.GRUCell(D, H, rng=rng), MyGRU(D, H), MyGRU(D, H, reset_after=False)
mine.load_state_dict(ref.state_dict())
book.load_state_dict(ref.state_dict())
xs = rng.standard_normal((T, B, D))
h_ref = h_mine = h_book = None
for t in range(T):
    h_ref, h_mine, h_book = ref(Tensor(xs[t]), h_ref), mine(Tensor(xs[t]), h_mine), book(Tensor(xs[t]), h_book)
(h_ref ** 2).sum().backward()
(h_mine ** 2).sum().backward()
print(f"max |h MyGRU - h nn.GRUCell| after {T} steps, batch {B} = {np.abs(h_mine.data - h_ref.data).max():.1e}")
for name, p in ref.named_parameters().items():
    print(f"max |d/d{name} MyGRU - nn.GRUCell| = {np.abs(mine.named_parameters()[name].grad - p.grad).max():.1e}")
print(f"reset before W_hn (the book's GRU) is another cell: |h difference| up to "
      f"{np.abs(h_book.data - h_ref.data).max():.3f}")

# %% [markdown]
# ## 3. The book's variant has no hand derivation here, so check it against central differences

# %%
x, h0 = Tensor(xs[0], requires_grad=True), Tensor(rng.standard_normal((B, H)), requires_grad=True)
ok = check.gradcheck(lambda x, h, *weights: book(x, h), (x, h0, *book.parameters()))
entries = B * H * (x.size + h0.size + sum(p.size for p in book.parameters()))
print(f"gradcheck(book GRU step): {ok}, all {entries} Jacobian entries within atol 1e-5 + rtol 1e-3")
V = 6
model = nn.CharRNN(V, H, cell=MyGRU(V, H, reset_after=False), rng=rng)
report = check.compare_cell(model, rng.integers(0, V, 5), rng.integers(0, V, 5))
print(report)

# %% [markdown]
# ## 4. Unrolled over 3 steps: each weight is one node, with an edge into every step that uses it

# %%
picture = viz.draw_unrolled(model, 3)
node = re.search(r'(\w+) \[label="cell\.W_h\\n', picture.source)[1]
edges = re.findall(rf"^\s*{node} -> (?!.*invis)", picture.source, re.M)  # visible edges only
print(f"cell.W_h: one node, {len(edges)} edges out (W_hr, W_hz, W_hn sliced in each of 3 steps)")
try:
    print(f"wrote {viz.save(picture, 'my_gru_unrolled.svg')}")
except viz.GraphvizNotFound as e:
    print(f"note: {e}")

# %% [markdown]
# ## 5. Train it with the library's loop: train.Run takes a cell factory, train.fit does the rest

# %%
text = data.load_text()[:20_000 if QUICK else 200_000]
config = train.Config(hidden=16 if QUICK else 64, seq_len=16 if QUICK else 32, batch=8 if QUICK else 16,
                      optim="adam", lr=0.01, eval_every=10**6, sample_every=10**6, checkpoint_every=10**6)
run = train.Run.start(config, text, cell=lambda V, H: MyGRU(V, H, reset_after=False))
train_ids, val_ids = run.split(text)
bigram = data.ngram_baselines(train_ids, val_ids, run.vocab.size)["bigram"]["bits_per_char"]
before = train.evaluate(run.model, val_ids)["bits_per_char"]
steps = 40 if QUICK else 400
result = train.fit(run, text, steps)
print(f"cell {run.config.cell}, {run.n_parameters():,} parameters, {steps} steps of Adam on "
      f"{len(text):,} characters of Pride and Prejudice")
print(f"held-out bits/char: {before:.3f} before, {result.score['bits_per_char']:.3f} after "
      f"(bigram counts: {bigram:.3f})")
sample = "".join(train.generate(run.model, run.vocab, run.unigram, "Elizabeth ", 80, 0.7, np.random.default_rng(2)))
print("sample: Elizabeth " + sample.replace("\n", " "))
