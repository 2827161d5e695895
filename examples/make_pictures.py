"""Regenerate the README's pictures in docs/img/: the Deep Learning book's unfolded graph (Fig. 10.3) of an
RNN and an LSTM, an RNN's ‖∂L/∂h(t)‖ fading back in time, the op-level graphs they stand for, and the
lab's vanishing and influence plots, and the quadratic-error lesson's curves. Fixed random generators, so the
files only change when the drawing code does; `--timed` also redraws the plots of measured times (`lab rtrl`,
`lab memory`).

    python examples/make_pictures.py [--timed]   (needs Graphviz's dot: apt-get install graphviz)
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinygrad_rnn import nn, viz

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def _model(cell: str) -> nn.CharRNN:
    """A CharRNN over the "hello" vocabulary {e, h, l, o} with 3 hidden units."""
    return nn.CharRNN(4, 3, cell=cell, rng=np.random.default_rng(0))


def rnn_book() -> Path:
    """The book's Fig. 10.3: x(t) -> h(t) -> o(t) -> L(t) <- y(t), h(t-1) -> h(t), the same U, W, V each step."""
    return viz.save(viz.draw_unrolled(_model("rnn"), 4, style="book"), OUT / "rnn_book.svg")


def lstm_book() -> Path:
    """The same for an LSTM: its internal state s(t) carries the recurrence, scaled by the forget gate."""
    return viz.save(viz.draw_unrolled(_model("lstm"), 3, style="book"), OUT / "lstm_book.svg")


def rnn_book_grads() -> Path:
    """‖∂L(T)/∂h(t)‖ on each h(t) of an 8-step RNN: the gradient of the last loss fades back in time."""
    picture = viz.draw_unrolled(_model("rnn"), 8, style="book", grads=True, loss="last")
    return viz.save(picture, OUT / "rnn_book_grads.svg")


def hello_rnn() -> Path:
    """Every op of the RNN over 4 steps: each weight one node, with an edge into every step."""
    return viz.save(viz.draw_unrolled(_model("rnn"), 4), OUT / "rnn_unrolled_hello.svg")


def lstm_grads() -> Path:
    """Every op of an LSTM over 3 steps after backward: darker = larger ‖∂L/∂node‖ (log scale)."""
    picture = viz.draw_unrolled(_model("lstm"), 3, grads=True, show_shapes=False)
    return viz.save(picture, OUT / "lstm_grads.svg")


def lab_plots(timed: bool) -> list:
    """`tinygrad-rnn lab vanishing` and `lab influence` as PNG (needs matplotlib: pip install -e '.[plot]');
    `lab rtrl` and `lab memory` only when `timed`: they plot measured times and memory, which differ from run
    to run."""
    from tinygrad_rnn import lab
    names = ("vanishing", "influence") + (("rtrl", "memory") if timed else ())
    return [lab.save_plot(lab.run(name), OUT / f"lab_{name}.png") for name in names]


def quadratic_vs_cross_entropy() -> Path:
    """The quadratic-error lesson's training curves: the lesson itself run in a scratch directory."""
    lesson = next(Path(__file__).resolve().parent.glob("[0-9][0-9]_quadratic_vs_cross_entropy.py"))
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, str(lesson)], cwd=scratch, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "MPLBACKEND": "Agg"})
        return Path(shutil.copy(Path(scratch) / "out" / "quadratic_vs_cross_entropy.png", OUT))


if __name__ == "__main__":
    timed = "--timed" in sys.argv[1:]
    for path in (rnn_book(), lstm_book(), rnn_book_grads(), hello_rnn(), lstm_grads(), *lab_plots(timed),
                 quadratic_vs_cross_entropy()):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
