"""Vocabulary, corpus loading and its errors, the held-out split, truncated-BPTT batches and
the n-gram baselines of tinygrad_rnn.data."""
import collections
import gzip
import itertools
import math
import re

import numpy as np
import pytest

from tinygrad_rnn.data import (DataError, Vocab, get_batch, iter_batches, load_text,
                               NGram, ngram_baselines, split)


# --- vocabulary --------------------------------------------------------------------------

def test_vocab_is_sorted_and_round_trips():
    vocab = Vocab.from_text("hello")
    assert vocab.chars == "ehlo" and vocab.size == 4 and len(vocab) == 4
    ids = vocab.encode("hello")
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, [1, 0, 2, 2, 3])
    assert vocab.decode(ids) == "hello"
    assert vocab.encode("").shape == (0,) and vocab.decode([]) == ""


def test_vocab_sort_false_keeps_the_documents_one_hot_order_h_e_l_o():
    vocab = Vocab("hello", sort=False)                   # the FAU lecture: h = 1 0 0 0
    assert vocab.chars == "helo" and vocab == Vocab("helo", sort=False) != Vocab("hello")
    assert vocab.encode("hello").tolist() == [0, 1, 2, 2, 3]
    assert np.eye(4)[vocab.encode("h")].tolist() == [[1, 0, 0, 0]]
    assert vocab.decode(vocab.encode("olleh")) == "olleh"
    mixed = Vocab("zé😀a", sort=False)                   # any order and any code point round-trips
    assert mixed.chars == "zé😀a" and mixed.encode("aé😀z").tolist() == [3, 1, 2, 0]
    with pytest.raises(DataError, match=r"^character 'x' is not in the vocabulary of 4 characters$"):
        vocab.encode("hex")
    with pytest.raises(TypeError, match=r"^Vocab: sort must be True or False, got 'no'$"):
        Vocab("hello", sort="no")


def test_vocab_handles_non_ascii_and_astral_characters():
    text = "naïve café — 🙂 ok\n"
    vocab = Vocab.from_text(text)
    assert list(vocab.chars) == sorted(set(text))
    assert vocab.decode(vocab.encode(text)) == text


def test_vocab_rejects_unknown_characters_and_ids():
    vocab = Vocab.from_text("abc")
    with pytest.raises(DataError, match="character 'z' is not in the vocabulary of 3"):
        vocab.encode("abz")
    with pytest.raises(DataError, match="out of range"):
        vocab.decode([0, 3])
    with pytest.raises(DataError, match="out of range"):
        vocab.decode([-1])


def test_vocab_array_round_trip_needs_no_pickle(tmp_path):
    vocab = Vocab.from_text("To be, or not to be: é🙂\n")
    np.savez(tmp_path / "v.npz", vocab=vocab.to_array())
    with np.load(tmp_path / "v.npz", allow_pickle=False) as f:
        stored = f["vocab"]
    assert stored.dtype.kind == "U" and stored.shape == (vocab.size,)
    assert Vocab.from_array(stored) == vocab
    assert Vocab.from_array(list(vocab.chars)) == vocab


def test_vocab_from_array_refuses_a_reordered_list():
    with pytest.raises(DataError, match="not a sorted list of distinct characters"):
        Vocab.from_array(np.array(["b", "a"]))
    with pytest.raises(DataError, match="not a sorted list of distinct characters"):
        Vocab.from_array(["a", "a", "b"])
    with pytest.raises(DataError, match="single characters"):
        Vocab.from_array(["ab", "c"])


# --- the shipped corpus ------------------------------------------------------------------

def test_default_corpus_is_english_prose_of_the_promised_size():
    text = load_text()
    size = len(text.encode("utf-8"))
    assert 200_000 <= size <= 2_000_000
    assert "\r" not in text and "\x00" not in text
    words = re.findall(r"[a-z]+", text.lower())
    top = [w for w, _ in collections.Counter(words).most_common(10)]
    assert {"the", "and", "of", "to"} <= set(top)
    # Prose: mostly letters and spaces, in sentences, not a word list or a table.
    letters = sum(c.isalpha() or c == " " for c in text)
    assert letters / len(text) > 0.9
    assert text.count(". ") > 2_000
    assert "It is a truth universally acknowledged" in text


def test_bigram_beats_unigram_on_the_default_corpus():
    text = load_text()
    vocab = Vocab.from_text(text)
    train, val = split(text)
    scores = ngram_baselines(vocab.encode(train), vocab.encode(val), vocab.size)
    uni, bi = scores["unigram"]["bits_per_char"], scores["bigram"]["bits_per_char"]
    assert bi < uni < math.log2(vocab.size)
    assert 2.5 < bi < 4.0 and 4.0 < uni < 5.0  # the usual values for English characters


# --- loading files and their errors ------------------------------------------------------

def test_load_text_reads_utf8_and_normalises_line_endings(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffone\r\ntwo\rthree é\n".encode("utf-8"))
    assert load_text(path) == "one\ntwo\nthree é\n"
    assert load_text(str(path)) == "one\ntwo\nthree é\n"


def test_load_text_reads_gzip(tmp_path):
    path = tmp_path / "t.txt.gz"
    path.write_bytes(gzip.compress("hello world\n".encode("utf-8")))
    assert load_text(path) == "hello world\n"


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    (b"", "file is empty"),
    (b" \n\t\n", "contains only whitespace"),
    (b"abc\x00\x01\x02def", "looks binary (contains NUL bytes)"),
    (b"caf\xe9 au lait", "not UTF-8 text (invalid byte 0xe9 at offset 3)"),
    (b"\x1f\x8bnot really gzip", "corrupt gzip file"),
])
def test_load_text_errors_are_one_line_naming_path_and_problem(tmp_path, content, problem):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_text(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and problem in message
    assert isinstance(err.value, ValueError)


def test_load_text_refuses_a_directory(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_text(tmp_path)


# --- held-out split ----------------------------------------------------------------------

def test_split_holds_out_the_end():
    assert split("abcdefghij", 0.2) == ("abcdefgh", "ij")
    train, val = split("x" * 1000)
    assert len(train) == 900 and len(val) == 100
    # At least two characters stay on each side: one input and one target.
    assert split("abcde", 0.01) == ("abc", "de")


def test_split_errors():
    with pytest.raises(DataError, match="too short"):
        split("abc")
    with pytest.raises(DataError, match="between 0 and 1"):
        split("abcdefgh", 0.0)
    with pytest.raises(DataError, match="between 0 and 1"):
        split("abcdefgh", 1.0)


# --- truncated-BPTT batches --------------------------------------------------------------

def test_batch_shapes_and_exact_shifted_targets():
    ids = np.arange(10)
    x, y = get_batch(ids, 0, seq_len=3, batch_size=2)
    assert x.shape == y.shape == (3, 2)
    # Stream 0 starts at 0, stream 1 at 10 // 2 = 5; columns are streams, rows time.
    np.testing.assert_array_equal(x, [[0, 5], [1, 6], [2, 7]])
    np.testing.assert_array_equal(y, [[1, 6], [2, 7], [3, 8]])
    x, y = get_batch(ids, 1, seq_len=3, batch_size=2)
    np.testing.assert_array_equal(x, [[3, 8], [4, 9], [5, 0]])
    np.testing.assert_array_equal(y, [[4, 9], [5, 0], [6, 1]])


def test_batches_wrap_around_the_end_of_the_corpus():
    ids = np.arange(10)
    x, y = get_batch(ids, 3, seq_len=3, batch_size=2)
    np.testing.assert_array_equal(x, [[9, 4], [0, 5], [1, 6]])
    np.testing.assert_array_equal(y, [[0, 5], [1, 6], [2, 7]])
    # Far beyond the corpus length the pattern just repeats: step 10 reads position 30 = 0.
    x, _ = get_batch(ids, 10, seq_len=3, batch_size=2)
    np.testing.assert_array_equal(x[0], [0, 5])


def test_consecutive_chunks_continue_each_stream():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=101)
    T, B = 4, 3
    chunks = list(itertools.islice(iter_batches(ids, T, B), 60))  # 240 steps > 101: wraps
    xs = np.concatenate([x for x, _ in chunks])  # (60 T, B)
    ys = np.concatenate([y for _, y in chunks])
    for b in range(B):
        expected = ids[(b * (101 // B) + np.arange(60 * T)) % 101]
        np.testing.assert_array_equal(xs[:, b], expected)
    # A target is the next chunk's input, also across chunk boundaries: the carried hidden
    # state has read exactly the characters before each input.
    np.testing.assert_array_equal(ys[:-1], xs[1:])


def test_chunk_k_is_the_same_iterated_indexed_or_resumed():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=997)
    T, B = 25, 4
    iterated = list(itertools.islice(iter_batches(ids, T, B), 30))
    resumed = list(itertools.islice(iter_batches(ids, T, B, start=17), 13))
    for k in range(30):
        x, y = get_batch(ids, k, T, B)
        np.testing.assert_array_equal(iterated[k][0], x)
        np.testing.assert_array_equal(iterated[k][1], y)
        if k >= 17:
            np.testing.assert_array_equal(resumed[k - 17][0], x)
            np.testing.assert_array_equal(resumed[k - 17][1], y)


def test_batch_errors():
    ids = np.arange(5)
    with pytest.raises(DataError, match="too few for 6 streams"):
        get_batch(ids, 0, 2, 6)
    with pytest.raises(DataError, match=">= 1"):
        get_batch(ids, 0, 0, 1)
    with pytest.raises(DataError, match="step must be >= 0"):
        get_batch(ids, -1, 2, 1)


# --- n-gram baselines --------------------------------------------------------------------

def test_ngram_baselines_match_a_hand_computed_example():
    # V = 3, train 0 1 0 1 2, val 0 1 1: the targets scored are val[1:] = 1 1.
    # unigram: n(1) = 2 of N = 5, so p(1) = (2 + 1) / (5 + 3) = 3/8 for both targets.
    # bigram: n(0,1) = 2, n(0,.) = 2 -> p(1|0) = 3/5;  n(1,1) = 0, n(1,.) = 2 -> p(1|1) = 1/5.
    scores = ngram_baselines(np.array([0, 1, 0, 1, 2]), np.array([0, 1, 1]), 3)
    uni, bi = scores["unigram"], scores["bigram"]
    assert uni["nats_per_char"] == pytest.approx(math.log(8 / 3))
    assert uni["perplexity"] == pytest.approx(8 / 3)
    assert uni["bits_per_char"] == pytest.approx(math.log2(8 / 3))
    assert bi["nats_per_char"] == pytest.approx(-(math.log(3 / 5) + math.log(1 / 5)) / 2)
    assert bi["perplexity"] == pytest.approx(5 / math.sqrt(3))
    assert bi["bits_per_char"] == pytest.approx(bi["nats_per_char"] / math.log(2))


def test_ngram_baselines_errors():
    with pytest.raises(DataError, match=r"val_ids has ids outside \[0, 3\)"):
        ngram_baselines(np.array([0, 1, 2]), np.array([0, 3]), 3)
    with pytest.raises(DataError, match="at least 2"):
        ngram_baselines(np.array([0, 1, 2]), np.array([0]), 3)


def test_ngram_counts_and_maximum_likelihood_by_hand():
    ids = np.array([0, 1, 0, 1, 2, 0, 1])                   # bigrams 01 10 01 12 20 01
    m = NGram(ids, 3, order=2)
    assert (m.count([0, 1]), m.count([1, 2]), m.count([2, 2]), m.count([0]), len(m)) == (3, 1, 0, 3, 4)
    assert m.most_common(2) == [((0, 1), 3), ((1, 0), 1)]
    np.testing.assert_allclose(m.probs(np.array([0, 1, 2, 2])), [3 / 3, 1 / 2, 0 / 1])
    scores = m.scores(np.array([0, 1, 0, 1, 2, 2]))
    assert scores["bits_per_char"] == np.inf and scores["perplexity"] == np.inf
    np.testing.assert_allclose(scores["zero_fraction"], 1 / 5)
    np.testing.assert_allclose(m.scores(np.array([0, 1, 2, 0]))["bits_per_char"], (0 + 1 + 0) / 3)
    trigram = NGram(ids, 3, order=3)                        # 010 101 012 120 201
    assert trigram.count([0, 1, 0]) == 1 and trigram.count([0, 1]) == 2
    np.testing.assert_allclose(trigram.probs(np.array([0, 1, 2, 1, 1])), [1 / 2, 0.0, 0.0])  # 12 then 1: unseen


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ngram_probabilities_sum_to_one_in_every_seen_context(order):
    rng = np.random.default_rng(order)
    V = 4
    ids = rng.integers(0, V, 300)
    for k in (0.0, 0.5):
        m = NGram(ids, V, order=order, smoothing=k)
        for start in range(order - 1, 40):
            context = ids[start - order + 1:start]
            total = sum(m.probs(np.concatenate([context, [c]]), start=order - 1)[0] for c in range(V))
            np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_add_one_ngram_equals_the_baselines():
    vocab = Vocab(load_text())
    train, val = split(load_text()[:20000])
    train, val = vocab.encode(train), vocab.encode(val)
    base = ngram_baselines(train, val, vocab.size)
    for order, name in [(1, "unigram"), (2, "bigram")]:
        scores = NGram(train, vocab.size, order=order, smoothing=1.0).scores(val, start=1)
        np.testing.assert_allclose(scores["bits_per_char"], base[name]["bits_per_char"], rtol=1e-12)
        np.testing.assert_allclose(scores["perplexity"], 2 ** base[name]["bits_per_char"], rtol=1e-12)


def test_ngram_errors():
    for kwargs, match in [(dict(order=0), "order must be a positive int"), (dict(smoothing=-1.0), "smoothing"),
                          (dict(order=9), "too few"), (dict(order=True), "order")]:
        with pytest.raises(DataError, match=match):
            NGram(np.arange(5) % 3, 3, **kwargs)
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        NGram(np.array([0, 3, 1]), 3, order=2)
    m = NGram(np.arange(6) % 3, 3, order=3)
    with pytest.raises(DataError, match=r"start must lie in \[2, 4\)"):
        m.probs(np.array([0, 1, 2, 0]), start=1)
    with pytest.raises(DataError, match="want 3 or 2 ids"):
        m.count([0])
    with pytest.raises(DataError, match="too large to count"):
        NGram(np.arange(20) % 3, 100000, order=5)
