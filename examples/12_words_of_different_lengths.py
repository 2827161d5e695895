"""12 · training on words of different lengths: "ca" → "at" next to "hell" → "ello", padded.

The "hello" char-RNN tutorial trains one word; with several words of different lengths in one batch the
short ones are padded to the longest. The padded steps must add nothing to the loss and nothing to the
gradient: nn.cross_entropy(..., ignore_index=-100) skips targets equal to -100, as PyTorch does. An RNN is
causal, so the padded inputs after a word's end cannot change its earlier outputs. h(0) is learned
(the FAU lecture's learnable initial state), shared by both words.

    python examples/12_words_of_different_lengths.py
"""
# %% [markdown]
# ## 1. A padded batch: inputs (T, B) and targets (T, B) with -100 after each word's end

# %%
import os

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import nn
from tinygrad_rnn.data import Vocab

QUICK = os.environ.get("TINYGRAD_RNN_QUICK") == "1"
PAD = -100                                               # nn.cross_entropy's default ignore_index
words = ["cat", "hello"]
vocab = Vocab("".join(words))                            # a, c, e, h, l, o, t
T = max(len(w) for w in words) - 1                       # 4 steps: read all but the last character
inputs = np.zeros((T, len(words)), dtype=np.int64)       # padding input: any id (here 'a'); never read
targets = np.full((T, len(words)), PAD)
for b, w in enumerate(words):
    inputs[:len(w) - 1, b] = vocab.encode(w[:-1])
    targets[:len(w) - 1, b] = vocab.encode(w[1:])
print(f"vocabulary {list(vocab.chars)}")
print("inputs (T, B):\n", inputs, "\ntargets (T, B), -100 = padding:\n", targets)

# %% [markdown]
# ## 2. The padded loss equals the sum of the words' own losses, and so does its gradient

# %%
model = nn.CharRNN(vocab.size, 8, learn_h0=True, rng=np.random.default_rng(0))
params = model.parameters()
loss = nn.cross_entropy(model(inputs)[0], targets)       # summed over the real targets only
model.zero_grad()
loss.backward()
padded_grads = [p.grad.copy() for p in params]
separate, grads = 0.0, [np.zeros_like(p.data) for p in params]
for w in words:                                          # each word alone, unpadded
    model.zero_grad()
    word_loss = nn.cross_entropy(model(vocab.encode(w[:-1]))[0], vocab.encode(w[1:]))
    word_loss.backward()
    separate += word_loss.item()
    grads = [g + p.grad for g, p in zip(grads, params)]
print(f"padded batch loss {loss.item():.12f}, words one by one {separate:.12f}")
print(f"max |padded loss - separate losses| = {abs(loss.item() - separate):.1e}")
print(f"max |padded gradient - separate gradients| = "
      f"{max(np.abs(a - b).max() for a, b in zip(padded_grads, grads)):.1e}")
logits = tr.Tensor(model(inputs)[0].data, requires_grad=True)
nn.cross_entropy(logits, targets).backward()
print(f"gradient on the padded positions' logits: {np.abs(logits.grad[targets == PAD]).max()} (exactly zero)")
mean = nn.cross_entropy(model(inputs)[0], targets, reduction="mean").item()
print(f"reduction='mean' divides by the {int((targets != PAD).sum())} real targets: "
      f"{mean:.6f} = {loss.item():.6f} / {int((targets != PAD).sum())}")

# %% [markdown]
# ## 3. Train on the batch (Adagrad, as min-char-rnn) and read both words back

# %%
optimizer = nn.optim.Adagrad(params, lr=0.1)
for step in range(150 if QUICK else 300):
    loss = nn.cross_entropy(model(inputs)[0], targets, reduction="mean")  # nats per real character
    optimizer.zero_grad()
    loss.backward()
    nn.clip_grad_value(params, 5.0)
    optimizer.step()
    if step % 50 == 0:
        print(f"step {step:3d}  loss {loss.item():.4f} nats/char")
print(f"final loss {loss.item():.4f} nats/char; learned h(0) = {np.round(model.h0.data, 2).tolist()}")
with tr.no_grad():
    predicted = model(inputs)[0].numpy().argmax(axis=-1)  # (T, B)
for b, w in enumerate(words):
    n = len(w) - 1
    print(f"{w[:-1]!r} -> {vocab.decode(predicted[:n, b])!r} (want {w[1:]!r})")
