"""Character-level data for `train` and `sample`: the vocabulary, the shipped corpus (see
data/SOURCE.md), the held-out split, truncated-BPTT batches over B parallel streams, and the
add-one smoothed unigram/bigram baselines of the Oxford lecture notes. NumPy only: no engine import.
"""
from __future__ import annotations

import gzip
import math
import zlib
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np

__all__ = ["DataError", "Vocab", "load_text", "split", "get_batch", "iter_batches",
           "ngram_baselines", "NGram"]

_CORPUS = "data/corpus.txt.gz"
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """Unusable text or ids; the message is one line naming the file or value at fault."""


class Vocab:
    """Distinct characters; character `chars[i]` has id i. sort=True (the default) sorts them by code point;
    sort=False keeps them in order of first appearance, so Vocab("helo", sort=False) is the documents'
    one-hot order h, e, l, o (h = (1, 0, 0, 0))."""

    def __init__(self, chars: Iterable[str], sort: bool = True):
        if not isinstance(sort, bool):
            raise TypeError(f"Vocab: sort must be True or False, got {sort!r}")
        chars = sorted(set(chars)) if sort else list(dict.fromkeys(chars))
        if not chars:
            raise DataError("vocabulary is empty: the text has no characters")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise DataError("vocabulary entries must be single characters")
        self.chars = "".join(chars)
        # Code points sorted, with each one's id beside it, so encode is one searchsorted in any order.
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(codes, kind="stable")
        self._codes = codes[self._order]

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The vocabulary of every character that occurs in `text`."""
        return cls(text)

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, chars={self.chars!r})"

    def encode(self, text: str) -> np.ndarray:
        """str of length N -> int64 ids (N,); a character outside the vocabulary is a DataError."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, codes)
        known = (ids < self.size) & (self._codes[np.minimum(ids, self.size - 1)] == codes)
        if not known.all():
            bad = text[int(np.argmin(known))]
            raise DataError(f"character {bad!r} is not in the vocabulary of {self.size} characters")
        return self._order[ids].astype(np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        """ids (N,) -> str of length N."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise DataError(f"id out of range for a vocabulary of {self.size} characters")
        return "".join([self.chars[i] for i in ids.tolist()])

    def to_array(self) -> np.ndarray:
        """The characters as a unicode array (V,), storable without pickle."""
        return np.array(list(self.chars), dtype="<U1")

    @classmethod
    def from_array(cls, array: Union[np.ndarray, list]) -> "Vocab":
        """Inverse of to_array; refuses an array that is not sorted distinct characters."""
        chars = [str(c) for c in np.asarray(array).reshape(-1).tolist()]
        vocab = cls(chars)
        # Ids are positions: a reordered list would silently scramble a trained model.
        if list(vocab.chars) != chars:
            raise DataError("stored vocabulary is not a sorted list of distinct characters")
        return vocab


def load_text(path: Optional[Union[str, PathLike]] = None) -> str:
    """The UTF-8 text of `path` (gzip allowed), or the shipped corpus when None.

    Line endings become `\\n`; a missing, empty, binary or non-UTF-8 file is a DataError.
    """
    if path is None:
        data = resources.files("tinygrad_rnn").joinpath(_CORPUS).read_bytes()
        return _decode(data, _CORPUS)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a text file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return _decode(data, str(path))


def _decode(data: bytes, name: str) -> str:
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{name}: corrupt gzip file ({e})") from None
    if not data:
        raise DataError(f"{name}: file is empty")
    if b"\x00" in data:
        raise DataError(f"{name}: looks binary (contains NUL bytes); expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} "
                        f"at offset {e.start})") from None
    if not text.strip():
        raise DataError(f"{name}: contains only whitespace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, val): the last `val_fraction` of the text is held out; both keep >= 2 characters."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = max(2, int(round(len(text) * val_fraction)))
    if len(text) - n_val < 2:
        raise DataError(f"text of {len(text)} characters is too short to split off a held-out part")
    return text[:-n_val], text[-n_val:]


def get_batch(ids: np.ndarray, step: int, seq_len: int,
              batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk `step` of truncated BPTT: inputs x (T, B) and targets y (T, B), y[t] = next char.

    The N ids are cut into B contiguous streams starting at b * (N // B). Stream b reads on
    through the following streams and wraps from the end of the corpus to its start, so chunk
    k+1 continues chunk k exactly and the hidden state can be carried between them.
    """
    ids = np.asarray(ids)
    n = ids.shape[0]
    if seq_len < 1 or batch_size < 1:
        raise DataError(f"seq_len and batch_size must be >= 1, got {seq_len} and {batch_size}")
    if step < 0:
        raise DataError(f"step must be >= 0, got {step}")
    if n < max(2, batch_size):
        raise DataError(f"{n} characters are too few for {batch_size} streams")
    starts = np.arange(batch_size) * (n // batch_size)               # (B,)
    pos = starts[None, :] + step * seq_len + np.arange(seq_len)[:, None]  # (T, B)
    return ids[pos % n], ids[(pos + 1) % n]


def iter_batches(ids: np.ndarray, seq_len: int, batch_size: int,
                 start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """get_batch(ids, k, ...) for k = start, start + 1, ... without end."""
    step = start
    while True:
        yield get_batch(ids, step, seq_len, batch_size)
        step += 1


def ngram_baselines(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> dict:
    """Add-one smoothed unigram and bigram MLE scored on val_ids[1:] (the targets a model fed
    val_ids[:-1] predicts): {"unigram"|"bigram": {"nats_per_char", "bits_per_char", "perplexity"}}.

    unigram p(c) = (n(c) + 1) / (N + V);  bigram p(c | a) = (n(a, c) + 1) / (n(a, .) + V),
    with counts n over train_ids (N,).
    """
    train = np.asarray(train_ids, dtype=np.int64).reshape(-1)
    val = np.asarray(val_ids, dtype=np.int64).reshape(-1)
    if train.size < 2 or val.size < 2:
        raise DataError("baselines need at least 2 training and 2 held-out characters")
    for name, a in (("train_ids", train), ("val_ids", val)):
        if a.min() < 0 or a.max() >= vocab_size:
            raise DataError(f"{name} has ids outside [0, {vocab_size})")
    V = vocab_size
    targets, contexts = val[1:], val[:-1]

    unigram = np.bincount(train, minlength=V)
    p_uni = (unigram[targets] + 1) / (train.size + V)

    # Count only the pairs that occur, not a V x V table: a CJK text has thousands of characters.
    keys, counts = np.unique(train[:-1] * V + train[1:], return_counts=True)
    wanted = contexts * V + targets
    at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    pair = np.where(keys[at] == wanted, counts[at], 0)
    context = np.bincount(train[:-1], minlength=V)
    p_bi = (pair + 1) / (context[contexts] + V)

    return {"unigram": _scores(p_uni), "bigram": _scores(p_bi)}


def _scores(p: np.ndarray) -> dict:
    nats = float(-np.log(p).mean())
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2),
            "perplexity": math.exp(nats)}


class NGram:
    """A count-based character n-gram model: p(c | a) = (n(a c) + k) / (n(a) + k V) for the order-1
    characters a before c, with counts n over `ids` and additive smoothing k (0: maximum likelihood).

    With k = 0 an n-gram never seen in training has probability 0 (and so does anything after a
    context never seen), which is why most long strings get probability zero from counts alone.
    """

    def __init__(self, ids: np.ndarray, vocab_size: int, order: int = 3, smoothing: float = 0.0):
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise DataError(f"NGram: order must be a positive int, got {order!r}")
        if not smoothing >= 0:
            raise DataError(f"NGram: smoothing must be >= 0, got {smoothing}")
        if ids.size < order:
            raise DataError(f"NGram: {ids.size} ids are too few for order {order}")
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise DataError(f"NGram: ids outside [0, {vocab_size})")
        if order * math.log2(max(vocab_size, 2)) > 62:
            raise DataError(f"NGram: order {order} with {vocab_size} characters is too large to count")
        self.order, self.vocab_size, self.smoothing = int(order), int(vocab_size), float(smoothing)
        # Count only the n-grams that occur (sorted keys in base V), never a V**order table.
        keys = self._keys(ids)
        self._grams, self._gram_counts = np.unique(keys, return_counts=True)
        # n(a) = number of n-grams that start with a, so p(. | a) sums to 1 over c
        self._contexts, self._context_counts = np.unique(keys // vocab_size, return_counts=True)

    def _keys(self, ids: np.ndarray) -> np.ndarray:
        windows = np.lib.stride_tricks.sliding_window_view(ids, self.order)  # (N - n + 1, n)
        return windows @ (self.vocab_size ** np.arange(self.order - 1, -1, -1, dtype=np.int64))

    @staticmethod
    def _lookup(keys: np.ndarray, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
        return np.where(keys[at] == wanted, counts[at], 0)

    def count(self, gram: Iterable[int]) -> int:
        """n(gram) for a gram of `order` ids, or n(context) for one of order - 1 ids."""
        gram = np.asarray(list(gram), dtype=np.int64)
        if gram.size not in (self.order, self.order - 1):
            raise DataError(f"NGram.count: want {self.order} or {self.order - 1} ids, got {gram.size}")
        key = np.array([gram @ (self.vocab_size ** np.arange(gram.size - 1, -1, -1, dtype=np.int64))])
        if gram.size == self.order:
            return int(self._lookup(self._grams, self._gram_counts, key)[0])
        return int(self._lookup(self._contexts, self._context_counts, key)[0])

    def __len__(self) -> int:
        """How many distinct n-grams occur in the training ids."""
        return int(self._grams.size)

    def most_common(self, k: int = 5) -> list:
        """The k most frequent n-grams as (tuple of ids, count), most frequent first."""
        top = np.argsort(-self._gram_counts, kind="stable")[:k]
        V, n = self.vocab_size, self.order
        return [(tuple(int(self._grams[i] // V ** j % V) for j in range(n - 1, -1, -1)),
                 int(self._gram_counts[i])) for i in top]

    def probs(self, ids: np.ndarray, start: Optional[int] = None) -> np.ndarray:
        """p(ids[t] | ids[t-order+1 : t]) for t = start ... N-1 (start defaults to order - 1) -> (N - start,)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        start = self.order - 1 if start is None else start
        if start < self.order - 1 or start >= ids.size:
            raise DataError(f"NGram.probs: start must lie in [{self.order - 1}, {ids.size}), got {start}")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise DataError(f"NGram.probs: ids outside [0, {self.vocab_size})")
        keys = self._keys(ids[start - self.order + 1:])
        gram = self._lookup(self._grams, self._gram_counts, keys)
        context = self._lookup(self._contexts, self._context_counts, keys // self.vocab_size)
        k = self.smoothing
        with np.errstate(divide="ignore", invalid="ignore"):
            p = (gram + k) / (context + k * self.vocab_size)
        return np.where(context + k > 0, p, 0.0)  # an unseen context under maximum likelihood: p = 0

    def scores(self, ids: np.ndarray, start: Optional[int] = None) -> dict:
        """{"bits_per_char", "perplexity" (= 2**bits), "zero_fraction"} over the targets of probs;
        any zero probability makes bits and perplexity infinite."""
        p = self.probs(ids, start)
        with np.errstate(divide="ignore"):
            bits = float(-np.log2(p).mean())
        return {"bits_per_char": bits, "perplexity": 2.0 ** bits if np.isfinite(bits) else math.inf,
                "zero_fraction": float((p == 0).mean())}
