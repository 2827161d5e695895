"""One gradient, four ways: the autodiff engine, the hand-derived BPTT of the seeds (tinygrad_rnn.manual),
forward-mode RTRL (seed 001), and central finite differences. First by hand for an RNN, then the full
table of check.compare_cell for an RNN and an LSTM. `tinygrad-rnn gradcheck` prints the same table.

    python examples/compare_gradients.py
"""
import numpy as np

from tinygrad_rnn import check, manual, nn
from tinygrad_rnn.data import Vocab

vocab = Vocab("hello")
ids = vocab.encode("hellohello")
inputs, targets = ids[:-1], ids[1:]                      # T = 9 steps: read h e l l o h e l l
H = 5

# 1. by hand: the same weights through the engine and through the seed's equations
model = nn.CharRNN(vocab.size, H, cell="rnn", rng=np.random.default_rng(0))
logits, _ = model(inputs)
loss = nn.cross_entropy(logits, targets)                 # summed cross-entropy, natural log
loss.backward()

params = model.named_parameters()
names = {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"}
weights = {seed: params[ours].data for ours, seed in names.items()}
bptt_loss, bptt, _ = manual.rnn_bptt(weights, inputs, targets, np.zeros(H))
rtrl_loss, rtrl = manual.rnn_rtrl(weights, inputs, targets, np.zeros(H))
print(f"loss: autodiff {loss.item():.15f}, BPTT {bptt_loss:.15f}, RTRL {rtrl_loss:.15f}")
print(f"{'parameter':10s} {'|autodiff - BPTT|':>18s} {'|BPTT - RTRL|':>14s}")
for ours, seed in names.items():
    print(f"{ours:10s} {np.abs(params[ours].grad - bptt[seed]).max():18.2e} "
          f"{np.abs(bptt[seed] - rtrl[seed]).max():14.2e}")

# 2. the three-way table, finite differences included, for both cells
for cell in ("rnn", "lstm"):
    model = nn.CharRNN(vocab.size, H, cell=cell, rng=np.random.default_rng(0))
    report = check.compare_cell(model, inputs, targets)
    print(f"\n{report}")
    assert report.ok, f"{cell}: the gradients disagree"
