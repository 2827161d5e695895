"""Regenerate the README's pictures in docs/img/: the "hello" RNN unrolled over 4 steps and a
gradient-coloured LSTM, and the lab's vanishing and influence plots. Seeded, so the files only
change when the drawing code does.

    python examples/make_pictures.py   (needs Graphviz's dot: apt-get install graphviz)
"""
from pathlib import Path

import numpy as np

from tinygrad_rnn import nn, viz

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def hello_rnn() -> Path:
    """min-char-rnn's example: read "hell", predict "ello", vocabulary {e, h, l, o}, 3 hidden units."""
    vocab = sorted(set("hello"))
    inputs = np.array([vocab.index(c) for c in "hell"])
    targets = np.array([vocab.index(c) for c in "ello"])
    model = nn.CharRNN(len(vocab), 3, rng=np.random.default_rng(0))
    logits, _ = model(inputs)
    loss = nn.cross_entropy(logits, targets)
    loss.name = "loss"
    picture = viz.draw(loss, params=model.named_parameters(), rankdir="TB")
    picture.attr(label='CharRNN unrolled over "hell" → "ello": each weight is one node, used at every step',
                 labelloc="t", fontsize="14")
    return viz.save(picture, OUT / "rnn_unrolled_hello.svg")


def lstm_grads() -> Path:
    """An LSTM over 3 steps after backward: darker = larger ‖dL/dnode‖ (log scale)."""
    model = nn.CharRNN(4, 3, cell="lstm", rng=np.random.default_rng(0))
    picture = viz.draw_unrolled(model, 3, grads=True, show_shapes=False, rankdir="TB")
    picture.attr(label="LSTM unrolled over 3 steps, coloured by the norm of each node's gradient",
                 labelloc="t", fontsize="14")
    return viz.save(picture, OUT / "lstm_grads.svg")


def lab_plots() -> list:
    """`tinygrad-rnn lab vanishing` and `lab influence` as PNG (needs matplotlib: pip install '.[plot]')."""
    from tinygrad_rnn import lab
    return [lab.save_plot(lab.run(name), OUT / f"lab_{name}.png") for name in ("vanishing", "influence")]


if __name__ == "__main__":
    for path in (hello_rnn(), lstm_grads(), *lab_plots()):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
