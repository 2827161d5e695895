"""One min-char-rnn training step (V=65, H=100, T=25, B=1, float64) through tinygrad_rnn next to a
hand-written NumPy step of the same math (benchmarks/numpy_reference.py), for the RNN and the LSTM.

Step: forward over T steps, summed cross-entropy, backward, clip every gradient to [-5, 5], Adagrad.
Run: python benchmarks/char_rnn_step.py [--repeats N] [--profile]   (interleaved, median of N)
"""
import argparse
import cProfile
import pstats
import time

import numpy as np
from numpy_reference import adagrad_update, lstm_loss_fun, rnn_loss_fun

from tinygrad_rnn import nn

V, H, T, LR = 65, 100, 25, 0.1
KEYS = {"rnn": {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"},
        "lstm": {"cell.W_x": "W_x", "cell.W_h": "W_h", "cell.b": "b", "out.W": "W_hy", "out.b": "b_y"}}


class AutodiffRun:
    """nn.CharRNN trained chunk by chunk with its state carried, as min-char-rnn walks its text."""

    def __init__(self, cell, data, seed=0):
        self.model = nn.CharRNN(V, H, cell=cell, rng=np.random.default_rng(seed))
        self.opt = nn.optim.Adagrad(self.model.parameters(), lr=LR)
        self.data, self.pos, self.state = data, 0, None

    def step(self):
        chunk = self.data[self.pos:self.pos + T + 1]
        self.pos = (self.pos + T) % (len(self.data) - T - 1)
        logits, state = self.model(chunk[:-1], self.state)
        loss = nn.cross_entropy(logits, chunk[1:])
        self.opt.zero_grad()
        loss.backward()
        nn.clip_grad_value(self.model.parameters(), 5)
        self.opt.step()
        self.state = nn.detach_state(state)
        return loss.item()


class NumpyRun:
    """The hand-written step on the same initial weights."""

    def __init__(self, cell, data, seed=0):
        model = nn.CharRNN(V, H, cell=cell, rng=np.random.default_rng(seed))
        self.P = {KEYS[cell][k]: p.data.copy() for k, p in model.named_parameters().items()}
        self.mem = {k: np.zeros_like(v) for k, v in self.P.items()}
        self.loss_fun = rnn_loss_fun if cell == "rnn" else lstm_loss_fun
        self.state = np.zeros(H) if cell == "rnn" else (np.zeros(H), np.zeros(H))
        self.data, self.pos = data, 0

    def step(self):
        chunk = self.data[self.pos:self.pos + T + 1]
        self.pos = (self.pos + T) % (len(self.data) - T - 1)
        loss, d, self.state = self.loss_fun(self.P, chunk[:-1], chunk[1:], self.state)
        adagrad_update(self.P, d, self.mem, LR)
        return loss


def check_same_math(cell, data):
    """Both runs give the same losses and weights for a few steps, so the timing compares like with like."""
    a, b = AutodiffRun(cell, data), NumpyRun(cell, data)
    for _ in range(3):
        la, lb = a.step(), b.step()
        assert abs(la - lb) <= 1e-10 * abs(lb), (cell, la, lb)
    for k, p in a.model.named_parameters().items():
        assert np.allclose(p.data, b.P[KEYS[cell][k]], rtol=0, atol=1e-10), (cell, k)


def time_interleaved(runs, repeats, warmup=20):
    """Median seconds per step of each run, alternating runs so drift hits all alike."""
    for _ in range(warmup):
        for run in runs:
            run.step()
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, ts in zip(runs, times):
            start = time.perf_counter()
            run.step()
            ts.append(time.perf_counter() - start)
    return [float(np.median(ts)) for ts in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="cProfile the autodiff steps afterwards")
    args = parser.parse_args()
    data = np.random.default_rng(1).integers(0, V, 5000)
    print(f"CharRNN training step, V={V} H={H} T={T} B=1 float64, median of {args.repeats} interleaved repeats")
    for cell in ("rnn", "lstm"):
        check_same_math(cell, data)
    print("checked: both give the same losses and weights over 3 steps (to 1e-10)")
    print(f"{'cell':<6}{'tinygrad_rnn ms':>17}{'numpy ms':>11}{'ratio':>8}")
    for cell in ("rnn", "lstm"):
        auto, ref = time_interleaved([AutodiffRun(cell, data), NumpyRun(cell, data)], args.repeats)
        print(f"{cell:<6}{auto * 1e3:>17.3f}{ref * 1e3:>11.3f}{auto / ref:>8.2f}")
    if args.profile:
        for cell in ("rnn", "lstm"):
            run = AutodiffRun(cell, data)
            profile = cProfile.Profile()
            profile.runcall(lambda: [run.step() for _ in range(200)])
            print(f"\n--- cProfile, 200 autodiff steps, {cell} ---")
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
