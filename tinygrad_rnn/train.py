"""Training a CharRNN on text, as min-char-rnn does but batched: truncated BPTT over B parallel streams
with the hidden state carried between chunks (the Oxford lecture notes), held-out nats/bits per character,
sampling, and `.npz` checkpoints that resume bit-identically. `fit` is the training loop, with callbacks
for progress, evaluation, samples and checkpoints; the command line (cli.py) only parses and prints.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from os import PathLike
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from . import _blas, _memory, nn
from .savefile import (CheckpointError, check_writable, load_checkpoint, pack_json, pack_rng, save_checkpoint,
                       unpack_json, unpack_rng, writer_lock)
from .data import DataError, Vocab, get_batch, split
from .engine import no_grad
from .nn.charrnn import _CELLS as _CELL_CLASSES, _FUSED
from .tensor import Tensor

__all__ = ["Config", "Run", "fit", "FitResult", "TrainingDiverged", "CELLS", "CELL_INPUTS", "OPTIMIZERS", "DEFAULT_LR",
           "evaluate", "generate", "perplexity", "text_sha256"]

CELLS = ("rnn", "lstm", "gru")
CELL_INPUTS = ("tanh", "sigmoid")  # the LSTM's cell input: tanh (PyTorch's) or sigmoid (the book's, eq. 10.41)
OPTIMIZERS = {"adagrad": nn.optim.Adagrad, "adam": nn.optim.Adam, "sgd": nn.optim.SGD}
DEFAULT_LR = {"adagrad": 0.1, "adam": 2e-3, "sgd": 1.0}
_FORMAT = 1  # bump when the checkpoint layout changes


@dataclass
class Config:
    """What defines a run (text=None is the shipped corpus). A resumed run keeps all of it; only the
    schedule (the *_every fields) may change, since it decides when to look, never what is learned."""
    cell: str = "lstm"          # "rnn", "lstm", "gru", or a user-written cell's class name
    cell_input: str = "tanh"    # LSTM only
    hidden: int = 128
    seq_len: int = 32
    batch: int = 32
    optim: str = "adagrad"
    lr: float = DEFAULT_LR["adagrad"]
    clip: float = 5.0
    seed: int = 0
    val_fraction: float = 0.1
    text: Optional[str] = None
    text_sha256: str = ""
    eval_every: int = 200
    sample_every: int = 500
    checkpoint_every: int = 500
    checkpoint: str = ""        # recomputation in backward: "" none, "k" every k steps, "sqrt", "slots=m" (nn.MemoryBudget)

    def __post_init__(self) -> None:
        problem = _config_problem(asdict(self))
        if problem:
            raise ValueError(f"Config: {problem}")


_GATES = {"rnn": 1, "lstm": 4, "gru": 3}   # blocks of H rows in the cell's weights
_OPTIM_BUFFERS = {"adagrad": 1, "adam": 2, "sgd": 1}


def _param_shapes(cell: str, hidden: int, vocab_size: int) -> dict[str, tuple]:
    """The parameter shapes nn.CharRNN(vocab_size, hidden, cell) has, known without building it."""
    H, V, G = hidden, vocab_size, _GATES[cell]
    names = {"rnn": ("cell.W_xh", "cell.W_hh", "cell.b_h"), "lstm": ("cell.W_x", "cell.W_h", "cell.b"),
             "gru": ("cell.W_x", "cell.W_h", "cell.b_x")}[cell]
    shapes = {names[0]: (G * H, V), names[1]: (G * H, H), names[2]: (G * H,)}
    if cell == "gru":
        shapes["cell.b_h"] = (G * H,)
    return {**shapes, "out.W": (V, H), "out.b": (V,)}


def _training_bytes(config: Config, vocab_size: int) -> tuple[int, int]:
    """About how many bytes training `config` needs at its peak, float64: (for the parameters with their
    gradients, optimizer buffers and update temporaries; for the activations of one chunk and of evaluation)."""
    cell = config.cell if config.cell in _GATES else "lstm"  # a user-written cell: guessed LSTM-sized
    n_params = sum(math.prod(s) for s in _param_shapes(cell, config.hidden, vocab_size).values())
    per_position = 4 * (_GATES[cell] + 1) * config.hidden + 4 * vocab_size  # kept for backward
    positions = config.seq_len * config.batch + 64 * 64                            # a chunk; evaluate's
    return 8 * n_params * (5 + _OPTIM_BUFFERS[config.optim]), 8 * 2 * per_position * positions


def _check_training_memory(config: Config, vocab_size: int) -> None:
    _memory.check(f"training a {config.cell} of hidden size {config.hidden}", sum(_training_bytes(config, vocab_size)),
                  f" ({config.optim}, {config.seq_len} steps x {config.batch} streams)")


def checkpoint_setting(text: str) -> Any:
    """CharRNN's checkpoint= for Config.checkpoint / --checkpoint: "" None, "k" an int, "sqrt", "slots=m" a budget."""
    if text == "" or text == "sqrt":
        return text or None
    number = text[len("slots="):] if text.startswith("slots=") else text
    if not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise ValueError(f"checkpoint must be k, sqrt or slots=m with k, m positive integers, got {text!r}")
    return nn.MemoryBudget(slots=int(number)) if text.startswith("slots=") else int(number)


def _build(config: Config, vocab_size: int, cell: Optional[Callable[[int, int], Any]] = None
           ) -> tuple[nn.CharRNN, Any]:
    rng = np.random.default_rng(config.seed)
    if cell is not None:  # a user-written cell: op-level steps, the engine differentiates them
        model = nn.CharRNN(vocab_size, config.hidden, cell=cell(vocab_size, config.hidden), rng=rng,
                           checkpoint=checkpoint_setting(config.checkpoint))
    else:
        kw = {"cell_input": config.cell_input} if config.cell == "lstm" else {}
        # fused (for the cells that have a one-node step): the hand-derived backward; nobody draws a training
        # run's graph
        fused = _CELL_CLASSES[config.cell] in _FUSED
        model = nn.CharRNN(vocab_size, config.hidden, config.cell, rng=rng, fused=fused,
                           checkpoint=checkpoint_setting(config.checkpoint), **kw)
    optimizer = OPTIMIZERS[config.optim](model.parameters(), lr=config.lr)
    return model, optimizer


def text_sha256(text: str) -> str:
    """The fingerprint a checkpoint keeps of its training text, so a resume can insist on the same one."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Run:
    """A training run's whole state: config, vocabulary, model, optimizer, carried hidden state, step, RNG.

    `cell`, when given, makes a user-written cell: cell(vocab_size, hidden_size) -> a cell object (the
    recurrent cell protocol; a class with that constructor will do). config.cell then records its class
    name, and Run.load of that checkpoint needs the same `cell`."""

    def __init__(self, config: Config, vocab: Vocab, unigram: np.ndarray,
                 cell: Optional[Callable[[int, int], Any]] = None) -> None:
        if cell is None and config.cell not in CELLS:
            raise ValueError(f"Run: config.cell must be one of {CELLS}, got {config.cell!r}; "
                             "a user-written cell is passed as cell=")
        _check_run_config(config)
        self.vocab = vocab
        self.unigram = np.asarray(unigram, dtype=np.int64)  # training-text counts: the empty prime's draw
        self.model, self.optimizer = _build(config, vocab.size, cell)
        if cell is not None:
            config = replace(config, cell=self.model.cell_type, cell_input=Config.cell_input)
        self.config = config
        self.state: Any = None          # h (B, H) or (h, s), carried from chunk to chunk
        self.step = 0                   # chunks trained so far; chunk k is get_batch(ids, k, ...)
        self.smooth_loss = math.nan     # running mean of the training loss, for display
        self.rng = np.random.default_rng([config.seed, 1])  # for samples only; training draws nothing

    @classmethod
    def start(cls, config: Config, text: str, cell: Optional[Callable[[int, int], Any]] = None) -> "Run":
        """A new run on `text`: the vocabulary of the whole text (so held-out characters are known)."""
        vocab = Vocab.from_text(text)
        _check_training_memory(config, vocab.size)
        if not config.text_sha256:  # the fingerprint a resume checks the text against
            config = replace(config, text_sha256=text_sha256(text))
        train_text, _ = split(text, config.val_fraction)
        return cls(config, vocab, np.bincount(vocab.encode(train_text), minlength=vocab.size), cell)

    def split(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Training ids (N,) and held-out ids (M,) of `text`: its last val_fraction is held out."""
        train_text, val_text = split(text, self.config.val_fraction)
        return self.vocab.encode(train_text), self.vocab.encode(val_text)

    def train_step(self, train_ids: np.ndarray) -> float:
        """One truncated-BPTT chunk (T, B): forward, mean cross-entropy, backward, clip, update."""
        c = self.config
        x, y = get_batch(train_ids, self.step, c.seq_len, c.batch)   # (T, B) each
        with _blas.one_thread(c.hidden <= _blas.SMALL_HIDDEN):   # small matrices: BLAS threads only slow them
            # the mean cross-entropy of the (T, B, V) logits (summed inside the recomputed segments when checkpointing)
            loss, state = self.model.loss(x, y, self.state, reduction="mean")
            self.optimizer.zero_grad()
            loss.backward()
            nn.clip_grad_value(self.model.parameters(), c.clip)
            self.optimizer.step()
        self.state = nn.detach_state(state)
        self.step += 1
        value = float(loss.data)
        # min-char-rnn's smoothing, so the bar shows a trend rather than one chunk's noise
        self.smooth_loss = value if math.isnan(self.smooth_loss) else 0.95 * self.smooth_loss + 0.05 * value
        return value

    def n_parameters(self) -> int:
        """How many numbers the model learns."""
        return sum(p.size for p in self.model.parameters())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly, as plain arrays (no pickle)."""
        _check_run_config(self.config)  # save only what Run.load accepts
        arrays = {"config": pack_json({"format": _FORMAT, **asdict(self.config)}),
                  "vocab": self.vocab.to_array(), "unigram": self.unigram,
                  "step": np.int64(self.step), "smooth_loss": np.float64(self.smooth_loss),
                  "rng": pack_rng(self.rng)}
        arrays.update({f"param.{k}": v for k, v in self.model.state_dict().items()})
        arrays.update({f"optim.{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
        state = () if self.state is None else (self.state,) if isinstance(self.state, Tensor) else self.state
        if not all(isinstance(s, Tensor) for s in state):
            raise CheckpointError(f"cannot save the carried state of a {self.config.cell} cell: it must be "
                                  "a Tensor or a tuple of Tensors")
        arrays.update({f"state.{i}": s.data for i, s in enumerate(state)})
        return arrays

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically: a failure leaves any previous file at `path` intact."""
        save_checkpoint(path, self.to_arrays())

    @classmethod
    def load(cls, path: Path, cell: Optional[Callable[[int, int], Any]] = None) -> "Run":
        """The run saved at `path`. Every field is checked before anything is built from it (finite,
        positive where it must be, shapes that match the config); a bad one is a one-line CheckpointError.

        A run of a user-written cell needs the same `cell` as Run.start had."""
        arrays = load_checkpoint(path)
        missing = [k for k in ("config", "vocab", "unigram", "step", "smooth_loss", "rng") if k not in arrays]
        if missing:
            raise CheckpointError(f"{path} is not a tinygrad-rnn training checkpoint "
                                  f"(no {', '.join(repr(k) for k in missing)})")
        try:
            stored, rng = unpack_json(arrays["config"]), unpack_rng(arrays["rng"])
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        config = _config_from(stored, path, user_cell=cell is not None)
        try:
            vocab = Vocab.from_array(arrays["vocab"])
        except DataError as e:
            raise CheckpointError(f"{path}: {e}") from None
        unigram = np.asarray(arrays["unigram"])
        if (unigram.shape != (vocab.size,) or unigram.dtype.kind not in "iu" or (unigram < 0).any()
                or unigram.size and unigram.max() > np.iinfo(np.int64).max):  # uint64 2**64-1 would wrap to -1
            raise CheckpointError(f"{path} is corrupt: 'unigram' must be {vocab.size} character counts >= 0, "
                                  f"got {unigram.dtype} {unigram.shape}")
        step, smooth_loss = _scalar(arrays, "step", int, path), _scalar(arrays, "smooth_loss", float, path)
        if not (math.isfinite(smooth_loss) and smooth_loss >= 0 or step == 0 and math.isnan(smooth_loss)):
            raise CheckpointError(f"{path} is corrupt: 'smooth_loss' {smooth_loss} is not a loss after {step} steps")
        what = f"a CharRNN ({config.cell}, hidden size {config.hidden}, {vocab.size} characters)"
        params = _prefixed(arrays, "param.")
        if config.cell in CELLS:  # a built-in cell's shapes are known before building it
            shapes = _param_shapes(config.cell, config.hidden, vocab.size)
            wrong = [f"{k} (missing)" for k in shapes if k not in params]
            wrong += [f"{k} (unexpected)" for k in params if k not in shapes]
            wrong += [f"{k} (shape {params[k].shape}, expected {shape})" for k, shape in shapes.items()
                      if k in params and params[k].shape != shape]
            wrong += [f"{k} (dtype {params[k].dtype}, expected floating point)" for k in shapes
                      if k in params and params[k].dtype.kind != "f"]
            if wrong:  # before building: a config edited to hidden 200000 must not allocate that model
                raise CheckpointError(f"{path} does not fit {what}: {', '.join(wrong)}")
        broken = [k for k, a in params.items() if a.dtype.kind == "f" and not _plausible(a)]
        if broken:
            raise CheckpointError(f"{path} is corrupt: {', '.join(broken)} holds NaN, inf or values beyond "
                                  f"{_WEIGHT_LIMIT:g}, which no training run saves (it stops when the loss diverges)")
        state = _state_from(_prefixed(arrays, "state."), config, step, path, what)
        run = cls(config, vocab, unigram, cell)
        if run.config.cell != config.cell:
            raise CheckpointError(f"{path} holds a {config.cell} cell, but the cell given to load it is a "
                                  f"{run.config.cell}")
        try:
            run.model.load_state_dict(params)
        except ValueError as e:
            raise CheckpointError(f"{path} does not fit {what}: {e}") from None
        try:  # the parameters fit: a bad optimizer entry is damage, not another model
            run.optimizer.load_state_dict(_prefixed(arrays, "optim."))
        except ValueError as e:
            raise CheckpointError(f"{path} is corrupt: {e}") from None
        if run.optimizer.lr != config.lr:
            raise CheckpointError(f"{path} is corrupt: its optimizer's lr {run.optimizer.lr} "
                                  f"differs from its config's {config.lr}")
        run.step, run.smooth_loss, run.rng, run.state = step, smooth_loss, rng, state
        return run


# Weights this large make float64 products overflow (1e154 squared): a checkpoint holding them is damage,
# not a run that diverged (fit raises TrainingDiverged before saving such a state).
_WEIGHT_LIMIT = 1e150


def _plausible(a: np.ndarray) -> bool:
    """Finite and below _WEIGHT_LIMIT as the float64 the model will hold (float128 1e400 is not)."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = a.astype(np.float64)
    return bool(np.isfinite(a).all()) and (a.size == 0 or float(np.abs(a).max()) < _WEIGHT_LIMIT)


def _prefixed(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _scalar(arrays: dict, key: str, kind: type, path: Path) -> Any:
    value = np.asarray(arrays[key])
    if value.shape != () or value.dtype.kind not in ("iu" if kind is int else "f"):
        raise CheckpointError(f"{path}: {key!r} must be a single {kind.__name__}, got {value.dtype} {value.shape}")
    if kind is int and value < 0:
        raise CheckpointError(f"{path}: {key!r} must be >= 0, got {value}")
    return kind(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_count(v: Any) -> bool:
    return _is_int(v) and v > 0


def _is_positive(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v) and v > 0


# config field -> (test, what it must be); the command line's own limits. One table for Config(...), Run.start,
# Run.save and Run.load, so a run can only save what its loader accepts.
_FIELD_RULES = {
    "cell": (lambda v: isinstance(v, str) and v.isidentifier(), f"one of {CELLS} or a cell's class name"),
    "cell_input": (lambda v: v in CELL_INPUTS, f"one of {CELL_INPUTS}"),
    "optim": (lambda v: isinstance(v, str) and v in OPTIMIZERS, f"one of {tuple(OPTIMIZERS)}"),
    **{k: (_is_count, "a positive integer") for k in ("hidden", "seq_len", "batch", "eval_every",
                                                      "sample_every", "checkpoint_every")},
    "lr": (_is_positive, "a finite positive number"),
    "clip": (_is_positive, "a finite positive number"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2 ** 128, "an integer from 0 to 2**128 - 1"),
    "val_fraction": (lambda v: _is_positive(v) and v < 1, "a number between 0 and 1"),
    "text": (lambda v: v is None or isinstance(v, str), "a path as a str, or None"),
    "checkpoint": (lambda v: isinstance(v, str) and _is_setting(v), "k, sqrt, slots=m or empty"),
    "text_sha256": (lambda v: v == "" or isinstance(v, str) and len(v) == 64 and set(v) <= set("0123456789abcdef"),
                    "a SHA-256 hex digest (64 lowercase hex digits)"),
}


def _config_problem(values: dict) -> Optional[str]:
    """What is wrong with a config's fields (name -> value), in a few words; None when nothing is."""
    for name, (test, want) in _FIELD_RULES.items():
        if name in values and not test(values[name]):
            return f"{name} {values[name]!r} is not {want}"
    if values.get("cell") != "lstm" and values.get("cell_input") != "tanh":
        return f"cell_input {values.get('cell_input')!r} is for an lstm, not a {values.get('cell')}"
    return None


def _check_run_config(config: Config) -> None:
    """The config a run starts, saves or loads: Config's own checks again (fields may have been assigned
    since), and the text's fingerprint, which Run.start fills in."""
    problem = _config_problem(asdict(config))
    if problem is None and not config.text_sha256:
        problem = "text_sha256 is empty (Run.start fills it in from the text)"
    if problem:
        raise ValueError(f"Run: config {problem}")


def _is_setting(text: str) -> bool:
    try:
        checkpoint_setting(text)
    except ValueError:
        return False
    return True


def _config_from(stored: Any, path: Path, user_cell: bool = False) -> Config:
    """Config from the checkpoint's JSON, each field checked as strictly as the command line checks it."""
    if not isinstance(stored, dict) or stored.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format (expected format {_FORMAT})")
    if "cell_input" not in stored:  # written before the option existed
        stored = {**stored, "cell_input": Config.cell_input}
    if "checkpoint" not in stored:  # written before recomputation existed
        stored = {**stored, "checkpoint": Config.checkpoint}
    defaults = {f.name: f.default for f in fields(Config)}
    if set(stored) - {"format"} != set(defaults):
        raise CheckpointError(f"{path}: config must have the fields {', '.join(sorted(defaults))}")
    problem = _config_problem(stored)
    if problem is None and not stored["text_sha256"]:
        problem = "text_sha256 '' is not a SHA-256 hex digest"
    if problem:
        raise CheckpointError(f"{path} is corrupt: its config's {problem}")
    config = Config(**{k: stored[k] for k in defaults})
    if config.cell not in CELLS and not user_cell:
        raise CheckpointError(f"{path} holds a CharRNN with a user-written {config.cell} cell; load it in "
                              f"Python with train.Run.load(path, cell={config.cell}), or sample it with "
                              f"tinygrad-rnn sample {path} --cell-module MODULE:{config.cell}")
    return config


def _state_from(stored: dict, config: Config, step: int, path: Path, what: str) -> Any:
    """The carried hidden state: none before the first step, else h (rnn, gru) or (h, s) (lstm) of shape (B, H);
    a user-written cell's state is whatever Tensor or tuple of Tensors it saved, each with B rows."""
    user = config.cell not in CELLS
    want = 0 if step == 0 else max(len(stored), 1) if user else 2 if config.cell == "lstm" else 1
    shape = (config.batch, config.hidden)
    arrays = [stored.get(str(i)) for i in range(want)]
    if set(stored) != {str(i) for i in range(want)} or any(
            (a.shape[:1] != shape[:1] if user else a.shape != shape) or a.dtype != np.float64 for a in arrays):
        raise CheckpointError(f"{path} does not fit {what}: the carried state must be {want} "
                              f"float64 array(s) of shape {shape}")
    if not all(np.isfinite(a).all() for a in arrays) or want and not user and (np.abs(arrays[0]) > 1).any():
        raise CheckpointError(f"{path} is corrupt: its carried state holds NaN, inf or a hidden value "
                              "outside [-1, 1] (h is a tanh)")
    if want == 0:
        return None
    return Tensor(arrays[0].copy()) if want == 1 else tuple(Tensor(a.copy()) for a in arrays)


class TrainingDiverged(ArithmeticError):
    """The training loss stopped being a number, or grew past any recovery (over 100 times a uniform
    guess's log V nats per character): `fit` stops before anything of that state is saved."""

    def __init__(self, step: int, loss: float, uniform: float) -> None:
        why = "" if not math.isfinite(loss) else f", over 100 times the {uniform:.3g} of a uniform guess"
        super().__init__(f"training diverged: the loss became {loss:.4g} nats/char at step {step}{why}")
        self.step, self.loss = step, loss


@dataclass
class FitResult:
    """How `fit` ended: at `step`, `stopped` early by `should_stop`, and the held-out `score`
    (evaluate's dict) after the last step, None when stopped."""
    step: int
    stopped: bool
    score: Optional[dict]


def fit(run: Run, text: str, steps: int, *, checkpoint: Union[str, PathLike, None] = None,
        on_step: Optional[Callable[[Run, float, float], None]] = None,
        on_eval: Optional[Callable[[Run, dict], None]] = None,
        on_sample: Optional[Callable[[Run, str, str], None]] = None,
        on_checkpoint: Optional[Callable[[Run, Path], None]] = None,
        should_stop: Optional[Callable[[], bool]] = None,
        sample_chars: int = 200, temperature: float = 0.8) -> FitResult:
    """Train `run` on `text` until run.step == steps (a resumed run counts its earlier steps).

    Every config.eval_every steps: on_eval(run, evaluate(...) of the held-out text); every
    config.sample_every: on_sample(run, prime, sample) with a `sample_chars`-character sample after a
    fixed held-out prime; every config.checkpoint_every, at the end and when stopped: run.save(checkpoint)
    then on_checkpoint(run, checkpoint) (nothing is saved without `checkpoint`). on_step(run, loss,
    chars_per_second) follows every step, and should_stop() is asked after it: True saves and returns.
    A loss that is not a number, or over 100 times log V (a uniform guess's), raises TrainingDiverged before
    that state is saved or evaluated.
    """
    c = run.config
    _check_run_config(c)  # fields assigned since Run.start (eval_every = 0) are refused here, not mid-run
    _check_training_memory(c, run.vocab.size)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    train_ids, val_ids = run.split(text)
    chars_per_step = c.seq_len * c.batch
    # the same prime for every sample, so successive samples show what the model has learned;
    # cut after a space, so the sample starts a word
    prime = run.vocab.decode(val_ids[:32])
    prime = prime[:prime.rfind(" ") + 1] or prime

    def save() -> None:
        if checkpoint is not None:
            run.save(checkpoint)
            if on_checkpoint is not None:
                on_checkpoint(run, checkpoint)

    if checkpoint is not None:  # a name too long, or a checkpoint that is the training text: before training
        check_writable(checkpoint)
        if c.text is not None and Path(c.text).exists() and _same_file(checkpoint, Path(c.text)):
            raise CheckpointError(f"cannot write checkpoint {checkpoint}: it is the training text {c.text}")
    with writer_lock(checkpoint) if checkpoint is not None else contextlib.nullcontext(), \
            _blas.one_thread(c.hidden <= _blas.SMALL_HIDDEN):
        # a model that puts V^-100 on the right character on average is lost; lr 1e300 gets there in a step
        uniform = math.log(max(run.vocab.size, 2))
        limit = 100 * uniform
        busy, done = 0.0, 0  # time spent in train_step and steps taken in this call, for chars/s
        while run.step < steps:
            started = time.perf_counter()
            loss = run.train_step(train_ids)
            busy, done = busy + time.perf_counter() - started, done + 1
            if not loss <= limit:  # NaN too
                raise TrainingDiverged(run.step, loss, uniform)
            if on_step is not None:
                on_step(run, loss, done * chars_per_step / busy)
            if should_stop is not None and should_stop():
                save()
                return FitResult(run.step, True, None)
            if run.step % c.eval_every == 0 and run.step < steps and on_eval is not None:
                on_eval(run, evaluate(run.model, val_ids))
            if run.step % c.sample_every == 0 and on_sample is not None:  # run.rng draws samples only
                on_sample(run, prime, "".join(generate(run.model, run.vocab, run.unigram, prime, sample_chars,
                                                       temperature, run.rng)))
            if run.step % c.checkpoint_every == 0 and run.step < steps:
                save()
        save()
        return FitResult(run.step, False, evaluate(run.model, val_ids))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def evaluate(model: nn.CharRNN, ids: np.ndarray, streams: int = 64, chunk: int = 64) -> dict:
    """Mean cross-entropy of ids[1:] given ids[:-1] -> {"nats_per_char", "bits_per_char", "perplexity"}.

    The text is cut into `streams` contiguous pieces run side by side (state carried within each piece,
    zero at its start), so every target is scored exactly once, as data.ngram_baselines scores them.
    """
    with _blas.one_thread(getattr(model, "hidden_size", 0) <= _blas.SMALL_HIDDEN):
        return _evaluate(model, ids, streams, chunk)


def _evaluate(model: nn.CharRNN, ids: np.ndarray, streams: int, chunk: int) -> dict:
    x, y = np.asarray(ids[:-1]), np.asarray(ids[1:])
    n = x.shape[0]
    streams = max(1, min(streams, n))
    length = -(-n // streams)                         # ceil: the last piece is padded, then masked
    pad = streams * length - n

    def grid(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros(pad, dtype=a.dtype)]).reshape(streams, length).T  # (L, S)

    xs, ys = grid(x), grid(y)
    mask = grid(np.ones(n))
    total, state = 0.0, None
    with no_grad():
        for t in range(0, length, chunk):
            logits, state = model(xs[t:t + chunk], state)                       # (T, S, V)
            logp = logits.log_softmax(axis=-1).data                             # (T, S, V)
            picked = np.take_along_axis(logp, ys[t:t + chunk, :, None], axis=-1)[..., 0]
            total -= float((picked * mask[t:t + chunk]).sum())
    nats = total / n
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2), "perplexity": perplexity(nats)}


def perplexity(nats: float) -> float:
    """exp(nats per character), inf rather than an OverflowError for a diverged model."""
    return math.exp(nats) if nats < 700 else math.inf


def generate(model: nn.CharRNN, vocab: Vocab, unigram: np.ndarray, prime: str, length: int,
             temperature: float, rng: np.random.Generator) -> Iterator[str]:
    """Yield `length` characters sampled one at a time after reading `prime`.

    Each is drawn from softmax(logits / temperature); with an empty prime the first is drawn from the
    training text's character frequencies (add-one smoothed) at the same temperature.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if prime:
        scores, state = _next_scores(model, vocab.encode(prime), None)            # after len(prime) steps
    else:
        scores, state = np.log(np.asarray(unigram, dtype=np.float64) + 1), None
    for _ in range(length):
        with np.errstate(over="ignore"):
            z = scores / temperature
        if not np.isfinite(z).all():  # so cold it overflows: the limit is the most likely character
            z = np.where(scores == scores.max(), 0.0, -np.inf)
        p = np.exp(z - z.max())
        c = int(rng.choice(vocab.size, p=p / p.sum()))
        yield vocab.chars[c]  # outside no_grad and errstate: they would hold in the caller's code meanwhile
        scores, state = _next_scores(model, np.array([c]), state)


def _next_scores(model: nn.CharRNN, idx: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
    """The logits (V,) for the character after idx, and the state; no graph, and no overflow warnings
    from absurdly large weights (their inf logits still give the likeliest character)."""
    with no_grad(), np.errstate(over="ignore", invalid="ignore"):
        logits, state = model(idx, state)
    scores = logits.data[-1]
    if np.isnan(scores).any():
        raise ValueError("generate: the model's outputs are NaN (its weights overflow), so it cannot be sampled")
    return scores, state
