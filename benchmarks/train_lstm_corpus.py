"""Issue 6's benchmark: `tinygrad-rnn train`'s defaults (LSTM, hidden 128, 32 steps x 32 streams, Adagrad 0.1)
for 2,000 steps on the shipped corpus must reach held-out bits/char below the add-one bigram's. Also times
training chars/s for both cells. Single BLAS thread or not is up to the environment (OPENBLAS_NUM_THREADS).

    python benchmarks/train_lstm_corpus.py [--steps 2000] [--eval-every 500]
"""
import argparse
import os
import time

from tinygrad_rnn.data import load_text, ngram_baselines
from tinygrad_rnn.train import Config, Run, evaluate, text_sha256


def throughput(cell: str, text: str, steps: int = 30) -> float:
    """Training chars/s of the default model with `cell`, after 3 warm-up steps."""
    run = Run.start(Config(cell=cell, text_sha256=text_sha256(text)), text)
    train_ids, _ = run.split(text)
    for _ in range(3):
        run.train_step(train_ids)
    started = time.perf_counter()
    for _ in range(steps):
        run.train_step(train_ids)
    return steps * run.config.seq_len * run.config.batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=500)
    args = parser.parse_args()
    text = load_text()
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    for cell in ("rnn", "lstm"):
        print(f"{cell:4s} training throughput: {throughput(cell, text):,.0f} chars/s")

    run = Run.start(Config(cell="lstm", text_sha256=text_sha256(text)), text)
    train_ids, val_ids = run.split(text)
    base = ngram_baselines(train_ids, val_ids, run.vocab.size)
    c = run.config
    print(f"LSTM hidden {c.hidden}, {run.n_parameters():,} parameters, {c.optim} lr {c.lr:g}, "
          f"T={c.seq_len} x B={c.batch}; {len(train_ids):,} training / {len(val_ids):,} held-out chars")
    print(f"{'':>10s} {'bits/char':>10s} {'perplexity':>11s}")
    for name in ("unigram", "bigram"):
        print(f"{name:>10s} {base[name]['bits_per_char']:10.3f} {base[name]['perplexity']:11.2f}")
    started, busy = time.perf_counter(), 0.0
    while run.step < args.steps:
        t0 = time.perf_counter()
        run.train_step(train_ids)
        busy += time.perf_counter() - t0
        if run.step % args.eval_every == 0 or run.step == args.steps:
            score = evaluate(run.model, val_ids)
            print(f"{'step ' + str(run.step):>10s} {score['bits_per_char']:10.3f} {score['perplexity']:11.2f}"
                  f"   train loss {run.smooth_loss:.3f} nats/char, {run.step * c.seq_len * c.batch / busy:,.0f} chars/s")
    verdict = "below" if score["bits_per_char"] < base["bigram"]["bits_per_char"] else "NOT below"
    print(f"after {run.step} steps ({time.perf_counter() - started:.0f} s): {score['bits_per_char']:.3f} bits/char, "
          f"{verdict} the bigram's {base['bigram']['bits_per_char']:.3f}")


if __name__ == "__main__":
    main()
