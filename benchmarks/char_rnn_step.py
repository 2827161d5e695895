"""One min-char-rnn training step (V=65, H=100, T=25, B=1, float64) through tinygrad_rnn next to a
hand-written NumPy step of the same math (benchmarks/numpy_reference.py) and, if PyTorch is installed,
the same step on torch tensors with autograd (benchmarks/torch_reference.py), for the RNN and the LSTM.

Step: forward over T steps, summed cross-entropy, backward, clip every gradient to [-5, 5], Adagrad.
All runs start from the same weights and are checked to agree over 3 steps before they are timed.
One thread each: NumPy's BLAS (set below, as the command line does) and PyTorch (torch.set_num_threads(1)).
Columns /numpy and /torch are tinygrad_rnn's time over theirs.
Run: python benchmarks/char_rnn_step.py [--repeats N] [--profile]   (interleaved, median of N)
"""
import argparse
import cProfile
import os
import pstats
import time

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads BLAS;
    os.environ.setdefault(_name, "1")                                          # the library sets none

from tinygrad_rnn import nn  # noqa: E402

import numpy as np
import numpy_reference

try:
    import torch
    import torch_reference
except ImportError:
    torch = None

V, H, T, LR = 65, 100, 25, 0.1
KEYS = {"rnn": {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"},
        "lstm": {"cell.W_x": "W_x", "cell.W_h": "W_h", "cell.b": "b", "out.W": "W_hy", "out.b": "b_y"}}


def initial_weights(cell, seed=0):
    """The weights nn.CharRNN starts from, under the references' names (W_xh, ..., b_y)."""
    model = nn.CharRNN(V, H, cell=cell, rng=np.random.default_rng(seed))
    return {KEYS[cell][k]: p.data.copy() for k, p in model.named_parameters().items()}


class AutodiffRun:
    """nn.CharRNN trained chunk by chunk with its state carried, as min-char-rnn walks its text."""

    def __init__(self, cell, data, seed=0):
        self.model = nn.CharRNN(V, H, cell=cell, rng=np.random.default_rng(seed))
        self.opt = nn.optim.Adagrad(self.model.parameters(), lr=LR)
        self.data, self.pos, self.state = data, 0, None

    def weights(self):
        names = KEYS[self.model.cell_type]
        return {names[k]: p.data for k, p in self.model.named_parameters().items()}

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
        self.P = initial_weights(cell, seed)
        self.mem = {k: np.zeros_like(v) for k, v in self.P.items()}
        self.loss_fun = numpy_reference.rnn_loss_fun if cell == "rnn" else numpy_reference.lstm_loss_fun
        self.state = np.zeros(H) if cell == "rnn" else (np.zeros(H), np.zeros(H))
        self.data, self.pos = data, 0

    def weights(self):
        return self.P

    def step(self):
        chunk = self.data[self.pos:self.pos + T + 1]
        self.pos = (self.pos + T) % (len(self.data) - T - 1)
        loss, d, self.state = self.loss_fun(self.P, chunk[:-1], chunk[1:], self.state)
        numpy_reference.adagrad_update(self.P, d, self.mem, LR)
        return loss


class TorchRun:
    """The same step on float64 torch tensors, autograd for the backward, on the same initial weights."""

    def __init__(self, cell, data, seed=0):
        self.P = {k: torch.tensor(w, requires_grad=True) for k, w in initial_weights(cell, seed).items()}
        self.mem = {k: torch.zeros_like(p, requires_grad=False) for k, p in self.P.items()}
        self.loss_fun = torch_reference.rnn_loss_fun if cell == "rnn" else torch_reference.lstm_loss_fun
        zeros = torch.zeros(H, dtype=torch.float64)
        self.state = zeros if cell == "rnn" else (zeros, zeros)
        self.data, self.pos = torch.from_numpy(data), 0

    def weights(self):
        return {k: p.detach().numpy() for k, p in self.P.items()}

    def step(self):
        chunk = self.data[self.pos:self.pos + T + 1]
        self.pos = (self.pos + T) % (len(self.data) - T - 1)
        loss, self.state = self.loss_fun(self.P, chunk[:-1], chunk[1:], self.state)
        torch_reference.adagrad_update(self.P, self.mem, LR)
        return loss


def make_runs(cell, data):
    """tinygrad_rnn, NumPy and, if installed, PyTorch: each at step 0 of the same model."""
    runs = [AutodiffRun(cell, data), NumpyRun(cell, data)]
    return runs if torch is None else runs + [TorchRun(cell, data)]


def check_same_math(cell, data):
    """Every run gives the NumPy run's losses and weights for a few steps, so the timing compares like with like."""
    auto, ref, *others = make_runs(cell, data)
    for _ in range(3):
        want = ref.step()
        for run in (auto, *others):
            got = run.step()
            assert abs(got - want) <= 1e-10 * abs(want), (cell, type(run).__name__, got, want)
    for run in (auto, *others):
        for k, w in run.weights().items():
            assert np.allclose(w, ref.P[k], rtol=0, atol=1e-10), (cell, type(run).__name__, k)


def time_interleaved(runs, repeats, warmup=20):
    """Median and fastest seconds per step of each run, alternating runs so drift hits all alike."""
    for _ in range(warmup):
        for run in runs:
            run.step()
    times = [[] for _ in runs]
    pairs = list(zip(runs, times))
    for r in range(repeats):
        k = r % len(pairs)  # rotate who goes first: each run follows each other equally often
        for run, ts in pairs[k:] + pairs[:k]:
            start = time.perf_counter()
            run.step()
            ts.append(time.perf_counter() - start)
    return [float(np.median(ts)) for ts in times], [min(ts) for ts in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="cProfile the autodiff steps afterwards")
    args = parser.parse_args()
    data = np.random.default_rng(1).integers(0, V, 5000)
    threads = "one BLAS thread"
    if torch is not None:
        torch.set_num_threads(1)
        threads += ", torch.set_num_threads(1)"
    print(f"CharRNN training step, V={V} H={H} T={T} B=1 float64, {threads}, "
          f"median of {args.repeats} interleaved repeats")
    for cell in ("rnn", "lstm"):
        check_same_math(cell, data)
    print(f"checked: {'all three give' if torch else 'both give'} the same losses and weights over 3 steps (to 1e-10)")
    if torch is None:
        print(f"{'cell':<6}{'tinygrad_rnn ms':>17}{'numpy ms':>11}{'ratio':>8}{'fastest':>9}")
    else:
        print(f"{'cell':<6}{'tinygrad_rnn ms':>17}{'numpy ms':>11}{'torch ms':>11}{'/numpy':>8}{'/torch':>8}"
              f"{'fastest /numpy':>16}")
    for cell in ("rnn", "lstm"):
        (auto, ref, *theirs), (best_auto, best_ref, *_) = time_interleaved(make_runs(cell, data), args.repeats)
        row = f"{cell:<6}{auto * 1e3:>17.3f}{ref * 1e3:>11.3f}"
        if theirs:
            row += f"{theirs[0] * 1e3:>11.3f}"
        row += f"{auto / ref:>8.2f}" + "".join(f"{auto / t:>8.2f}" for t in theirs)
        # the fastest step of each is the least disturbed by other work on a shared machine
        row += f"{best_auto / best_ref:>{16 if theirs else 9}.2f}"
        print(row)
    if torch is None:
        print("PyTorch not installed: pip install -e '.[bench]' for its column")
    if args.profile:
        for cell in ("rnn", "lstm"):
            run = AutodiffRun(cell, data)
            profile = cProfile.Profile()
            profile.runcall(lambda: [run.step() for _ in range(200)])
            print(f"\n--- cProfile, 200 autodiff steps, {cell} ---")
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
