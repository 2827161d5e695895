"""The `tinygrad-rnn` command (also `python -m tinygrad_rnn`): demo, train, sample, graph, gradcheck, lab.

Argument parsing and printing; the work (the training loop train.fit too) is in train.py, check.py and viz.py.
A user error is one line on stderr (`tinygrad-rnn: error: ...`), exit 2 for usage and 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from . import _blas, _memory, check, lab, nn, viz
from .savefile import CheckpointError, check_writable
from .data import DataError, Vocab, load_text, ngram_baselines
from .engine import no_grad
from .tracer import trace
from .train import _param_shapes, _training_bytes, checkpoint_setting
from .train import (CELL_INPUTS, CELLS, DEFAULT_LR, OPTIMIZERS, Config, Run, TrainingDiverged, fit, generate,
                    perplexity, text_sha256)

__all__ = ["main", "console", "build_parser"]

PROG = "tinygrad-rnn"
_PICTURE_SUFFIXES = (".svg", ".png", ".pdf", ".dot")
_HELLO = "hello"
_SAMPLE_CHARS, _SAMPLE_TEMPERATURE = 200, 0.8


class _UsageError(Exception):
    """A bad command line: exit code 2."""


class _Error(Exception):
    """A request that cannot be carried out: exit code 1."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage dump), pointing at the subcommand's --help."""

    def error(self, message: str) -> None:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# ---- argument types: each names what it wanted, argparse prefixes the flag --------------------------
def _int_at_least(minimum: int, wanted: str) -> Callable[[str], int]:
    """An argparse type for integers >= minimum; `wanted` names them in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, "an integer >= 0")


def _seed(text: str) -> int:
    """A seed NumPy takes and a checkpoint keeps: 0 <= S < 2**128."""
    value = _nonnegative_int(text)
    if value >= 2 ** 128:
        raise argparse.ArgumentTypeError(f"must be below 2**128, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _plot_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in lab.PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {', '.join(lab.PLOT_SUFFIXES)}")
    return path


def _picture_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in _PICTURE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} needs one of the suffixes {', '.join(_PICTURE_SUFFIXES)}")
    return path


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, with the help texts `--help` shows."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, formatter_class=fmt,
                     description="Character-level RNN and LSTM language models on a small exact autodiff.",
                     epilog=f"Start with '{PROG} demo'; each command has its own --help.")
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    demo = commands.add_parser(
        "demo", formatter_class=fmt, help="the 'hello' example end to end, in seconds",
        description="Train a tiny RNN (or --cell lstm, gru) to read 'hell' and predict 'ello' (vocabulary\n"
                    "h, e, l, o), print its predictions, compare autodiff, hand-derived BPTT and\n"
                    "finite-difference gradients, and draw the unrolled graph to hello_unrolled.svg.")
    demo.add_argument("--out-dir", type=Path, default=Path("."), metavar="DIR",
                      help="where to write hello_unrolled.svg (default: the current directory)")
    demo.add_argument("--hidden", type=_positive_int, default=3, metavar="H", help="hidden units (default 3)")
    demo.add_argument("--steps", type=_positive_int, default=200, metavar="N",
                      help="Adagrad steps (default 200)")
    demo.add_argument("--seed", type=_seed, default=0, metavar="S", help="initialisation seed (default 0)")
    _cell_flags(demo, "rnn")

    train = commands.add_parser(
        "train", formatter_class=fmt, help="train a CharRNN on a text, with checkpoints",
        description="Train a character-level RNN, LSTM or GRU with truncated BPTT over B parallel streams of the\n"
                    "text, the hidden state carried from chunk to chunk. Prints the unigram and bigram\n"
                    "baselines, then held-out cross-entropy (nats and bits per character) and perplexity;\n"
                    "samples now and then; writes a checkpoint every N steps, at the end and on Ctrl-C.\n"
                    "--resume continues a checkpoint exactly where it stopped, with its own settings\n"
                    "(only the --*-every schedule may be changed).",
        epilog=f"example: {PROG} train --cell lstm --steps 2000 --out lstm.npz\n"
               f"         {PROG} train --resume lstm.npz --steps 4000")
    train.add_argument("--text", type=Path, metavar="FILE",
                       help="a UTF-8 text file (default: the shipped Pride and Prejudice)")
    _cell_flags(train, None)
    train.add_argument("--hidden", type=_positive_int, metavar="N", help=f"hidden units (default {Config.hidden})")
    train.add_argument("--seq-len", type=_positive_int, metavar="T",
                       help=f"time steps per truncated-BPTT chunk (default {Config.seq_len})")
    train.add_argument("--batch", type=_positive_int, metavar="B",
                       help=f"parallel streams through the text (default {Config.batch})")
    train.add_argument("--steps", type=_positive_int, default=2000, metavar="N",
                       help="train until this many steps in total, counting a resumed run's (default 2000)")
    train.add_argument("--optim", choices=tuple(OPTIMIZERS), help=f"optimizer (default {Config.optim})")
    train.add_argument("--lr", type=_positive_float, metavar="X",
                       help="learning rate (default " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    train.add_argument("--clip", type=_positive_float, metavar="X",
                       help=f"clip every gradient entry to [-X, X], as min-char-rnn (default {Config.clip:g})")
    train.add_argument("--seed", type=_seed, metavar="S",
                       help=f"seed of the initial weights and the samples (default {Config.seed})")
    train.add_argument("--out", type=Path, metavar="CKPT",
                       help="checkpoint to write (default: the --resume file, else checkpoint.npz)")
    train.add_argument("--resume", type=Path, metavar="CKPT", help="continue training this checkpoint")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out file of another run")
    train.add_argument("--eval-every", type=_positive_int, metavar="N",
                       help=f"held-out evaluation every N steps (default {Config.eval_every}), and at the end")
    train.add_argument("--sample-every", type=_positive_int, metavar="N",
                       help=f"print a {_SAMPLE_CHARS}-character sample every N steps (default {Config.sample_every})")
    train.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                       help=f"write the checkpoint every N steps (default {Config.checkpoint_every}), and at the end")
    train.add_argument("--checkpoint", type=_checkpoint_flag, metavar="k|sqrt|slots=m",
                       help="keep only some states and recompute the rest in backward: every k steps, every "
                            "ceil(sqrt(T)), or at most m (Gruslys et al.'s schedule); default: keep every step")

    sample = commands.add_parser(
        "sample", formatter_class=fmt, help="generate text from a checkpoint",
        description="Print the prime followed by exactly N characters sampled one at a time from the model,\n"
                    "each from softmax(logits / temperature), as they are generated.",
        epilog=f"example: {PROG} sample lstm.npz --prime 'It is a truth' --length 300 --temperature 0.7")
    sample.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint written by train")
    sample.add_argument("--prime", default="", metavar="TEXT", help="text to start from (default: none)")
    sample.add_argument("--length", type=_nonnegative_int, default=500, metavar="N",
                        help="characters to generate after the prime (default 500)")
    sample.add_argument("--temperature", type=_positive_float, default=1.0, metavar="X",
                        help="below 1 is more conservative, above 1 more random (default 1)")
    sample.add_argument("--seed", type=_seed, metavar="S", help="seed for a repeatable sample")
    sample.add_argument("--cell", choices=CELLS, help="the cell is the checkpoint's; if given, it must be that one")
    sample.add_argument("--cell-input", choices=CELL_INPUTS, help="the LSTM's cell input, checked the same way")
    sample.add_argument("--cell-module", metavar="MODULE:CLASS",
                        help="for a checkpoint of your own cell: where its class is, e.g. mycell:MyGRU (mycell.py "
                             "in the current directory); the class is called as CLASS(vocab_size, hidden_size)")

    graph = commands.add_parser(
        "graph", formatter_class=fmt, help="draw a CharRNN's computation graph",
        description="Draw a small CharRNN (vocabulary h, e, l, o) unrolled over T steps, time left to right.\n"
                    "--style ops: one node per op, each weight one node with an edge to every step that uses\n"
                    "it; --style book: the Deep Learning book's Fig. 10.3, x(t), h(t), o(t), L(t), y(t) joined\n"
                    "by U, W, V. Past %d nodes the steps are drawn as boxes by themselves. The format follows\n"
                    "the file's suffix (.svg, .png, .pdf, .dot); all but .dot need Graphviz." % _GRAPH_MAX_OPS)
    _cell_flags(graph, "rnn")
    graph.add_argument("--steps", type=_positive_int, default=4, metavar="T",
                       help=f"time steps (default 4, at most {_GRAPH_MAX_STEPS}; {_GRAPH_MAX_BOOK_STEPS} with "
                            "--style book)")
    graph.add_argument("--hidden", type=_positive_int, default=3, metavar="H", help="hidden units (default 3)")
    graph.add_argument("-o", "--output", type=_picture_path, metavar="FILE",
                       help="picture to write (default <cell>_unrolled.svg)")
    graph.add_argument("--style", choices=("ops", "book"), default="ops",
                       help="ops: every op (default); book: the book's unfolded graph")
    graph.add_argument("--loss", choices=("sum", "last"), default="sum",
                       help="sum: L = sum of L(t) (default); last: L(T) only, the clearest view of vanishing "
                            "gradients")
    graph.add_argument("--grads", action="store_true",
                       help="run backward and show gradient norms: on every op (ops), on h(t) (book), on the "
                            "weights (folded)")
    graph.add_argument("--collapse", action="store_true", help="draw each time step as one box (style ops)")
    graph.add_argument("--folded", action="store_true", help="the compact recurrent circuit instead")

    grad = commands.add_parser(
        "gradcheck", formatter_class=fmt, help="compare autodiff, hand-derived and numerical gradients",
        description="Compute a CharRNN's gradients on 'hellohello...' three ways: autodiff, the hand-derived\n"
                    "BPTT of tinygrad_rnn.manual, and central finite differences. Prints the table;\n"
                    "exit code 0 when all three agree, 1 otherwise.")
    _cell_flags(grad, "rnn")
    grad.add_argument("--hidden", type=_positive_int, default=5, metavar="H", help="hidden units (default 5)")
    grad.add_argument("--steps", type=_positive_int, default=4, metavar="T", help="time steps (default 4)")
    grad.add_argument("--seed", type=_seed, default=0, metavar="S", help="initialisation seed (default 0)")

    trace_cmd = commands.add_parser(
        "trace", formatter_class=fmt, help="print the NumPy code of a training step, written by the engine",
        description="Trace a CharRNN's training step on 'hellohello...' (tr.trace) and print the plain NumPy\n"
                    "function the engine writes for it: the loss, the forward, then the backward it derived,\n"
                    "the time steps rolled into loops as in min-char-rnn's lossFun.",
        epilog=f"example: {PROG} trace --cell lstm --steps 25 -o lstm_step.py")
    _cell_flags(trace_cmd, "rnn")
    trace_cmd.add_argument("--steps", type=_positive_int, default=4, metavar="T", help="time steps (default 4)")
    trace_cmd.add_argument("--hidden", type=_positive_int, default=100, metavar="H",
                           help="hidden units (default 100, min-char-rnn's)")
    trace_cmd.add_argument("-o", "--output", metavar="FILE", help="write the code to FILE instead of printing it")

    lab_cmd = commands.add_parser(
        "lab", formatter_class=fmt, help="the lecture notes' experiments on gradients through time",
        description="Run one experiment on how the gradient travels back in time and print its table:\n"
                    + "\n".join(f"  {name:11s} {(fn.__doc__ or '').splitlines()[0]}" for name, fn in lab.EXPERIMENTS.items())
                    + f"\nWith -o, also draw its plot (.png, .svg or .pdf; needs matplotlib: {lab.PLOT_INSTALL}).",
        epilog=f"example: {PROG} lab vanishing -o vanishing.png")
    lab_cmd.add_argument("experiment", metavar="EXPERIMENT", help=", ".join(lab.EXPERIMENTS))
    lab_cmd.add_argument("-o", "--output", type=_plot_path, metavar="FILE", help="write the plot to FILE")
    lab_cmd.add_argument("--cell", choices=CELLS,
                         help="show this cell (default: the RNN, or the RNN beside the LSTM, as each experiment compares)")
    lab_cmd.add_argument("--cell-input", choices=CELL_INPUTS,
                         help="the LSTM's cell input: tanh (the default) or sigmoid (the Deep Learning book's LSTM)")
    return parser


_BLAS_THREADS = _blas.VARIABLES


def console() -> None:
    """The `tinygrad-rnn` command and `python -m tinygrad_rnn`: main() with one BLAS thread, then exit.
    Ctrl-C before main() catches it (while BLAS is set up or the parser built) is one line too."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from the start-up handler (__init__.py) to Python's
    try:
        _one_blas_thread()
        code = main()
    except KeyboardInterrupt:
        _say_error(f"\n{PROG}: interrupted")
        code = 130
    sys.exit(code)


def _one_blas_thread() -> None:
    """One BLAS thread for this command's own process, unless the user set a BLAS thread variable.

    On an RNN's small matrices BLAS threads only fight over the cores (an LSTM trains 5-13x slower
    with them on 2 cores). threadpoolctl does it in place when installed, else OpenBLAS's own setter
    (the BLAS of NumPy's wheels); failing both, the variables must be set before BLAS loads, which
    NumPy did already: the command starts itself again, once, with them set (exec: same process id).
    The library limits BLAS only inside its own training and analysis calls (_blas.one_thread).
    """
    if any(name in os.environ for name in _BLAS_THREADS) or (os.cpu_count() or 1) == 1:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(1, user_api="blas")
        return
    if _openblas_one_thread() or os.name != "posix":
        return
    argv = getattr(sys, "orig_argv", None) or [sys.executable, "-m", "tinygrad_rnn", *sys.argv[1:]]
    sys.stdout.flush()
    os.execve(sys.executable, argv, {**os.environ, **dict.fromkeys(_BLAS_THREADS, "1")})


def _openblas_one_thread() -> bool:
    """openblas_set_num_threads(1) on the OpenBLAS this process loaded (Linux); False if there is none."""
    import ctypes
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return False
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("", "scipy_"):  # NumPy >= 2 wheels bundle scipy-openblas with prefixed names
            for suffix in ("", "64_"):
                setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if setter is not None:
                    setter(1)
                    return True
    return False


def _cell_flags(parser: argparse.ArgumentParser, default: Optional[str]) -> None:
    """--cell and --cell-input, the same in every subcommand that builds a model."""
    parser.add_argument("--cell", choices=CELLS, default=default,
                        help=f"recurrent cell (default {default or Config.cell})")
    parser.add_argument("--cell-input", choices=CELL_INPUTS,
                        help="the LSTM's cell input: tanh (PyTorch's, the default) or sigmoid (the Deep Learning "
                             "book's LSTM, eqs. 10.40-10.44)")


def _cell_kw(args: argparse.Namespace, cell: str) -> dict:
    """The cell's options from the flags: cell_input for the LSTM, a usage error for another cell."""
    if args.cell_input is None:
        return {}
    if cell != "lstm":
        raise _UsageError(f"--cell-input applies to the LSTM only, not to --cell {cell} "
                          f"(see '{PROG} {args.command} --help')")
    return {"cell_input": args.cell_input}


def _cell_name(cell: str, cell_input: str = "tanh") -> str:
    """How a model's cell is printed: 'lstm (sigmoid cell input: the book's LSTM)' for the book's variant."""
    return f"{cell} (sigmoid cell input: the book's LSTM)" if cell_input == "sigmoid" else cell


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 failed, 2 bad usage, 130 interrupted, 143 terminated)."""
    # a sample may hold characters the terminal's encoding lacks; show a stand-in, never crash
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # argparse's own message would point at the top-level --help, not the subcommand's
            where = PROG if args.command is None else f"{PROG} {args.command}"
            raise _UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{where} --help')")
        if args.command is None:
            raise _UsageError(f"choose a command: demo, train, sample, graph, gradcheck, lab or trace "
                              f"(see '{PROG} --help')")
        with _sigterm_raises():
            return _COMMANDS[args.command](args)
    except _UsageError as e:
        return _fail(str(e), 2)
    except (_Error, DataError, CheckpointError) as e:
        return _fail(str(e), 1)
    except MemoryError as e:  # ours say what needed how much; NumPy's say what it could not allocate
        return _fail(str(e) if "memory" in str(e) else f"out of memory ({e})", 1)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"\n{PROG}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # the reader (say `| head`) has gone: stop quietly, and keep Python from complaining at exit
        _silence_stdout()
        return 1
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EBADF):  # not a stdout that cannot be written
            raise
        _silence_stdout()  # `> /dev/full`: say it on stderr, and keep Python from complaining at exit
        return _fail(f"cannot write the output: {e.strerror}", 1)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is (as Ctrl-C raises KeyboardInterrupt), so partial files are
    removed on the way out; `train` instead saves and stops between steps (_stop_signals)."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (main() called from a thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


# ---- demo -----------------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    vocab = Vocab(_HELLO)
    inputs, targets = vocab.encode("hell"), vocab.encode("ello")
    _check_hello_memory(args.cell, args.hidden, 4, " for the demo")
    _check_gradcheck_time(args.cell, args.hidden, 4, f"the demo's gradient check with --hidden {args.hidden}")
    kw = _cell_kw(args, args.cell)
    model = nn.CharRNN(vocab.size, args.hidden, args.cell, rng=np.random.default_rng(args.seed), **kw)
    optimizer = nn.optim.Adagrad(model.parameters(), lr=0.1)
    who = "an RNN" if args.cell == "rnn" else f"an {_cell_name('LSTM', **kw)}" if args.cell == "lstm" else "a GRU"
    print(f"vocabulary {list(vocab.chars)}; {who} with {args.hidden} hidden units learns to read 'hell' "
          f"and predict 'ello'")
    print(f"training with Adagrad (lr 0.1, as min-char-rnn) for {args.steps} steps; "
          f"loss = cross-entropy summed over the 4 characters:")
    for step in range(1, args.steps + 1):
        logits, _ = model(inputs)
        loss = nn.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        nn.clip_grad_value(model.parameters(), 5.0)
        optimizer.step()
        if step == 1 or step % max(1, args.steps // 4) == 0 or step == args.steps:
            print(f"  step {step:4d}  loss {loss.item():.4f}")

    with no_grad():
        probs = model(inputs)[0].softmax(axis=-1).data                    # (T, V)
    print("\npredictions after training (t: input -> predicted next character, its probability):")
    for t, (x, y) in enumerate(zip("hell", "ello"), start=1):  # t = 1 … 4, as the book and the pictures count
        best = int(probs[t - 1].argmax())
        mark = "ok" if vocab.chars[best] == y else f"wanted {y!r}"
        print(f"  t={t}: {x!r} -> {vocab.chars[best]!r}  p={probs[t - 1, best]:.3f}  {mark}")

    print("\ngradients of the trained model, three ways:")
    report = check.compare_cell(model, inputs, targets)
    print(report)

    picture = args.out_dir / "hello_unrolled.svg"
    # time counted as in the book: h(0) the initial state, clusters t = 1 … 4 holding h(1) … h(4)
    digraph = viz.draw_unrolled(model, len(inputs), inputs=inputs, targets=targets, grads=True)
    print()
    try:
        written = viz.save(digraph, picture)
        print(f"wrote {written}: the graph of the loss above, unrolled over 4 steps, nodes coloured by "
              f"gradient norm")
    except viz.GraphvizNotFound as e:
        print(f"note: {e}".replace("save: ", ""))
    except OSError as e:
        raise _Error(f"cannot write {picture}: {e.strerror or e}") from None
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0 if report.ok else 1


# ---- train ----------------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    if args.text is not None and not args.text.is_file():  # the input's own problem first, not the --out's
        load_text(args.text)
    out = args.out or args.resume or Path("checkpoint.npz")
    _check_out(out, args.force, args.resume, args.text)
    run, text = _resume(args) if args.resume else _fresh(args)
    c = run.config
    train_ids, val_ids = run.split(text)
    if len(train_ids) < c.batch:
        raise _Error(f"the training part of the text has {len(train_ids)} characters, too few for "
                     f"--batch {c.batch} streams")

    source = "the shipped Pride and Prejudice" if c.text is None else c.text
    _say(f"text: {source}, {len(text):,} characters, {run.vocab.size} distinct; "
         f"{len(train_ids):,} for training, {len(val_ids):,} held out")
    _say(f"model: {_cell_name(c.cell, c.cell_input)}, hidden {c.hidden}, {run.n_parameters():,} parameters; "
         f"{c.optim} lr {c.lr:g}, clip {c.clip:g}; truncated BPTT over {c.seq_len} steps x {c.batch} streams")
    base = ngram_baselines(train_ids, val_ids, run.vocab.size)
    _say("baselines on the held-out text (add-one smoothed):")
    for name in ("unigram", "bigram"):
        _say(f"  {name:8s} {base[name]['bits_per_char']:.3f} bits/char   perplexity {base[name]['perplexity']:.2f}")
    if args.resume:
        _say(f"resuming {args.resume} at step {run.step}")
    if run.step >= args.steps:
        _say(f"the checkpoint is already at step {run.step}, not below --steps {args.steps}: nothing to train")
        return 0

    progress = _Progress(run, args.steps)
    first = run.step
    try:
        with _stop_signals() as stop, progress:
            result = fit(run, text, args.steps, checkpoint=out, on_step=progress.step, on_eval=progress.eval,
                         on_sample=progress.sample,
                         should_stop=lambda: stop["signal"] is not None or progress.closed is not None,
                         sample_chars=_SAMPLE_CHARS, temperature=_SAMPLE_TEMPERATURE)
    except TrainingDiverged as e:
        if args.resume and e.step == first + 1:  # at once: the saved weights, not this run's lr
            raise _Error(f"{args.resume}: its weights give a loss of {e.loss:.4g} nats/char at the first step "
                         "resumed: the checkpoint is damaged, or was about to diverge (a resumed run keeps its --lr: "
                         "start a new run with a lower one); nothing was saved") from None
        raise _Error(f"{e} (try a lower --lr or --clip); this state was not saved to {out}") from None
    if result.stopped:
        how, code = (_STOPPED_BY[stop["signal"]] if stop["signal"] is not None else
                     (f"standard output closed ({progress.closed}): stopped", 1))
        _say_error(f"{PROG}: {how} at step {run.step}; saved {out}; continue with: "
                   f"{PROG} train --resume {out} --steps {args.steps}")
        return code
    score = result.score
    print(f"held-out after {run.step} steps: {score['bits_per_char']:.3f} bits/char, perplexity "
          f"{score['perplexity']:.2f} (bigram {base['bigram']['bits_per_char']:.3f}, "
          f"unigram {base['unigram']['bits_per_char']:.3f})")
    print(f"saved {out} (step {run.step}); sample it with: {PROG} sample {out} --length 300")
    return 0


def _check_out(out: Path, force: bool, resume: Optional[Path], text: Optional[Path]) -> None:
    """Refuse an --out that cannot be written, that holds another run, or that is the training text,
    before any training happens."""
    if out.is_dir():
        raise _Error(f"--out {out} is a directory; give a file name such as {out / 'checkpoint.npz'}")
    parent = out.parent
    if not parent.exists():
        raise _Error(f"--out {out}: directory {parent} does not exist")
    if not parent.is_dir():
        raise _Error(f"--out {out}: {parent} is not a directory")
    if text is not None and out.exists() and text.exists() and os.path.samefile(out, text):
        raise _Error(f"--out {out} is the training text --text {text}; the checkpoint would replace it")
    try:
        check_writable(out)  # the very temp file name a save writes first: a name too long fails here
    except CheckpointError as e:
        raise _Error(f"--out: {e}") from None
    continuing = resume is not None and resume.exists() and out.exists() and os.path.samefile(out, resume)
    if out.exists() and not (force or continuing):
        raise _Error(f"{out} already exists; continue it with --resume {out}, "
                     f"or choose another --out (or --force to overwrite it)")


def _fresh(args: argparse.Namespace) -> tuple[Run, str]:
    text = load_text(args.text)
    optim = args.optim or Config.optim
    cell = args.cell or Config.cell
    try:
        config = Config(cell=cell, cell_input=_cell_kw(args, cell).get("cell_input", Config.cell_input),
                        hidden=args.hidden or Config.hidden,
                        seq_len=args.seq_len or Config.seq_len, batch=args.batch or Config.batch,
                        optim=optim, lr=args.lr or DEFAULT_LR[optim], clip=args.clip or Config.clip,
                        seed=Config.seed if args.seed is None else args.seed,
                        text=None if args.text is None else str(args.text.resolve()), text_sha256=text_sha256(text),
                        checkpoint=args.checkpoint or Config.checkpoint,
                        **_schedule(args, Config()))
    except ValueError as e:  # the flags' own checks should have caught it; never a traceback
        raise _Error(str(e)) from None
    params, activations = _training_bytes(config, len(set(text)))
    what = (f"--hidden {config.hidden}" if params >= activations
            else f"--seq-len {config.seq_len} with --batch {config.batch}")
    _memory.check(what, params + activations, f" to train ({config.cell}, {config.optim}, "
                                              f"{config.seq_len} steps x {config.batch} streams)")
    return Run.start(config, text), text


def _resume(args: argparse.Namespace) -> tuple[Run, str]:
    run = Run.load(args.resume)
    c = run.config
    _memory.check(f"{args.resume} (hidden {c.hidden}, {c.seq_len} steps x {c.batch} streams)",
                  sum(_training_bytes(c, run.vocab.size)), " to train")
    _cell_kw(args, args.cell or c.cell)
    for flag, given, stored in (("--cell", args.cell, c.cell), ("--cell-input", args.cell_input, c.cell_input),
                                ("--hidden", args.hidden, c.hidden),
                                ("--seq-len", args.seq_len, c.seq_len), ("--batch", args.batch, c.batch),
                                ("--optim", args.optim, c.optim), ("--lr", args.lr, c.lr),
                                ("--clip", args.clip, c.clip), ("--seed", args.seed, c.seed),
                                ("--checkpoint", args.checkpoint, c.checkpoint or None)):
        if given is not None and given != stored:
            raise _Error(f"{flag} {given} does not match {args.resume}, which has {stored}; "
                         f"a resumed run keeps its checkpoint's settings")
    if args.text is None and c.text is not None and not Path(c.text).exists():
        raise _Error(f"{args.resume} was trained on {c.text}, which is gone; pass that text with --text")
    text = load_text(args.text if args.text is not None else c.text)
    if text_sha256(text) != c.text_sha256:
        what = "the shipped corpus" if args.text is None and c.text is None else (args.text or c.text)
        raise _Error(f"{what} is not the text {args.resume} was trained on; resuming needs the same text")
    run.config = replace(c, **_schedule(args, c))
    return run, text


def _checkpoint_flag(text: str) -> str:
    """--checkpoint k|sqrt|slots=m, checked as the config stores it."""
    try:
        checkpoint_setting(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _schedule(args: argparse.Namespace, config: Config) -> dict:
    """The --*-every flags that were given, else the config's values."""
    names = ("eval_every", "sample_every", "checkpoint_every")
    return {k: getattr(config, k) if getattr(args, k) is None else getattr(args, k) for k in names}


_STOPPED_BY = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 128 + signal.SIGTERM)}


@contextlib.contextmanager
def _stop_signals() -> Iterator[dict]:
    """Ctrl-C (SIGINT) and SIGTERM only note the signal in the flag, which fit reads between steps, so the
    checkpoint it then writes never holds half an update; the same signal again acts at once."""
    flag: dict = {"signal": None}

    def handler(signum: int, frame: Any) -> None:
        flag["signal"] = signum
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    previous = {signum: signal.signal(signum, handler) for signum in _STOPPED_BY}
    try:
        yield flag
    finally:
        for signum, was in previous.items():
            signal.signal(signum, was)


def _say(line: str) -> None:
    """A line of train's report before training: a reader that has gone already (`| head` with
    PYTHONUNBUFFERED set) is one line on stderr, with nothing trained and nothing saved."""
    try:
        print(line)
    except BrokenPipeError:
        _silence_stdout()
        raise _Error("standard output closed before training began (Broken pipe): nothing was trained or "
                     "saved") from None


def _say_error(message: str) -> None:
    """A line on stderr, if there still is one (`2>&-`, a closed pipe): the work goes on regardless."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, AttributeError, ValueError):
        pass


def _silence_stdout() -> None:
    """Point the stdout file descriptor at /dev/null, so nothing (not even Python's flush at exit) fails again."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _Progress:
    """fit's callbacks for the terminal: a tqdm bar (only on a terminal) and the eval and sample lines.

    When stdout cannot be written any more (`| head`, `> /dev/full`), `closed` says why and training
    stops at that step with its checkpoint saved (fit asks should_stop); with no stdout at all (`>&-`)
    it trains on without printing."""

    def __init__(self, run: Run, steps: int) -> None:
        from tqdm import tqdm
        self.speed = 0.0
        self.closed: Optional[str] = None
        self.bar = tqdm(total=steps, initial=run.step, unit="step", dynamic_ncols=True,
                        disable=sys.stderr is None or not sys.stderr.isatty(), leave=False)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.bar.close()

    def step(self, run: Run, loss: float, chars_per_second: float) -> None:
        self.speed = chars_per_second
        self.bar.update(1)
        self.bar.set_postfix({"loss": f"{run.smooth_loss:.3f}", "ppl": f"{perplexity(run.smooth_loss):.2f}",
                              "chars/s": f"{chars_per_second:,.0f}"}, refresh=False)

    def eval(self, run: Run, score: dict) -> None:
        self._write(f"step {run.step:6d}  train loss {run.smooth_loss:.3f}  held-out "
                    f"{score['nats_per_char']:.3f} nats/char = {score['bits_per_char']:.3f} bits/char, "
                    f"perplexity {score['perplexity']:.2f}  {self.speed:,.0f} chars/s")

    def sample(self, run: Run, prime: str, text: str) -> None:
        self._write(f"--- sample at step {run.step}: {_SAMPLE_CHARS} characters at temperature "
                    f"{_SAMPLE_TEMPERATURE} after the held-out prime {prime!r} ---\n{prime}{text}\n---")

    def _write(self, line: str) -> None:
        if self.closed is not None or sys.stdout is None:  # None: started with stdout closed (>&-), train on
            return
        try:
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()
        except (OSError, ValueError) as e:
            self.closed = getattr(e, "strerror", None) or type(e).__name__
            _silence_stdout()


# ---- sample ---------------------------------------------------------------------------------------------
def _user_cell(spec: str) -> Any:
    """The class a --cell-module MODULE:CLASS names, imported with the current directory on the path."""
    import importlib
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name.isidentifier():
        raise _UsageError(f"--cell-module wants MODULE:CLASS, such as mycell:MyGRU, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's own code: whatever it raised, in one line
        raise _Error(f"--cell-module {spec}: cannot import {module_name} ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        sys.path.pop(0)
    cls = getattr(module, class_name, None)
    if not callable(cls):
        raise _Error(f"--cell-module {spec}: {module_name} has no class {class_name}")
    return cls


def _sample(args: argparse.Namespace) -> int:
    run = Run.load(args.checkpoint, cell=_user_cell(args.cell_module) if args.cell_module else None)
    c = run.config
    _cell_kw(args, args.cell or c.cell)  # --cell-input with an rnn or gru: a usage error, as everywhere
    for flag, given, stored in (("--cell", args.cell, c.cell), ("--cell-input", args.cell_input, c.cell_input)):
        if given is not None and given != stored:
            raise _Error(f"{flag} {given} does not match {args.checkpoint}, which has {stored}; "
                         "sample uses the checkpoint's cell")
    try:
        run.vocab.encode(args.prime)
    except DataError as e:
        raise _Error(f"--prime: {e} of {args.checkpoint}") from None
    rng = np.random.default_rng(args.seed)
    sys.stdout.write(args.prime)
    try:
        for char in generate(run.model, run.vocab, run.unigram, args.prime, args.length, args.temperature, rng):
            sys.stdout.write(char)
            sys.stdout.flush()
    except ValueError as e:  # weights so large that the outputs overflow
        raise _Error(f"{args.checkpoint}: {e}") from None
    if sys.stdout.isatty():  # keep the prompt off the last line; a pipe gets exactly the characters
        sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


# ---- graph and gradcheck --------------------------------------------------------------------------------
# an unrolled picture with more ops than this takes dot more than a few seconds: its steps become boxes
_GRAPH_MAX_OPS = 800
_GRAPH_MAX_STEPS = 500  # even as boxes, more steps than this take dot several seconds
_GRAPH_MAX_BOOK_STEPS = 300  # the book's picture takes dot 1 s at 300 steps, 20 s at 1000


def _graph(args: argparse.Namespace) -> int:
    _check_hello_memory(args.cell, args.hidden, args.steps, " to draw the graph")
    if args.steps > _GRAPH_MAX_STEPS:
        raise _UsageError(f"--steps {args.steps} is more than a picture can show: at most {_GRAPH_MAX_STEPS}")
    if args.style == "book" and not args.folded and args.steps > _GRAPH_MAX_BOOK_STEPS:
        raise _UsageError(f"--style book draws at most {_GRAPH_MAX_BOOK_STEPS} steps, more take dot minutes; "
                          f"--style ops draws up to {_GRAPH_MAX_STEPS}")
    if args.collapse and (args.folded or args.style == "book"):
        raise _UsageError("--collapse draws the op-level picture's steps as boxes, so it goes with --style ops "
                          "and without --folded")
    out = args.output or Path(f"{args.cell}_unrolled.svg")
    cell_kw = _cell_kw(args, args.cell)
    model = nn.CharRNN(Vocab(_HELLO).size, args.hidden, args.cell, rng=np.random.default_rng(0), **cell_kw)
    kw = dict(grads=args.grads, loss=args.loss)
    if args.folded:
        kw["folded"] = True
    elif args.style == "book":
        kw["style"] = "book"
    else:
        kw["collapse_scopes"] = args.collapse
    digraph = viz.draw_unrolled(model, args.steps, **kw)
    ops = sum("label=" in line and "->" not in line and "invis" not in line for line in digraph.body)
    if not args.folded and args.style == "ops" and not args.collapse and ops > _GRAPH_MAX_OPS:
        print(f"{args.steps} steps are {ops} nodes, more than dot lays out in seconds: "
              f"each step is drawn as one box (as with --collapse)")
        digraph = viz.draw_unrolled(model, args.steps, **dict(kw, collapse_scopes=True))
    try:
        written = viz.save(digraph, out)
    except viz.GraphvizNotFound as e:
        raise _Error(str(e).replace("save: ", "")) from None
    except viz.GraphvizError as e:
        raise _Error(str(e).replace("save: ", "")) from None
    except OSError as e:
        raise _Error(f"cannot write {out}: {e.strerror or e}") from None
    kind = ("folded circuit" if args.folded else
            f"{'book-style ' if args.style == 'book' else ''}graph unrolled over {args.steps} steps")
    print(f"wrote {written}: the {_cell_name(args.cell, **cell_kw)} CharRNN's {kind} (hidden {args.hidden}, "
          f"vocabulary h, e, l, o)")
    return 0


def _check_hello_memory(cell: str, hidden: int, steps: int, purpose: str) -> None:
    """Refuse in one line, before building anything, a --hidden or --steps the memory cannot hold."""
    # the model, its gradients and a few copies (manual and numerical gradients), and per step
    # the graph's nodes with their arrays and the drawing
    params = 8 * 10 * sum(math.prod(s) for s in _param_shapes(cell, hidden, len(_HELLO)).values())
    per_steps = steps * (8 * 64 * hidden + 64 * 1024)
    what = f"--hidden {hidden}" if params >= per_steps else f"--steps {steps}"
    _memory.check(what, params + per_steps, purpose)


def _hello_sequence(steps: int) -> tuple[Vocab, np.ndarray, np.ndarray]:
    """'hellohello...' as (inputs, targets) of length `steps`, each target the next character."""
    vocab = Vocab(_HELLO)
    ids = vocab.encode((_HELLO * (steps // len(_HELLO) + 2))[:steps + 1])
    return vocab, ids[:-1], ids[1:]


_GRADCHECK_MAX_SECONDS = 60


def _check_gradcheck_time(cell: str, hidden: int, steps: int, flags: str) -> None:
    """Refuse in one line a finite-difference check that would run for minutes without a word: it runs the
    model twice per weight, so its time grows as H^2 weights x T steps x H^2 per step."""
    weights = sum(math.prod(s) for s in _param_shapes(cell, hidden, len(_HELLO)).values())
    per_step = 1.5e-4 + 2 * _GATES_OF[cell] * hidden * hidden / 1e9  # seconds: the ops' overhead, the matmul
    seconds = 2 * weights * steps * per_step
    if seconds > _GRADCHECK_MAX_SECONDS:
        took = f"{seconds / 60:.0f} minutes" if seconds < 5400 else f"{seconds / 3600:.1f} hours"
        raise _UsageError(f"{flags} would take about {took}: finite differences run the {steps}-step model twice "
                          f"for each of its {weights:,} weights; this command stops at about "
                          f"{_GRADCHECK_MAX_SECONDS} s (a smaller model checks the same derivation)")


_GATES_OF = {"rnn": 1, "lstm": 4, "gru": 3}


def _gradcheck(args: argparse.Namespace) -> int:
    _check_hello_memory(args.cell, args.hidden, args.steps, " for the gradient check")
    _check_gradcheck_time(args.cell, args.hidden, args.steps,
                          f"gradcheck --cell {args.cell} --hidden {args.hidden} --steps {args.steps}")
    vocab, inputs, targets = _hello_sequence(args.steps)
    model = nn.CharRNN(vocab.size, args.hidden, args.cell, rng=np.random.default_rng(args.seed),
                       **_cell_kw(args, args.cell))
    report = check.compare_cell(model, inputs, targets)
    print(report)
    return 0 if report.ok else 1


# ---- trace ----------------------------------------------------------------------------------------------
def _trace(args: argparse.Namespace) -> int:
    vocab, inputs, targets = _hello_sequence(args.steps)
    _check_hello_memory(args.cell, args.hidden, args.steps, " for the trace")
    model = nn.CharRNN(vocab.size, args.hidden, args.cell, rng=np.random.default_rng(0), **_cell_kw(args, args.cell))

    def step(idx, targets):
        return nn.cross_entropy(model(idx)[0], targets)
    prog = trace(step, np.asarray(inputs), np.asarray(targets), params=model.named_parameters())
    head = (f"# {PROG} trace --cell {args.cell} --steps {args.steps} --hidden {args.hidden}: the CharRNN's training "
            f"step on 'hello...',\n# written by the engine (tr.trace); step(params, idx, targets) -> (loss, grads)\n")
    if args.output is None:
        print(head + prog.source, end="")
        return 0
    try:
        with open(args.output, "w") as f:
            f.write(head + prog.source)
    except OSError as e:
        raise _Error(f"cannot write {args.output}: {e.strerror or e}") from None
    print(f"wrote {args.output}: {len(prog.source.splitlines())} lines")
    return 0


# ---- lab ------------------------------------------------------------------------------------------------
def _lab(args: argparse.Namespace) -> int:
    if args.experiment not in lab.EXPERIMENTS:
        raise _UsageError(f"unknown experiment {args.experiment!r}; choose one of {', '.join(lab.EXPERIMENTS)} "
                          f"(see '{PROG} lab --help')")
    if args.cell_input is not None and args.cell is None:
        raise _UsageError(f"--cell-input applies to the LSTM only: give it with --cell lstm (see '{PROG} lab --help')")
    sizes = _cell_kw(args, args.cell)
    if args.cell is not None and args.experiment == "rtrl":  # rtrl takes the cells it compares
        sizes["cells"] = (args.cell,)
    elif args.cell is not None:  # every other experiment the one cell it shows
        sizes["cell"] = args.cell
    result = lab.run(args.experiment, **sizes)
    print(result.table)
    print(f"({args.experiment}: {result.seconds:.1f} s)")
    if args.output is not None:
        try:
            written = lab.save_plot(result, args.output)
        except lab.PlotUnavailable as e:
            raise _Error(str(e)) from None
        except OSError as e:
            raise _Error(f"cannot write {args.output}: {e.strerror or e}") from None
        print(f"wrote {written}: {result.title}")
    return 0


_COMMANDS = {"demo": _demo, "train": _train, "sample": _sample, "graph": _graph, "gradcheck": _gradcheck,
             "lab": _lab, "trace": _trace}
