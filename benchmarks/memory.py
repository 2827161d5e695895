"""Memory against time for BPTT on long sequences (issue 24), in one run:

1. T = 10,000, H = 64, B = 1, V = 4, op-level RNN: peak traced memory (tracemalloc) of one gradient,
   model.loss + backward, over the activations BPTT must keep (T·(H+V)·8 bytes), and its time, with every
   state kept (checkpoint=None) and with checkpoint="sqrt" (targets: sqrt peak <= 0.35x the activations and
   time <= 1.5x the stored graph's; stored graph <= 2.5x).
2. A 1,000,000-step RNN (H = 64, V = 4) whose gradient is computed in one backward with
   nn.MemoryBudget(slots=m): time and the process's peak resident memory (target: under 1 GB), with the
   forward-step count the plan predicts.

    python benchmarks/memory.py [--rounds 3] [--long 1000000] [--slots 1000] [--fused]
"""
import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np

from tinygrad_rnn import nn
from tinygrad_rnn.nn.memory import cost


def one_gradient(model, idx, targets):
    loss, _ = model.loss(idx, targets)
    loss.backward()
    return loss


def traced_peak(fn):
    """Peak bytes tracemalloc sees above the start while fn runs."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del kept
    return peak


def timed(fn, rounds):
    """Median and all of `rounds` timings of fn (no tracing)."""
    times = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def part_one(rounds, fused):
    T, H, V = 10_000, 64, 4
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, V, T), rng.integers(0, V, T)
    activations = T * (H + V) * 8
    print(f"T={T:,} H={H} B=1 V={V} RNN {'fused' if fused else 'op-level'}, float64; activations T(H+V)8 = "
          f"{activations / 1e6:.2f} MB; {rounds} timing rounds, interleaved")
    settings = {"none": None, "sqrt": "sqrt"}
    models = {name: nn.CharRNN(V, H, "rnn", fused=fused, checkpoint=c, rng=np.random.default_rng(1))
              for name, c in settings.items()}
    times = {name: [] for name in settings}
    for _ in range(rounds):  # interleaved, so a busy moment of the machine hits both
        for name, model in models.items():
            model.zero_grad()
            times[name] += timed(lambda: one_gradient(model, idx, targets), 1)[1]
    print(f"{'checkpoint':<12}{'peak MB':>9}{'peak/act':>10}{'median s':>10}   all rounds")
    result = {}
    for name, model in models.items():
        model.zero_grad()
        peak = traced_peak(lambda: one_gradient(model, idx, targets))
        result[name] = (peak / activations, statistics.median(times[name]))
        print(f"{name:<12}{peak / 1e6:>9.2f}{peak / activations:>10.3f}{result[name][1]:>10.3f}   "
              + " ".join(f"{t:.2f}" for t in times[name]))
    print(f"sqrt time / stored time: {result['sqrt'][1] / result['none'][1]:.2f} (per round: "
          + " ".join(f"{a / b:.2f}" for a, b in zip(times['sqrt'], times['none'])) + ")")
    return result


def part_two(T, slots, fused):
    H, V = 64, 4
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, V, T), rng.integers(0, V, T)
    budget = nn.MemoryBudget(slots=slots)
    steps = cost(T, slots)  # plan(T)[0], without listing the schedule's millions of actions
    model = nn.CharRNN(V, H, "rnn", fused=fused, checkpoint=budget, rng=np.random.default_rng(1))
    print(f"\nT={T:,} H={H} V={V} RNN {'fused' if fused else 'op-level'}, {budget}: the plan runs {steps:,} cell "
          f"forward steps ({steps / T:.2f} per step)")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu = time.perf_counter(), time.process_time()
    loss = one_gradient(model, idx, targets)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"loss {loss.item():.1f} ({loss.item() / T:.4f} nats/step), |dL/dW_hh| {np.linalg.norm(model.cell.W_hh.grad):.3f}")
    print(f"time {seconds:.1f} s wall, {cpu:.1f} s CPU ({seconds / T * 1e6:.0f} us/step wall); "
          f"process peak resident memory {peak:.0f} MB "
          f"(it was {before:.0f} MB before this gradient)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=1_000_000, help="steps of the long sequence (0: skip)")
    parser.add_argument("--slots", type=int, default=1000, help="the long sequence's memory budget")
    parser.add_argument("--fused", action="store_true", help="the long sequence with fused steps")
    args = parser.parse_args()
    part_one(args.rounds, fused=False)
    sys.stdout.flush()
    if args.long:
        part_two(args.long, args.slots, args.fused)


if __name__ == "__main__":
    main()
