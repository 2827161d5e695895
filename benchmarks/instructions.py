"""Instructions per training step, counted by valgrind (callgrind): a measure of the engine's own cost that does
not move with the machine's load, for changes worth a few percent that wall-clock timing on a shared VM cannot see.

One small min-char-rnn step (V65 H100 T25 B1: forward, summed cross-entropy, backward) of each cell and mode, for
this checkout and, with --before, another checkout's package (a git worktree, say), side by side. Each count is
(instructions of 25 steps - instructions of 5 steps) / 20, so imports and set-up cancel.

    python benchmarks/instructions.py [--before ../before] [--cells rnn lstm]

Needs valgrind (Debian package valgrind); about 30 s a count.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = """
import os, sys
import numpy as np
import tinygrad_rnn as tr
cell, fused, n = sys.argv[1], sys.argv[2] == "fused", int(sys.argv[3])
model = tr.nn.CharRNN(65, 100, cell=cell, rng=np.random.default_rng(0), fused=fused)
idx = np.arange(25) % 65
for _ in range(n):
    logits, _ = model(idx)
    model.zero_grad()
    tr.nn.cross_entropy(logits, idx).backward()
"""


def count(package_root: str, cell: str, mode: str, steps: int) -> int:
    """Instructions callgrind counts for `steps` training steps with the package found at package_root."""
    env = dict(os.environ, PYTHONPATH=package_root, OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                          STEPS, cell, mode, str(steps)], env=env, capture_output=True, text=True, cwd="/")
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        sys.exit(f"instructions: the run under valgrind failed: {run.stderr.strip().splitlines()[-1:]}")
    return int(found.group(1))


def per_step(package_root: str, cell: str, mode: str) -> float:
    return (count(package_root, cell, mode, 25) - count(package_root, cell, mode, 5)) / 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="another checkout (its root, holding tinygrad_rnn/) to compare with")
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm", "gru"])
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("instructions: valgrind is not installed (Debian: apt-get install valgrind)")
    roots = {"this": os.path.dirname(HERE)}
    if args.before:
        if not os.path.isdir(os.path.join(args.before, "tinygrad_rnn")):
            sys.exit(f"instructions: --before {args.before} holds no tinygrad_rnn/ package")
        roots = {"before": os.path.abspath(args.before), **roots}
    print("instructions per training step (V65 H100 T25 B1, forward + loss + backward), millions")
    print(f"{'cell':<6}{'mode':<10}" + "".join(f"{name:>10}" for name in roots) + ("     ratio" if args.before else ""))
    for cell in args.cells:
        for mode in ("op-level", "fused"):
            counts = [per_step(root, cell, mode) for root in roots.values()]
            ratio = f"{counts[-1] / counts[0]:>10.3f}" if args.before else ""
            print(f"{cell:<6}{mode:<10}" + "".join(f"{c / 1e6:>10.2f}" for c in counts) + ratio, flush=True)


if __name__ == "__main__":
    main()
