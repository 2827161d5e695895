"""`make bench`: one min-char-rnn training step through tinygrad_rnn (op-level and fused), a hand-written
NumPy step (numpy_reference.py) and PyTorch eager (torch_reference.py, when the `bench` extra is
installed), and the op-level step written out as NumPy by tr.trace ("traced"), side by side in one process,
float64 and float32; then the peak memory of a T=10,000 sequence.

Step: forward over T steps, summed cross-entropy, backward, clip every gradient to [-5, 5], Adagrad,
with the state carried from chunk to chunk. All runs start from the same weights and are checked to give
the same losses and weights over 3 steps before they are timed. Timing: rounds in which every run takes
its turn (who goes first rotates), each turn the mean of a few steps; printed are the medians over the
rounds and, for the ratios, the spread (lowest-highest) of the per-round ratios. One thread each: NumPy's
BLAS (set below, as the command line does) and PyTorch (torch.set_num_threads(1)).

Run: python benchmarks/bench.py [--rounds N] [--quick]
"""
import argparse
import os
import time
import tracemalloc

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads BLAS;
    os.environ.setdefault(_name, "1")                                          # the library sets none

import tinygrad_rnn as tr  # noqa: E402
from tinygrad_rnn import nn  # noqa: E402

import numpy as np
import numpy_reference

try:
    import torch
    import torch_reference
except ImportError:
    torch = None

LR = 0.1
KEYS = {"rnn": {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"},
        "lstm": {"cell.W_x": "W_x", "cell.W_h": "W_h", "cell.b": "b", "out.W": "W_hy", "out.b": "b_y"}}
# name, V, H, T, B (None: one sequence of vectors, as min-char-rnn), steps timed per turn
CONFIGS = [("small", 65, 100, 25, None, 20), ("batched", 65, 256, 50, 32, 1)]


class Config:
    def __init__(self, cell, V, H, T, B, dtype):
        self.cell, self.V, self.H, self.T, self.B, self.dtype = cell, V, H, T, B, np.dtype(dtype)
        shape = (5000,) if B is None else (5000, B)
        self.data = np.random.default_rng(1).integers(0, V, shape)

    def model(self, fused=False):
        return nn.CharRNN(self.V, self.H, cell=self.cell, rng=np.random.default_rng(0), dtype=self.dtype, fused=fused)

    def weights(self):
        """The weights nn.CharRNN starts from, under the references' names (W_xh, ..., b_y)."""
        return {KEYS[self.cell][k]: p.data.copy() for k, p in self.model().named_parameters().items()}

    def zeros(self):
        return np.zeros((self.H,) if self.B is None else (self.B, self.H), self.dtype)


class Chunks:
    """min-char-rnn's walk through the data: chunk k is inputs[k*T : k*T+T], targets one further."""

    def __init__(self, config):
        self.data, self.T, self.pos = config.data, config.T, 0

    def next(self):
        chunk = self.data[self.pos:self.pos + self.T + 1]
        self.pos = (self.pos + self.T) % (len(self.data) - self.T - 1)
        return chunk[:-1], chunk[1:]


class EngineRun:
    def __init__(self, config, fused):
        self.name = "fused" if fused else "op-level"
        self.model = config.model(fused)
        self.opt = nn.optim.Adagrad(self.model.parameters(), lr=LR)
        self.chunks, self.state, self.keys = Chunks(config), None, KEYS[config.cell]

    def weights(self):
        return {self.keys[k]: p.data for k, p in self.model.named_parameters().items()}

    def step(self):
        inputs, targets = self.chunks.next()
        logits, state = self.model(inputs, self.state)
        loss = nn.cross_entropy(logits, targets)
        self.opt.zero_grad()
        loss.backward()
        nn.clip_grad_value(self.model.parameters(), 5)
        self.opt.step()
        self.state = nn.detach_state(state)
        return loss.item()


class TracedRun:
    """The op-level model's step written out as NumPy by tr.trace (forward, the engine's backward), then the
    same clip and Adagrad as the NumPy run: no graph, no per-op bookkeeping."""
    name = "traced"

    def __init__(self, config):
        self.model = config.model()
        self.chunks, self.keys, self.lstm = Chunks(config), KEYS[config.cell], config.cell == "lstm"
        self.state = (config.zeros(), config.zeros()) if self.lstm else (config.zeros(),)
        self.mem = {k: np.zeros_like(p.data) for k, p in self.model.named_parameters().items()}
        model = self.model

        def step(idx, targets, *state):
            logits, last = model(idx, tuple(state) if self.lstm else state[0])
            return nn.cross_entropy(logits, targets), last
        inputs, targets = Chunks(config).next()
        self.prog = tr.trace(step, inputs, targets, *self.state, params=model.named_parameters())

    def weights(self):
        return {self.keys[k]: p.data for k, p in self.model.named_parameters().items()}

    def step(self):
        inputs, targets = self.chunks.next()
        loss, grads, self.state = self.prog(inputs, targets, *self.state)
        for k, p in self.model.named_parameters().items():  # min-char-rnn's clip and Adagrad
            d = np.clip(grads[k], -5, 5)
            self.mem[k] += d * d
            p.data += -LR * d / np.sqrt(self.mem[k] + 1e-8)
        return float(loss)


class NumpyRun:
    name = "numpy"

    def __init__(self, config):
        self.P = config.weights()
        self.mem = {k: np.zeros_like(v) for k, v in self.P.items()}
        self.loss_fun = numpy_reference.rnn_loss_fun if config.cell == "rnn" else numpy_reference.lstm_loss_fun
        self.state = config.zeros() if config.cell == "rnn" else (config.zeros(), config.zeros())
        self.chunks = Chunks(config)

    def weights(self):
        return self.P

    def step(self):
        inputs, targets = self.chunks.next()
        loss, d, self.state = self.loss_fun(self.P, inputs, targets, self.state)
        numpy_reference.adagrad_update(self.P, d, self.mem, LR)
        return loss


class TorchRun:
    name = "torch"

    def __init__(self, config):
        self.P = {k: torch.tensor(w, requires_grad=True) for k, w in config.weights().items()}
        self.mem = {k: torch.zeros_like(p, requires_grad=False) for k, p in self.P.items()}
        self.loss_fun = torch_reference.rnn_loss_fun if config.cell == "rnn" else torch_reference.lstm_loss_fun
        zeros = torch.from_numpy(config.zeros())
        self.state = zeros if config.cell == "rnn" else (zeros, zeros.clone())
        self.chunks = Chunks(config)

    def weights(self):
        return {k: p.detach().numpy() for k, p in self.P.items()}

    def step(self):
        inputs, targets = (torch.from_numpy(a) for a in self.chunks.next())
        loss, self.state = self.loss_fun(self.P, inputs, targets, self.state)
        torch_reference.adagrad_update(self.P, self.mem, LR)
        return loss


def make_runs(config):
    runs = [EngineRun(config, fused=False), EngineRun(config, fused=True), NumpyRun(config), TracedRun(config)]
    return runs if torch is None else runs + [TorchRun(config)]


def check_same_math(config):
    """Every run gives the NumPy run's weights after a step and its losses over 3 steps, so the timing
    compares like with like. (Later steps drift apart in the last digits: Adagrad's first steps amplify
    rounding, so the loss check loosens after the first step.)"""
    tol = 1e-8 if config.dtype == np.float64 else 2e-3
    runs = make_runs(config)
    ref = runs[2]
    for step in range(3):
        want = ref.step()
        for run in runs:
            if run is not ref:
                got = run.step()
                assert abs(got - want) <= (tol if step == 0 else 100 * tol) * abs(want), (config.cell, run.name, got, want)
        if step == 0:
            for run in runs:
                for k, w in run.weights().items():
                    assert np.allclose(w, ref.P[k], rtol=tol, atol=tol), (config.cell, run.name, k)


def time_rounds(runs, rounds, steps):
    """Per run, the mean seconds per step of each round; rounds rotate which run goes first."""
    for run in runs:
        for _ in range(2):  # warm-up: caches, allocator, lazy imports
            run.step()
    times = [[] for _ in runs]
    for r in range(rounds):
        k = r % len(runs)
        for j in list(range(k, len(runs))) + list(range(k)):
            start = time.perf_counter()
            for _ in range(steps):
                runs[j].step()
            times[j].append((time.perf_counter() - start) / steps)
    return np.array(times)  # (runs, rounds)


def speed_tables(rounds, quick):
    names = ["op-level", "fused", "numpy", "traced"] + ([] if torch is None else ["torch"])
    ratios = [("op-level", "numpy"), ("fused", "numpy"), ("traced", "numpy")] + ([] if torch is None else
                                                            [("op-level", "torch"), ("fused", "torch")])
    for dtype in (np.float64, np.float32):
        print(f"\n{np.dtype(dtype).name}: ms per training step, median of {rounds} rounds; "
              "ratio columns: median (lowest-highest round)")
        head = f"{'config':<37}" + "".join(f"{n:>10}" for n in names)
        print(head + "".join(f"{a[:5] + '/' + b[:5]:>21}" for a, b in ratios))
        for label, V, H, T, B, steps in CONFIGS:
            for cell in ("rnn", "lstm"):
                config = Config(cell, V, H, T, B, dtype)
                check_same_math(config)
                n = max(1, steps // 4) if quick else steps
                times = time_rounds(make_runs(config), rounds, n)
                med = dict(zip(names, np.median(times, axis=1)))
                row = f"{label + ' ' + cell.upper():<14}{f'(V{V} H{H} T{T} B{B or 1})':<23}"
                row += "".join(f"{med[n] * 1e3:>10.3f}" for n in names)
                for a, b in ratios:
                    per_round = times[names.index(a)] / times[names.index(b)]
                    cell_text = f"{med[a] / med[b]:.2f} ({per_round.min():.2f}-{per_round.max():.2f})"
                    row += f"{cell_text:>21}"
                print(row, flush=True)


def _traced(fn):
    """(peak bytes above the start, bytes still held at the end) while fn runs; fn returns what it keeps."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = fn()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return peak - base, held - base


def memory_table(T, H, V):
    """Peak traced memory of forward + backward over one T-step sequence, against what BPTT must keep."""
    print(f"\nT={T:,} (V{V} H{H} B1, float64): peak traced memory of forward + backward, and what stays "
          "allocated after backward() while the caller still holds the loss")
    print(f"{'cell':<6}{'activations':>13}  {'run':<10}{'peak MB':>9}{'peak/act':>10}{'held MB':>9}")
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, V, T), rng.integers(0, V, T)
    for cell, per_step in (("rnn", H + V), ("lstm", 6 * H + V)):
        config = Config(cell, V, H, T, None, np.float64)
        activations = T * per_step * 8  # h_t (RNN) or gates, s_t, h_t (LSTM), and the softmax, per step
        for fused in (False, True):
            model = config.model(fused)

            def engine():
                logits, _ = model(inputs)
                loss = nn.cross_entropy(logits, targets)
                loss.backward()
                return loss  # held, as a training loop that keeps `loss` for printing does
            peak, held = _traced(engine)
            model.zero_grad()
            print(f"{cell:<6}{activations / 1e6:>10.2f} MB  {'fused' if fused else 'op-level':<10}"
                  f"{peak / 1e6:>9.2f}{peak / activations:>10.2f}{held / 1e6:>9.2f}")
        P = config.weights()
        loss_fun = numpy_reference.rnn_loss_fun if cell == "rnn" else numpy_reference.lstm_loss_fun
        state = config.zeros() if cell == "rnn" else (config.zeros(), config.zeros())
        peak, held = _traced(lambda: loss_fun(P, inputs, targets, state))
        print(f"{cell:<6}{activations / 1e6:>10.2f} MB  {'numpy':<10}{peak / 1e6:>9.2f}{peak / activations:>10.2f}"
              f"{held / 1e6:>9.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="timing rounds per configuration")
    parser.add_argument("--quick", action="store_true", help="fewer steps per round (a smoke run)")
    parser.add_argument("--no-memory", action="store_true", help="skip the T=10,000 memory table")
    args = parser.parse_args()
    threads = "one BLAS thread"
    if torch is not None:
        torch.set_num_threads(1)
        threads += f", PyTorch {torch.__version__} with torch.set_num_threads(1)"
    print(f"CharRNN training step (forward, summed cross-entropy, backward, clip, Adagrad); {threads}")
    print("checked first: every run gives the same weights after a step (to 1e-8 in float64, 2e-3 in float32) "
          "and the same losses over 3 steps")
    if torch is None:
        print("PyTorch not installed: pip install -e '.[bench]' for its column")
    speed_tables(args.rounds, args.quick)
    if not args.no_memory:
        memory_table(T=10_000, H=64, V=65)


if __name__ == "__main__":
    main()
