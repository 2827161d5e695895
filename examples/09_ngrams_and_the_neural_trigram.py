"""09 · language models: the chain rule, n-grams, perplexity, and the neural trigram (the lecture notes).

p(w_1 … w_N) = p(w_1) p(w_2 | w_1) … p(w_N | w_1 … w_{N−1}); the probabilities of all strings of a length sum
to 1. Counted n-grams give most long held-out strings probability zero; smoothing fixes that, but no Markov
model of order n sees further back than n − 1 symbols, where an RNN can. The neural trigram
h = act(V [x(w1); x(w2)] + c), p = softmax(W h + b), by hand and trained. Bits/char = −mean log2 p.

    python examples/09_ngrams_and_the_neural_trigram.py   (TINYGRAD_RNN_QUICK=1: a smaller corpus)
"""
# %% [markdown]
# ## 1. The chain rule, checked by enumeration: every string of length 5 over {a, b, .}, with trigram factors
# p(w_1 … w_5) = p(w_1) p(w_2 | w_1) p(w_3 | w_1, w_2) p(w_4 | w_2, w_3) p(w_5 | w_3, w_4)

# %%
import itertools
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import nn, viz
from tinygrad_rnn.data import NGram, Vocab, load_text, split

mini = Vocab("ab.", sort=False)
corpus = mini.encode("ab.ab.aab.b.ab.abb.")
for k in (0.5, 0):                                       # add-½ smoothing, then maximum likelihood
    uni, bi, tri3 = (NGram(corpus, 3, order, smoothing=k) for order in (1, 2, 3))
    p_all = np.array([uni.probs(s, 0)[0] * bi.probs(s, 1)[0] * tri3.probs(s, 2).prod()
                      for s in map(np.array, itertools.product(range(3), repeat=5))])
    print(f"k = {k}: Σ p over all {len(p_all)} strings = {p_all.sum():.15f}; "
          f"{(p_all == 0).mean():.0%} of them have p = 0")

# %% [markdown]
# ## 2. Counts on real text: p(c | a b) = n(a b c) / n(a b); held-out bits, maximum likelihood (k = 0) and add-k

# %%
QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
text = load_text()[:40_000 if QUICK else 200_000]       # the shipped corpus (Pride and Prejudice)
vocab = Vocab(text)
train, val = (vocab.encode(part) for part in split(text))
print(f"{len(train)} training and {len(val)} held-out characters, vocabulary of {vocab.size}")
tri = NGram(train, vocab.size, order=3)
print(f"{len(tri)} distinct trigrams seen of {vocab.size ** 3} possible; the most common:",
      [(vocab.decode(g), n) for g, n in tri.most_common(5)])
S = 4                                                    # score every model on the same targets val[4:]
print(f"{'order':>5s} {'zero-probability targets (k=0)':>31s} {'bits/char k=0':>14s} {'k=0.01':>8s} {'k=1':>8s}")
for order in range(1, 6):
    mle = NGram(train, vocab.size, order).scores(val, start=S)
    bits = [NGram(train, vocab.size, order, smoothing=k).scores(val, start=S)["bits_per_char"] for k in (0.01, 1)]
    print(f"{order:5d} {mle['zero_fraction']:31.3%} {mle['bits_per_char']:14.3f} {bits[0]:8.3f} {bits[1]:8.3f}")
for order in (3, 5):                                     # whole held-out strings: one unseen n-gram makes p = 0
    p = NGram(train, vocab.size, order).probs(val)
    print(f"held-out strings with probability 0 under the maximum-likelihood {order}-gram: " + ", ".join(
        f"{(np.lib.stride_tricks.sliding_window_view(p, n) == 0).any(axis=1).mean():.1%} of {n}-character ones"
        for n in (40, 200)))

# %% [markdown]
# ## 3. Blind beyond n − 1: "a c d d c c d a." — the closing letter repeats the opening one

# %%
rng, L, toy = np.random.default_rng(0), 6, Vocab(".abcd")


def strings(n):
    first, middle = rng.choice(["a", "b"], n), rng.choice(["c", "d"], (n, L))
    return np.stack([toy.encode("".join([f, *m, f, "."])) for f, m in zip(first, middle)])


toy_train, toy_test = strings(2000), strings(500)       # (N, L + 3)
counts = NGram(toy_train.ravel(), toy.size, order=3, smoothing=0.01)
p_close = np.array([counts.probs(s, start=L + 1)[0] for s in toy_test])
p_ab = np.array([[counts.probs(np.r_[s[:L + 1], c], start=L + 1)[0] for c in toy.encode("ab")] for s in toy_test])
told = p_close / p_ab.sum(axis=1)                       # told that a closing letter comes: a or b?
rnn = nn.CharRNN(toy.size, 16, rng=np.random.default_rng(0))
opt = nn.optim.Adam(rnn.parameters(), lr=0.02)
for step in range(150 if QUICK else 300):
    batch = toy_train[rng.integers(0, len(toy_train), 64)].T  # (T, B)
    loss = nn.cross_entropy(rnn(batch[:-1])[0], batch[1:], reduction="mean")
    opt.zero_grad(); loss.backward(); opt.step()
with tr.no_grad():
    logp = rnn(toy_test.T[:-1])[0].log_softmax().numpy()  # (T, N, V)
rnn_bits = -logp[L, np.arange(len(toy_test)), toy_test[:, L + 1]].mean() / np.log(2)
print(f"bits on the closing letter: trigram {-np.log2(p_close).mean():.3f}, trigram told a closing letter "
      f"comes {-np.log2(told).mean():.3f} (a coin flip), RNN {rnn_bits:.3f}")

# %% [markdown]
# ## 4. The neural trigram: ∂F/∂W and ∂F/∂V by hand, F = −Σ_n log p_n[w3]
# With p − y = ∂F/∂(W h + b):  ∂F/∂W = Σ_n (p − y) hᵀ,  ∂F/∂b = Σ_n (p − y),
# δ = (Wᵀ (p − y)) ⊙ (1 − h²) for act = tanh,  ∂F/∂V = Σ_n δ [x(w1); x(w2)]ᵀ,  ∂F/∂c = Σ_n δ.

# %%
model = nn.NeuralTrigram(vocab.size, 32 if QUICK else 64, rng=np.random.default_rng(0))
w1, w2, w3 = train[:-2], train[1:-1], train[2:]
n = slice(0, 50)
(F := nn.cross_entropy(model(w1[n], w2[n]), w3[n])).backward()
x = model.inputs(w1[n], w2[n]).data                     # [x(w1); x(w2)]: (50, 2V)
h = np.tanh(x @ model.hidden.W.data.T + model.hidden.b.data)
z = h @ model.out.W.data.T + model.out.b.data
p_minus_y = np.exp(z - z.max(1, keepdims=True))
p_minus_y = p_minus_y / p_minus_y.sum(1, keepdims=True) - np.eye(vocab.size)[w3[n]]
delta = (p_minus_y @ model.out.W.data) * (1 - h ** 2)
hand = {"out.W": p_minus_y.T @ h, "out.b": p_minus_y.sum(0), "hidden.W": delta.T @ x, "hidden.b": delta.sum(0)}
for name, p in model.named_parameters().items():
    print(f"max |∂F/∂{name} by hand - autodiff| = {np.abs(hand[name] - p.grad).max():.1e}")
try:  # the picture of F: the two inputs x(w1), x(w2) apart, V = hidden.W split into its two blocks
    print("wrote", viz.save(viz.draw(F, params=model.named_parameters()), "neural_trigram.svg"))
except viz.GraphvizNotFound as e:
    print(e)

# %% [markdown]
# ## 5. Trained (Adam, minibatches of 1024), the neural trigram against the counts on held-out text

# %%
opt = nn.optim.Adam(model.parameters(), lr=0.01)
for step in range(150 if QUICK else 600):
    i = rng.integers(0, len(w3), 1024)
    loss = nn.cross_entropy(model(w1[i], w2[i]), w3[i], reduction="mean")
    opt.zero_grad(); loss.backward(); opt.step()
with tr.no_grad():
    neural = nn.cross_entropy(model(val[S - 2:-2], val[S - 1:-1]), val[S:], reduction="mean").item() / np.log(2)
best = {o: min(NGram(train, vocab.size, o, smoothing=k).scores(val, start=S)["bits_per_char"]
               for k in (0.01, 0.1, 1)) for o in (2, 3)}
print(f"held-out bits/char: bigram (best add-k) {best[2]:.3f}, trigram counts (best add-k) {best[3]:.3f}, "
      f"neural trigram {neural:.3f} (perplexity {2 ** neural:.2f})")
with tr.no_grad():                                       # the same measure on 20,000 training characters
    fit = nn.cross_entropy(model(w1[:20_000], w2[:20_000]), w3[:20_000], reduction="mean").item() / np.log(2)
print(f"Why the neural trigram trails the counts here: both see the same two characters, so its only gain is\n"
      "sharing statistics between rare contexts, and this corpus covers the common ones well; and it is underfit,\n"
      f"not overfit: {fit:.3f} bits/char on training text, above the counts' {best[3]:.3f} on held-out text "
      f"(after {step + 1} steps, H = {model.hidden_size}).")
