# %% [markdown]
"""14 · the engine writes the code: tr.trace prints the backward it derived, as plain NumPy.

tr.trace runs a training step once, records every op (the forward, then the ops the engine's own backward
records under create_graph=True), and writes each op out by the one-line NumPy template in its class.
The steps of tr.scope("t=k") that repeat become loops, so the code reads next to min-char-rnn's lossFun
(the min-char-rnn derivation, eqs. (18)-(32)) and, for the LSTM, next to the book's eq. 10.40-10.44.

    python examples/14_the_engine_writes_the_code.py
"""
# %% [markdown]
# ## 1. The RNN's traced training step on "hello"

# %%
import os
import re
import time

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import data, nn

vocab = data.Vocab("helo")
ids = vocab.encode("hellohellohello")
T = 4
idx, targets = ids[:T], ids[1:T + 1]
model = nn.CharRNN(vocab.size, 8, cell="rnn", rng=np.random.default_rng(0))


def step(idx, targets):
    return nn.cross_entropy(model(idx)[0], targets)


prog = tr.trace(step, idx, targets, params=model.named_parameters())
print(prog.source)

# %% [markdown]
# ## 2. Beside lossFun, line by line (the min-char-rnn derivation's names on the left)

# %%
PAIRS = [("dy = p - onehot(y)           (fused softmax-CE)", r"d_softmax - np\.eye"),
         ("dWhy += dy hs[t]^T", r"dout_W_rows\[t\] = "),
         ("dby += dy", r"dout_b \+= do"),
         ("dh = Why^T dy + dhnext", r"dh_?\d* = dh_next \+ do_?\d* @ out_W"),
         ("dhraw = (1 - h*h) * dh       (eq. 10.21)", r"da = dh_?\d* \* \(1\.0 - hs\[t\] \* hs\[t\]\)"),
         ("dbh += dhraw", r"db_h \+= da"),
         ("dWxh[:, x_t] += dhraw", r"dW_xh\[:, idx\[t\]\] \+= da\.T"),
         ("dWhh += dhraw hs[t-1]^T", r"dW_hh_rows\[t\] = "),
         ("dhnext = Whh^T dhraw", r"dh_next = da @ W_hh")]
lines = prog.source.splitlines()
for theirs, pattern in PAIRS:
    ours = next(line.strip() for line in lines if re.search(pattern, line))
    print(f"{theirs:44s} | {ours.split('  # ')[0]}")
print("\nafter the loop:", next(x.strip() for x in lines if x.strip().startswith("dW_hh += np.dot(np.concat")))
print("\nwhat the engine does differently:")
print(" - it recomputes softmax(z) from the stacked logits for dL/dz (CrossEntropy's rule under create_graph)")
print("   where lossFun keeps ps[t] from the forward; 1 - h*h it reads from the saved h, as lossFun does")
print(" - its sums start from zeros before the loop, as lossFun's; a sum no step adds to stays outside it")
print(" - it keeps each step's dy and sums dWhy = Σ_t dy h(t)^T after the loop as ONE matrix product")
print("   (the engine's OuterGrad does the same), where lossFun adds one outer product per step")

# %% [markdown]
# ## 3. The program equals the engine, on other characters too

# %%
other_idx, other_targets = ids[5:5 + T], ids[6:6 + T]
loss, grads = prog(other_idx, other_targets)
want = step(other_idx, other_targets)
engine = dict(zip(grads, tr.grad(want, list(model.named_parameters().values()))))
print(f"loss: traced {float(loss):.12f}, engine {want.item():.12f}")
print(f"max |traced - engine| over every gradient = "
      f"{max(np.abs(grads[k] - engine[k].data).max() for k in grads):.2e}")
print(f"lines of code: T = {T}: {len(lines)}; T = 100: "
      f"{len(tr.trace(step, ids[:1].repeat(100), ids[1:2].repeat(100), params=model.named_parameters()).source.splitlines())}")

# %% [markdown]
# ## 4. The book's LSTM (cell_input="sigmoid"): the forward loop beside eq. 10.40-10.44

# %%
lstm = nn.CharRNN(vocab.size, 8, cell="lstm", cell_input="sigmoid", rng=np.random.default_rng(1))
lstm_prog = tr.trace(lambda idx, targets: nn.cross_entropy(lstm(idx)[0], targets), idx, targets,
                     params=lstm.named_parameters())
BOOK = [(r"^\s+a = ", "pre-activations b + U x + W h of all four blocks"),
        (r"^\s+fs\[t\] = ", "f = σ(b^f + U^f x + W^f h)          (10.40)"),
        (r"^\s+gs\[t\] = ", "g = σ(b^g + U^g x + W^g h)          (10.42)"),
        (r"^\s+s_tildes\[t\] = ", "s̃ = σ(b + U x + W h), cell input    (10.41)"),
        (r"^\s+ss\[t\] = ", "s = f s(t-1) + g s̃                  (10.41)"),
        (r"^\s+qs\[t\] = ", "q = σ(b^o + U^o x + W^o h)          (10.44)"),
        (r"^\s+tanhs\[t\] = ", "tanh(s), kept for the backward"),
        (r"^\s+hs\[t\] = ", "h = tanh(s) q                       (10.43)")]
lstm_lines = lstm_prog.source.splitlines()
for pattern, book in BOOK:
    ours = next(line.strip() for line in lstm_lines if re.search(pattern, line))
    print(f"{book:52s} | {ours.split('  #')[0]}")
body = lstm_prog.source.split("for t in reversed(")[1].split("\n    do_1")[0]
print("\nthe backward loop the engine derived for it (ds_next is lossFun's dcnext):")
print("    for t in reversed(" + body)

# %% [markdown]
# ## 5. Training on the traced step: call, Adagrad on its gradients, call again

# %%
steps = 60 if os.environ.get("TINYGRAD_RNN_QUICK") else 300
opt = nn.optim.Adagrad(model.parameters(), lr=0.1)
params = model.named_parameters()
start = time.perf_counter()
for n in range(steps + 1):
    loss, grads = prog(idx, targets)
    for name, p in params.items():
        p.grad = np.clip(grads[name], -5, 5)
    opt.step()
    if n % (steps // 3) == 0:
        print(f"step {n:4d} loss {float(loss):.4f}")
traced = (time.perf_counter() - start) / (steps + 1)
start = time.perf_counter()
for n in range(steps + 1):
    model.zero_grad()
    step(idx, targets).backward()
engine_time = (time.perf_counter() - start) / (steps + 1)
print(f"a step: traced {traced * 1e6:.0f} µs, the engine's graph {engine_time * 1e6:.0f} µs "
      f"(the same NumPy work, without the per-op bookkeeping)")
with tr.no_grad():
    guess = vocab.decode(model(idx)[0].data.argmax(axis=-1))
print(f"after training, the next letters of {vocab.decode(idx)!r}: {guess!r}")
