"""01 · hello: a tiny RNN reads "hell" and learns to predict "ello".

The "hello" char-RNN tutorial's example (vocabulary e, h, l, o; 3 hidden units), trained as min-char-rnn
trains (Adagrad, summed cross-entropy, gradients clipped to [-5, 5]); then the FAU lecture's variant with
a sigmoid output layer ŷ = σ(o) and a learnable initial state h(0) that is part of θ.
Deep Learning book eq. 10.8–10.11: a(t) = b + W h(t-1) + U x(t), h(t) = tanh(a(t)), o(t) = c + V h(t),
ŷ(t) = softmax(o(t)).  `tinygrad-rnn demo` runs the first half.

    python examples/01_hello.py   (writes hello_unrolled.svg, or hello_unrolled.dot without Graphviz)
"""
# %% [markdown]
# ## 1. One-hot characters
# Four characters, ids by sorted order; the input at step t is the one-hot x(t) (a column of U = W_xh).

# %%
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import check, nn, viz
from tinygrad_rnn.data import Vocab

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"  # the test suite's setting: fewer steps
STEPS = 150 if QUICK else 200
vocab = Vocab("hello")                                   # e, h, l, o get ids 0, 1, 2, 3 (lesson 02: h, e, l, o)
inputs, targets = vocab.encode("hell"), vocab.encode("ello")
print(f"vocabulary {list(vocab.chars)}; inputs {inputs.tolist()} ('hell'), targets {targets.tolist()} ('ello')")
print("one-hot x(t) for 'h':", np.eye(vocab.size, dtype=int)[inputs[0]].tolist())

# %% [markdown]
# ## 2. Train: softmax output, summed cross-entropy, Adagrad (min-char-rnn's recipe)

# %%
model = nn.CharRNN(vocab.size, 3, cell="rnn", rng=np.random.default_rng(0))  # 3 hidden units
optimizer = nn.optim.Adagrad(model.parameters(), lr=0.1)
for step in range(1, STEPS + 1):                          # steps counted 1 … STEPS, as `tinygrad-rnn demo`
    logits, _ = model(inputs)                            # o(t) for t = 1..4: (T, V) = (4, 4)
    loss = nn.cross_entropy(logits, targets)             # L = Σ_t -log ŷ(t)[y(t)], in nats
    optimizer.zero_grad()
    loss.backward()                                      # backpropagation through time
    nn.clip_grad_value(model.parameters(), 5.0)          # min-char-rnn clips to [-5, 5]
    optimizer.step()
    if step == 1 or step % 50 == 0 or step == STEPS:
        print(f"step {step:3d}  loss {loss.item():.4f}")

with tr.no_grad():
    probs = model(inputs)[0].softmax().numpy()           # ŷ(t): each row sums to 1
for t, (x, p) in enumerate(zip("hell", probs), start=1):
    print(f"  t={t}: {x!r} -> {vocab.chars[p.argmax()]!r}  p={p.max():.3f}")
print(f"softmax output predicts: 'hell' -> {vocab.decode(probs.argmax(axis=1))!r}")

# %% [markdown]
# ## 3. The gradient three ways: autodiff, hand-derived BPTT (tinygrad_rnn.manual), finite differences

# %%
report = check.compare_cell(model, inputs, targets)
print(report)
print("gradient check:", "all three agree" if report.ok else "DISAGREE")

# %% [markdown]
# ## 4. The FAU lecture's variant: ŷ = σ(o) and a learned h(0)
# Each output unit is its own sigmoid (a yes/no per character, not a distribution), trained with
# the sigmoid cross-entropy against the one-hot target; h(0) is a parameter like W and updated with it.

# %%
fau = nn.CharRNN(vocab.size, 3, cell="rnn", learn_h0=True, rng=np.random.default_rng(0))
print("parameters θ:", list(fau.named_parameters()))
onehot_targets = np.eye(vocab.size)[targets]             # y(t) as vectors: (4, 4)
optimizer = nn.optim.Adagrad(fau.parameters(), lr=0.1)
for step in range(1, STEPS + 1):
    logits, _ = fau(inputs)
    loss = nn.binary_cross_entropy(logits, onehot_targets)  # Σ -[y log σ(o) + (1 - y) log(1 - σ(o))]
    optimizer.zero_grad()
    loss.backward()
    if step == 1:
        print(f"at the start h(0) = 0 and |dL/dh(0)| = {np.linalg.norm(fau.h0.grad):.4f}")
    nn.clip_grad_value(fau.parameters(), 5.0)
    optimizer.step()
with tr.no_grad():
    y_hat = fau(inputs)[0].sigmoid().numpy()             # ŷ = σ(o), every entry in (0, 1)
print(f"sigmoid output loss {loss.item():.4f}; ŷ rows sum to {np.round(y_hat.sum(axis=1), 3).tolist()} "
      "(independent units, not a distribution)")
print(f"learned h(0) = {np.round(fau.h0.data, 3).tolist()}")
print(f"sigmoid output predicts: 'hell' -> {vocab.decode(y_hat.argmax(axis=1))!r}")

# %% [markdown]
# ## 5. The picture: the unrolled graph, each weight one node used at every step, coloured by gradient
# Steps are clusters t = 1 … 4 as in the book (h(0) the initial state), as `tinygrad-rnn demo` draws them.

# %%
picture = viz.draw_unrolled(model, len(inputs), inputs=inputs, targets=targets, grads=True)
try:
    print("wrote", viz.save(picture, "hello_unrolled.svg"))
except viz.GraphvizNotFound as e:
    print(e)
