"""The seeds' "hello" example: a tiny RNN reads "hell" and learns to predict "ello" (min-char-rnn in
miniature), then checks its gradients three ways and draws itself. `tinygrad-rnn demo` does the same.

    python examples/hello_rnn.py   (writes hello_unrolled.svg; without Graphviz, hello_unrolled.dot)
"""
import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import check, nn, viz
from tinygrad_rnn.data import Vocab

vocab = Vocab("hello")                                   # characters e, h, l, o get ids 0, 1, 2, 3
inputs, targets = vocab.encode("hell"), vocab.encode("ello")
model = nn.CharRNN(vocab.size, 3, cell="rnn", rng=np.random.default_rng(0))  # 3 hidden units
optimizer = nn.optim.Adagrad(model.parameters(), lr=0.1)

for step in range(200):
    logits, _ = model(inputs)                            # (T, V) = (4, 4): scores for the next char
    loss = nn.cross_entropy(logits, targets)             # summed over the 4 steps, in nats
    optimizer.zero_grad()
    loss.backward()                                      # backpropagation through time
    nn.clip_grad_value(model.parameters(), 5.0)          # min-char-rnn clips to [-5, 5]
    optimizer.step()
    if step % 50 == 0:
        print(f"step {step:3d}  loss {loss.item():.4f}")

with tr.no_grad():
    probs = model(inputs)[0].softmax().numpy()           # (4, 4), each row sums to 1
for x, p in zip("hell", probs):
    print(f"{x!r} -> {vocab.chars[p.argmax()]!r}  p={p.max():.3f}")

# autodiff vs the hand-derived BPTT of tinygrad_rnn.manual vs central finite differences
print(check.compare_cell(model, inputs, targets))

logits, _ = model(inputs)
loss = nn.cross_entropy(logits, targets)
viz.retain_all_grads(loss).backward()                    # keep every node's gradient for the colours
picture = viz.draw(loss, params=model.named_parameters(), grads=True)
try:
    print("wrote", viz.save(picture, "hello_unrolled.svg"))
except viz.GraphvizNotFound as e:
    print(e)
