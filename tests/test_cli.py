"""The `tinygrad-rnn` command run as a user runs it: subprocesses of `python -m tinygrad_rnn`, checked for
exit codes, exact one-line errors, files written and the numbers printed. Small models on tiny texts."""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from tinygrad_rnn import cli

# One BLAS thread: these matrices are tiny, and threads only fight over a shared machine's cores.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
SMALL = ["--hidden", "12", "--seq-len", "8", "--batch", "3", "--eval-every", "10", "--sample-every", "20"]
ERROR = re.compile(r"^tinygrad-rnn: error: [^\n]+\n$")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def run(*args, cwd, env=ENV, timeout=60):
    """Run the command; stdout and stderr decoded, and never a traceback in either."""
    done = subprocess.run([sys.executable, "-m", "tinygrad_rnn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout)
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert "Traceback" not in out + err, err
    return done.returncode, out, err


def fails(code, *args, cwd, says):
    """Assert the command exits with `code` and exactly one stderr line containing `says`."""
    rc, out, err = run(*args, cwd=cwd)
    assert rc == code, (rc, err)
    assert ERROR.match(err), err
    assert says in err, err
    return err


def text_file(path, seed=0, words=600):
    rng = np.random.default_rng(seed)
    vocab = "the cat sat on a mat and then it ran to see the dog who was not there at all".split()
    path.write_text(" ".join(rng.choice(vocab, size=words)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A directory holding corpus.txt and good.npz, an rnn checkpoint after 30 steps of Adagrad."""
    d = tmp_path_factory.mktemp("trained")
    text_file(d / "corpus.txt")
    rc, out, err = run("train", "--text", "corpus.txt", "--cell", "rnn", "--optim", "adagrad", "--steps", "30",
                       "--out", "good.npz", *SMALL, cwd=d)
    assert rc == 0, err
    return d, out


def unchanged(path):
    """A check that `path` still holds exactly the bytes it holds now."""
    before = path.read_bytes()
    return lambda: path.read_bytes() == before


# ---- demo, graph, gradcheck --------------------------------------------------------------------------
@needs_dot
def test_demo_trains_prints_agreeing_gradients_and_draws(tmp_path):
    rc, out, err = run("demo", cwd=tmp_path)
    assert rc == 0, err
    predictions = re.findall(r"t=(\d): '(\w)' -> '(\w)'  p=([\d.]+)  (\S+)", out)
    assert [(x, y) for _, x, y, _, _ in predictions] == list(zip("hell", "ello"))
    assert all(verdict == "ok" and float(p) > 0.5 for *_, p, verdict in predictions)
    assert "all three agree" in out and "FAIL" not in out
    assert len(re.findall(r"^(cell|out)\.\S+ .*ok +\S+ +\S+ +ok +\S+ +\S+ +ok$", out, re.M)) == 5
    assert (tmp_path / "hello_unrolled.svg").read_text().lstrip().startswith("<?xml")
    assert "wrote hello_unrolled.svg" in out


def test_demo_without_graphviz_writes_dot_and_says_how_to_install(tmp_path):
    rc, out, err = run("demo", "--out-dir", "pics", cwd=tmp_path, env={**ENV, "PATH": str(tmp_path / "none")})
    assert rc == 0, err
    assert (tmp_path / "pics" / "hello_unrolled.dot").read_text().startswith("digraph")
    assert not (tmp_path / "pics" / "hello_unrolled.svg").exists()
    assert "pics/hello_unrolled.dot" in out and "install Graphviz" in out


@pytest.mark.parametrize("flags, suffix", [pytest.param(["--cell", "lstm", "--grads"], ".svg", marks=needs_dot),
                                           (["--folded"], ".dot"), (["--steps", "3"], ".dot")])
def test_graph_writes_the_picture_by_suffix(tmp_path, flags, suffix):
    rc, out, err = run("graph", *flags, "-o", f"pic{suffix}", cwd=tmp_path)
    assert rc == 0, err
    picture = (tmp_path / f"pic{suffix}").read_text()
    assert picture.lstrip().startswith("<?xml" if suffix == ".svg" else "digraph")
    assert f"wrote pic{suffix}" in out
    if flags == ["--steps", "3"]:  # the shared recurrent weight: one node, one edge into each of 3 steps
        assert re.findall(r"label=\"?(t=\d)", picture) == ["t=1", "t=2", "t=3"]  # the book's time
        node = re.search(r"^\s*(n\d+) \[label=\"cell.W_hh", picture, re.M).group(1)
        assert len(re.findall(rf"^\s*{node} -> (?!.*invis).*$", picture, re.M)) == 3  # visible edges


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradcheck_prints_the_table_and_exits_0(tmp_path, cell):
    rc, out, err = run("gradcheck", "--cell", cell, "--hidden", "4", "--steps", "6", cwd=tmp_path)
    assert rc == 0, err
    assert f"gradient check, {cell} cell" in out and "T=6" in out and "all three agree" in out
    rows = 6 if cell == "gru" else 5
    assert out.count(" ok ") + out.count(" ok\n") == rows * 3
    if cell != "rnn":  # PyTorch's LSTM and GRU are not the book's: no book symbols on their gate weights
        assert "cell.W_x (W_x) " in out and "U^g" not in out


def test_gradcheck_labels_the_books_lstm_with_the_books_symbols(tmp_path):
    rc, out, err = run("gradcheck", "--cell", "lstm", "--cell-input", "sigmoid", "--hidden", "3", cwd=tmp_path)
    assert rc == 0, err
    assert "cell.W_x (U^g|U^f|U|U^o, W_x)" in out and "all three agree" in out


def test_graph_draws_a_gru(tmp_path):
    rc, out, err = run("graph", "--cell", "gru", "--steps", "2", "-o", "gru.dot", cwd=tmp_path)
    assert rc == 0, err
    assert "the gru CharRNN's graph unrolled over 2 steps" in out
    picture = (tmp_path / "gru.dot").read_text()
    for name in ("cell.W_x", "cell.W_h", "cell.b_x", "cell.b_h"):  # each weight one node, used by both steps
        node = re.search(rf"^\s*(n\d+) \[label=\"{re.escape(name)}", picture, re.M).group(1)
        assert len(re.findall(rf"^\s*{node} -> (?!.*invis).*$", picture, re.M)) == 2, name  # visible edges


def test_gradcheck_exits_1_on_disagreement(monkeypatch, capsys):
    class Disagrees:
        ok = False

        def __str__(self):
            return "DISAGREEMENT"
    monkeypatch.setattr(cli.check, "compare_cell", lambda *a, **k: Disagrees())
    assert cli.main(["gradcheck"]) == 1
    assert "DISAGREEMENT" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "train", "sample", "graph", "gradcheck"])
def test_every_command_has_help(tmp_path, command):
    rc, out, err = run(command, "--help", cwd=tmp_path)
    assert rc == 0 and out.startswith(f"usage: tinygrad-rnn {command}")
    assert all(flag in out for flag in {"train": ["--resume", "--seq-len", "--optim"],
                                        "sample": ["--prime", "--temperature"]}.get(command, ["--"]))


# ---- train and sample ---------------------------------------------------------------------------------
def test_train_reports_baselines_eval_and_writes_a_full_checkpoint(trained):
    d, out = trained
    assert out.count("unigram") == 2 and re.search(r"^  bigram +[\d.]+ bits/char", out, re.M)  # once, + summary
    assert re.findall(r"^step +(\d+) ", out, re.M) == ["10", "20"]
    assert out.count("--- sample at step 20") == 1
    bits = float(re.search(r"held-out after 30 steps: ([\d.]+) bits/char", out).group(1))
    unigram = float(re.search(r"^  unigram +([\d.]+)", out, re.M).group(1))
    assert bits < unigram  # 30 steps already beat character frequencies on this tiny text
    ckpt = np.load(d / "good.npz", allow_pickle=False)
    assert int(ckpt["step"]) == 30 and ckpt["state.0"].shape == (3, 12)
    assert {"param.cell.W_xh", "param.cell.W_hh", "param.cell.b_h", "param.out.W", "param.out.b",
            "optim.mem.0", "optim.lr", "config", "vocab", "rng", "unigram"} <= set(ckpt.files)
    assert "".join(ckpt["vocab"]) == "".join(sorted(set((d / "corpus.txt").read_text())))


@pytest.mark.parametrize("prime", ["", "the "])
def test_sample_prints_prime_then_exactly_n_characters(trained, prime):
    d, _ = trained
    rc, out, err = run("sample", "good.npz", "--prime", prime, "--length", "50", "--seed", "3", cwd=d)
    assert rc == 0, err
    assert len(out) == len(prime) + 50 and out.startswith(prime)
    assert set(out) <= set((d / "corpus.txt").read_text())
    assert run("sample", "good.npz", "--prime", prime, "--length", "50", "--seed", "3", cwd=d)[1] == out


def test_sample_at_a_temperature_near_zero_is_greedy(trained):
    d, _ = trained
    outs = {run("sample", "good.npz", "--prime", "the", "--length", "30", "--temperature", "1e-300",
                "--seed", seed, cwd=d)[1] for seed in (1, 2)}
    assert len(outs) == 1 and len(outs.pop()) == 33  # the seed no longer matters: always the likeliest


def test_train_on_the_shipped_corpus_by_default(tmp_path):
    rc, out, err = run("train", "--steps", "2", "--cell", "rnn", "--hidden", "8", "--seq-len", "4",
                       "--batch", "2", cwd=tmp_path)
    assert rc == 0, err
    assert "the shipped Pride and Prejudice" in out
    uni, bi = (float(x) for x in re.findall(r"^  \w+ +([\d.]+) bits/char", out, re.M))
    assert 4 < uni < 5 and 3 < bi < uni
    assert (tmp_path / "checkpoint.npz").exists()


def test_resume_is_bit_identical(tmp_path):
    text_file(tmp_path / "t.txt")
    flags = ["--text", "t.txt", "--cell", "lstm", *SMALL, "--checkpoint-every", "7"]
    assert run("train", *flags, "--steps", "50", "--out", "half.npz", cwd=tmp_path)[0] == 0
    rc, out, err = run("train", "--resume", "half.npz", "--steps", "100", cwd=tmp_path)
    assert rc == 0, err
    assert "resuming half.npz at step 50" in out
    assert run("train", *flags, "--steps", "100", "--out", "whole.npz", cwd=tmp_path)[0] == 0
    half, whole = np.load(tmp_path / "half.npz"), np.load(tmp_path / "whole.npz")
    assert sorted(half.files) == sorted(whole.files) and int(half["step"]) == 100
    for key in half.files:  # parameters, optimizer buffers, carried state, RNG: all exactly equal
        assert np.array_equal(half[key], whole[key]), key


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    text_file(tmp_path / "t.txt")
    flags = ["--text", "t.txt", "--cell", "rnn", *SMALL[:6], "--eval-every", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "tinygrad_rnn", "train", *flags, "--steps", "10000000",
                             "--out", "int.npz"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # never hang the suite if no "step" line comes
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("step"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err and len(err.splitlines()) == 1
    step = int(re.search(r"interrupted at step (\d+); saved int.npz", err).group(1))
    assert step >= 5 and int(np.load(tmp_path / "int.npz")["step"]) == step

    assert run("train", "--resume", "int.npz", "--steps", step + 3, cwd=tmp_path)[0] == 0
    assert run("train", *flags, "--steps", step + 3, "--out", "straight.npz", cwd=tmp_path)[0] == 0
    a, b = np.load(tmp_path / "int.npz"), np.load(tmp_path / "straight.npz")
    assert all(np.array_equal(a[k], b[k]) for k in b.files)


# ---- bad input: one line, non-zero exit, no traceback, the good checkpoint untouched --------------------
@pytest.mark.parametrize("args, code, says", [
    (["--text", "missing.txt"], 1, "missing.txt: no such file"),
    (["--text", "empty.txt"], 1, "empty.txt: file is empty"),
    (["--text", "binary.bin"], 1, "binary.bin: looks binary"),
    (["--text", "latin1.txt"], 1, "latin1.txt: not UTF-8 text"),
    (["--cell", "gated"], 2, "argument --cell: invalid choice: 'gated'"),
    (["--cell", "rnn", "--cell-input", "sigmoid"], 2, "--cell-input applies to the LSTM only, not to --cell rnn"),
    (["--cell-input", "relu"], 2, "argument --cell-input: invalid choice: 'relu'"),
    (["--resume", "good.npz", "--cell-input", "sigmoid"], 2, "--cell-input applies to the LSTM only, not to --cell rnn"),
    (["--hidden", "0"], 2, "argument --hidden: must be a positive integer, got 0"),
    (["--steps", "-3"], 2, "argument --steps: must be a positive integer, got -3"),
    (["--lr", "0"], 2, "argument --lr: must be a positive number, got 0"),
    (["--batch", "many"], 2, "argument --batch: expected a positive integer, got 'many'"),
    (["--eval-every", "0"], 2, "argument --eval-every: must be a positive integer"),
    (["--optim", "rmsprop"], 2, "argument --optim: invalid choice: 'rmsprop'"),
    (["--resume", "corrupt.npz"], 1, "cannot load checkpoint corrupt.npz: not an .npz archive"),
    (["--resume", "truncated.npz"], 1, "cannot load checkpoint truncated.npz: corrupt or truncated"),
    (["--resume", "pickled.npz"], 1, "it holds pickled objects, refused"),
    (["--resume", "foreign.npz"], 1, "foreign.npz is not a tinygrad-rnn training checkpoint"),
    (["--resume", "reshaped.npz"], 1, "reshaped.npz does not fit a CharRNN (rnn, hidden size 12, "),
    (["--resume", "badjson.npz"], 1, "badjson.npz: stored JSON is unreadable"),
    (["--out", "no/such/dir/x.npz"], 1, "--out no/such/dir/x.npz: directory no/such/dir does not exist"),
    (["--out", "."], 1, "--out . is a directory"),
    (["--out", "corpus.txt/x.npz"], 1, "corpus.txt is not a directory"),
    (["--batch", "5000"], 1, "too few for --batch 5000 streams"),
])
def test_train_bad_input(trained, args, code, says):
    d, _ = trained
    (d / "empty.txt").write_bytes(b"")
    (d / "binary.bin").write_bytes(bytes(range(256)))
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "corrupt.npz").write_bytes(b"this is not a checkpoint")
    good = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(good[:len(good) // 2])
    np.savez(d / "pickled.npz", config=np.array([{"evil": True}], dtype=object))
    np.savez(d / "foreign.npz", weights=np.zeros(3))
    arrays = dict(np.load(d / "good.npz"))
    arrays["param.cell.W_hh"] = np.zeros((5, 5))
    np.savez(d / "reshaped.npz", **arrays)
    np.savez(d / "badjson.npz", **{**arrays, "config": np.array("{not json")})
    still_good = unchanged(d / "good.npz")
    fresh = [] if "--resume" in args or "--text" in args else ["--text", "corpus.txt"]
    out = [] if "--out" in args else ["--out", "new.npz"]
    fails(code, "train", *fresh, *args, *out, "--steps", "5", cwd=d, says=says)
    assert still_good() and not (d / "new.npz").exists()


@pytest.mark.parametrize("key, value, says", [
    ("param.cell.W_hh", np.nan, "nan.npz is corrupt: cell.W_hh holds NaN, inf or values beyond 1e+150"),
    ("optim.lr", -1.0, "nan.npz is corrupt: Adagrad.load_state_dict: bad entries: lr (must be positive, got -1.0)"),
    ("optim.mem.0", np.inf, "mem.0 (holds NaN or inf)"),
])
def test_a_checkpoint_with_impossible_numbers_is_refused(trained, key, value, says):
    d, _ = trained
    arrays = dict(np.load(d / "good.npz"))
    arrays[key] = np.full_like(arrays[key], value)
    np.savez(d / "nan.npz", **arrays)
    still_bad = unchanged(d / "nan.npz")
    fails(1, "train", "--resume", "nan.npz", "--steps", "40", cwd=d, says=says)
    fails(1, "sample", "nan.npz", "--length", "5", cwd=d, says=says)
    assert still_bad()


@pytest.mark.parametrize("args, says", [
    (["--hidden", "32"], "--hidden 32 does not match good.npz, which has 12"),
    (["--cell", "lstm"], "--cell lstm does not match good.npz, which has rnn"),
    (["--text", "other.txt"], "other.txt is not the text good.npz was trained on"),
    (["--text", "binary.bin"], "binary.bin: looks binary"),
])
def test_resume_refuses_another_model_or_text_and_leaves_the_checkpoint(trained, args, says):
    d, _ = trained
    text_file(d / "other.txt", seed=1)
    (d / "binary.bin").write_bytes(bytes(range(256)))
    still_good = unchanged(d / "good.npz")
    fails(1, "train", "--resume", "good.npz", *args, "--steps", "60", cwd=d, says=says)
    assert still_good()


def test_train_gru_then_sample(tmp_path):
    text_file(tmp_path / "corpus.txt")
    rc, out, err = run("train", "--text", "corpus.txt", "--cell", "gru", "--steps", "25", "--out", "gru.npz",
                       *SMALL, cwd=tmp_path)
    assert rc == 0, err
    assert re.search(r"^model: gru, hidden 12, ", out, re.M)
    first, last = (float(x) for x in re.findall(r"train loss ([\d.]+)", out)[:2])
    assert last < first  # it learns
    with np.load(tmp_path / "gru.npz") as ckpt:
        assert ckpt["param.cell.b_x"].shape == (36,) and '"cell": "gru"' in str(ckpt["config"])
    rc, sample, err = run("sample", "gru.npz", "--prime", "the ", "--length", "40", "--seed", "3", cwd=tmp_path)
    assert rc == 0, err
    assert sample.startswith("the ") and len(sample) == 44 and set(sample) <= set("the catsonmdruglwxi\n")
    # --cell in every subcommand: sample takes the checkpoint's and checks a given one against it
    assert run("sample", "gru.npz", "--prime", "the ", "--length", "40", "--seed", "3", "--cell", "gru",
               cwd=tmp_path) == (0, sample, "")
    fails(1, "sample", "gru.npz", "--cell", "lstm", cwd=tmp_path,
          says="--cell lstm does not match gru.npz, which has gru; sample uses the checkpoint's cell")
    fails(2, "sample", "gru.npz", "--cell-input", "sigmoid", cwd=tmp_path,
          says="--cell-input applies to the LSTM only, not to --cell gru")


def test_the_books_lstm_round_trips_through_a_checkpoint(tmp_path):
    text_file(tmp_path / "corpus.txt")
    common = ["--text", "corpus.txt", *SMALL, "--steps"]
    rc, out, err = run("train", *common, "10", "--cell", "lstm", "--cell-input", "sigmoid", "--out", "book.npz",
                       cwd=tmp_path)
    assert rc == 0, err
    assert "model: lstm (sigmoid cell input: the book's LSTM), hidden 12" in out
    from tinygrad_rnn.train import Run
    run_ = Run.load(tmp_path / "book.npz")
    assert run_.config.cell_input == "sigmoid" and run_.model.cell.cell_input == "sigmoid" and run_.step == 10
    # resuming keeps the option; it continues bit-identically with a straight 20-step run
    rc, _, err = run("train", "--resume", "book.npz", "--steps", "20", cwd=tmp_path)
    assert rc == 0, err
    rc, _, err = run("train", *common, "20", "--cell", "lstm", "--cell-input", "sigmoid", "--out", "straight.npz",
                     cwd=tmp_path)
    assert rc == 0, err
    with np.load(tmp_path / "book.npz") as a, np.load(tmp_path / "straight.npz") as b:
        np.testing.assert_array_equal(a["param.cell.W_x"], b["param.cell.W_x"])
    # the tanh LSTM from the same seed is another model
    rc, _, err = run("train", *common, "20", "--cell", "lstm", "--out", "tanh.npz", cwd=tmp_path)
    with np.load(tmp_path / "book.npz") as a, np.load(tmp_path / "tanh.npz") as b:
        assert np.abs(a["param.cell.W_x"] - b["param.cell.W_x"]).max() > 1e-3
    still = unchanged(tmp_path / "book.npz")
    fails(1, "train", "--resume", "book.npz", "--cell-input", "tanh", "--steps", "30", cwd=tmp_path,
          says="--cell-input tanh does not match book.npz, which has sigmoid")
    assert still()
    rc, out, err = run("sample", "book.npz", "--cell", "lstm", "--cell-input", "sigmoid", "--length", "7", cwd=tmp_path)
    assert rc == 0 and len(out) == 7, err
    fails(1, "sample", "book.npz", "--cell-input", "tanh", cwd=tmp_path,
          says="--cell-input tanh does not match book.npz, which has sigmoid; sample uses the checkpoint's cell")
    rc, sample, err = run("sample", "book.npz", "--length", "20", "--seed", "0", cwd=tmp_path)
    assert rc == 0 and len(sample) == 20, err


def test_a_fresh_run_never_overwrites_an_existing_checkpoint(trained):
    d, _ = trained
    still_good = unchanged(d / "good.npz")
    fails(1, "train", "--text", "corpus.txt", "--out", "good.npz", "--steps", "5", cwd=d,
          says="good.npz already exists; continue it with --resume good.npz")
    assert still_good()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_train_refuses_a_read_only_out_directory(trained, tmp_path):
    d, _ = trained
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    fails(1, "train", "--text", d / "corpus.txt", "--out", tmp_path / "ro" / "x.npz", cwd=d, says="cannot write in")


@pytest.mark.parametrize("args, code, says", [
    (["good.npz", "--temperature", "0"], 2, "argument --temperature: must be a positive number, got 0"),
    (["good.npz", "--temperature", "-1"], 2, "argument --temperature: must be a positive number, got -1"),
    (["good.npz", "--length", "-1"], 2, "argument --length: must be an integer >= 0, got -1"),
    (["good.npz", "--prime", "Zebra"], 1, "--prime: character 'Z' is not in the vocabulary of "),
    (["missing.npz"], 1, "cannot load checkpoint missing.npz: no such file"),
    (["corpus.txt"], 1, "cannot load checkpoint corpus.txt: not an .npz archive"),
    ([], 2, "the following arguments are required: CKPT"),
])
def test_sample_bad_input(trained, args, code, says):
    d, _ = trained
    fails(code, "sample", *args, cwd=d, says=says)


@pytest.mark.parametrize("args, code, says", [
    (["graph", "-o", "picture.jpg"], 2, "'picture.jpg' needs one of the suffixes .svg, .png, .pdf, .dot"),
    (["graph", "--collapse", "--folded"], 2, "--collapse draws the op-level picture's steps as boxes"),
    (["gradcheck", "--cell", "gated"], 2, "invalid choice: 'gated'"),
    (["gradcheck", "--cell-input", "sigmoid"], 2, "--cell-input applies to the LSTM only, not to --cell rnn"),
    (["graph", "--cell", "gru", "--cell-input", "tanh"], 2, "--cell-input applies to the LSTM only, not to --cell gru"),
    (["demo", "--cell-input", "sigmoid"], 2, "--cell-input applies to the LSTM only, not to --cell rnn"),
    (["gradcheck", "--steps", "0"], 2, "argument --steps: must be a positive integer, got 0"),
    (["translate"], 2, "argument command: invalid choice: 'translate'"),
    (["sample", "x.npz", "--cell-type", "gru"], 2, "unrecognized arguments: --cell-type gru (see 'tinygrad-rnn sample --help')"),
    (["lab", "copies", "--fast"], 2, "unrecognized arguments: --fast (see 'tinygrad-rnn lab --help')"),
    (["--fast"], 2, "unrecognized arguments: --fast (see 'tinygrad-rnn --help')"),
    ([], 2, "choose a command: demo, train, sample, graph, gradcheck, lab or trace"),
])
def test_other_bad_usage(tmp_path, args, code, says):
    fails(code, *args, cwd=tmp_path, says=says)


# ---- the real thing -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lstm_2000_steps_on_the_corpus_beats_the_bigram(tmp_path):
    rc, out, err = run("train", "--cell", "lstm", "--steps", "2000", "--eval-every", "500", cwd=tmp_path,
                       timeout=1800)
    assert rc == 0, err
    bigram = float(re.search(r"^  bigram +([\d.]+) bits/char", out, re.M).group(1))
    bits = float(re.search(r"held-out after 2000 steps: ([\d.]+) bits/char", out).group(1))
    assert bits < bigram


def test_train_checkpoint_flag_is_stored_checked_on_resume_and_bad_values_fail(tmp_path):
    text = text_file(tmp_path / "t.txt")
    common = ["train", "--text", text, "--cell", "rnn", "--hidden", "8", "--seq-len", "10", "--batch", "2",
              "--eval-every", "50", "--sample-every", "50"]
    rc, _, err = run(*common, "--steps", "2", "--checkpoint", "slots=3", "--out", "a.npz", cwd=tmp_path)
    assert rc == 0, err
    from tinygrad_rnn.train import Run
    assert Run.load(tmp_path / "a.npz").config.checkpoint == "slots=3"
    fails(1, *common, "--steps", "3", "--resume", "a.npz", "--checkpoint", "4", cwd=tmp_path,
          says="--checkpoint 4 does not match a.npz, which has slots=3")
    fails(2, *common, "--steps", "2", "--checkpoint", "slots=0", "--out", "b.npz", cwd=tmp_path,
          says="checkpoint must be k, sqrt or slots=m")
