"""The course in examples/: every numbered lesson runs as a script (TINYGRAD_RNN_QUICK=1) and the numbers
it prints are the numbers it claims: hand derivations equal autodiff, the slowdown is measured, and so on."""
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LESSONS = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))


@functools.lru_cache(maxsize=None)
def run(name: str) -> str:
    """stdout of examples/<name> run in a fresh temporary directory with the quick sizes; fails on exit != 0."""
    import tempfile
    with tempfile.TemporaryDirectory() as cwd:
        # one BLAS thread unless the caller chose: on these small matrices more threads only fight (README, Speed)
        blas = {v: "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        env = {**blas, **os.environ, "TINYGRAD_RNN_QUICK": "1", "MPLBACKEND": "Agg"}
        done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def max_errors(out: str) -> dict:
    """label -> value of every printed `max |a - b| ... = value` line."""
    found = {m[1]: float(m[2]) for m in re.finditer(r"^max \|(.+?)\|[^=\n]*= ([-+0-9.e]+|inf|nan)", out, re.M)}
    assert found, "the example printed no max |…| line"
    return found


def number(pattern: str, out: str) -> float:
    m = re.search(pattern, out)
    assert m, f"no match for {pattern!r}"
    return float(m[1])


def test_the_course_is_numbered_and_complete():
    numbers = {name[:2] for name in LESSONS}
    assert numbers == {f"{n:02d}" for n in range(1, len(LESSONS) + 1)}  # 01, 02, … with no gap
    assert (EXAMPLES / "make_pictures.py").exists()


@pytest.mark.parametrize("name", LESSONS)
def test_every_lesson_is_a_short_percent_format_script_that_runs(name):
    source = (EXAMPLES / name).read_text()
    assert source.count("# %%") >= 3, "cells marked with # %% open it as a notebook"
    assert source.startswith('# %% [markdown]\n"""'), "the docstring opens as the notebook's first text cell"
    assert len(source.splitlines()) - 1 <= 130  # not counting that cell marker
    assert not re.search(r"\bseeds?\b", source + run(name), re.I), "name the documents, not 'seeds'"
    assert run(name).strip()


def test_01_hello_learns_ello_with_softmax_and_with_sigmoid_outputs_and_a_learned_h0():
    out = run("01_hello.py")
    losses = [float(v) for v in re.findall(r"^step +\d+ +loss ([0-9.]+)", out, re.M)]
    assert losses[-1] < losses[0] / 10
    assert "softmax output predicts: 'hell' -> 'ello'" in out
    assert "sigmoid output predicts: 'hell' -> 'ello'" in out
    assert "gradient check: all three agree" in out
    h0 = [float(v) for v in re.search(r"learned h\(0\) = \[(.*)\]", out)[1].split(",")]
    assert max(abs(v) for v in h0) > 0.05                      # moved from zeros: it is part of θ
    sums = [float(v) for v in re.search(r"ŷ rows sum to \[(.*?)\]", out)[1].split(",")]
    assert all(s > 0 for s in sums) and max(abs(s - 1) for s in sums) > 1e-3  # sigmoids: no distribution


def test_02_hello_number_by_number_in_the_documents_notation():
    out = run("02_hello_number_by_number.py")
    assert "vocabulary ['h', 'e', 'l', 'o'] | x(t): h=[1, 0, 0, 0], e=[0, 1, 0, 0]" in out  # the FAU lecture's order
    errors = max_errors(out)
    assert len(errors) == 11 and max(errors.values()) < 1e-14           # ∇o, ∇h, 6 of the FAU model, 3 equations
    assert {"∇h0 by hand - autodiff", "∂E/∂Whh by eq. 32 - autodiff"} <= set(errors)
    vectors = r"((?:\[[-+0-9. ]+\] ?){%d})"
    rows = re.findall(r"^ ([1-4]) " + vectors % 3 + "$", out, re.M)      # ∇o(t)L ∇h(t)L dhnext, then the derivation's
    assert [t for t, _ in rows[:4]] == ["1", "2", "3", "4"] and rows[3][1].endswith("[+0.000 +0.000 +0.000]")
    walk = re.findall(r"^ ([1-4]) " + vectors % 4 + "$", out, re.M)      # §8: y − t, dhnext, ∂E/∂h, hraw from t = 4
    assert [t for t, _ in walk] == ["4", "3", "2", "1"] and "[+0.000 +0.000 +0.000]" in walk[0][1]
    sig = re.search(r"σ′\(o_1\) ∂L/∂ŷ_1 = (\[.*?\]) = ŷ_1 − y_1 = (\[.*?\])", out)
    assert sig[1] == sig[2]
    contrast = re.search(r"y − t = (\[.*?\]);.*p − y = (\[.*?\])", out)
    assert contrast[1] != contrast[2]                                    # quadratic on linear y is not p − y
    assert re.search(r"generated from 'h' alone: 'hello'$", out, re.M)


def test_03_quotient_rule_equals_the_jacobian_and_cross_entropy_gives_p_minus_y():
    out = run("03_softmax_cross_entropy.py")
    errors = max_errors(out)
    for label, value in errors.items():
        assert value < (1e-8 if "finite" in label else 1e-14), label
    assert {"quotient rule - manual.softmax_jacobian", "chain rule - (p - y)",
            "nn.cross_entropy gradient - (p - y)"} <= set(errors)
    assert "textbook −log softmax = inf" in out and "(finite: True)" in out


def test_04_the_books_bptt_equations_equal_autodiff_manual_and_rtrl():
    out = run("04_bptt_by_hand.py")
    errors = max_errors(out)
    assert len(errors) >= 7 and max(errors.values()) < 1e-12
    assert "rnn: all three agree" in out and "lstm: all three agree" in out
    assert "W_hhᵀ dhraw has shape (5,)" in out and "W_xhᵀ dhraw has shape (4,)" in out


def test_05_truncation_by_hand_equals_autodiff_and_its_error_shrinks_with_k():
    out = run("05_truncated_bptt.py")
    assert max(max_errors(out).values()) < 1e-12
    rows = re.findall(r"^ *(\d+) +([0-9.e+-]+) +([0-9.e+-]+)$", out, re.M)
    per_term = [float(r[1]) for r in rows]
    assert per_term == sorted(per_term, reverse=True) and per_term[0] > 0.1 and per_term[-1] == 0
    assert all(float(r[2]) >= float(r[1]) for r in rows[:-1])     # chunks cut at least as much
    assert "k = 25" in out and "cosine similarity" in out         # the lab's table
    kept = [int(n) for n in re.findall(r"graph kept for a chunk of +\d+ steps: (\d+) op nodes", out)]
    assert kept[0] < kept[1]


def test_06_rtrl_is_forward_mode_and_equals_backward():
    out = run("06_rtrl_forward_mode.py")
    m = re.search(r"forward mode dL·v = ([-0-9.]+); reverse mode ∇L·v = ([-0-9.]+)", out)
    assert float(m[1]) == pytest.approx(float(m[2]), rel=1e-10)
    assert max(max_errors(out).values()) < 1e-12
    assert re.search(r"(\d+) forward passes for P = \1 parameters", out)
    peaks = [int(r[1]) for r in re.findall(r"^ +(\d+) +[0-9.]+ +[0-9.]+ +\d+ +(\d+)$", out, re.M)]
    assert len(peaks) >= 2


def test_07_the_jacobian_product_and_the_eigenvalue_heuristic():
    out = run("07_vanishing_and_exploding.py")
    errors = max_errors(out)
    assert errors["Π diag(tanh′) W_hh by hand - analysis.state_jacobians"] < 1e-12
    assert errors["measured rate - ρ"] < 1e-6                    # tanh′ ≈ 1: rate = ρ
    assert "vanishes too" in out                                  # where the heuristic is too simple
    before, after = re.search(r"gradient norm ([0-9.]+) before clipping, ([0-9.]+) after", out).groups()
    assert float(before) > 5 and float(after) == pytest.approx(5.0)


def test_08_the_books_lstm_is_lstmcell_with_a_sigmoid_cell_input():
    out = run("08_lstm_book.py")
    assert max(max_errors(out).values()) < 1e-12
    assert number(r"max \|h\| difference = ([0-9.]+)", out) > 0.01   # PyTorch's tanh is another cell
    for book, torch in [("f  (10.40)", "f"), ("g  (10.42)", "i"), ("q  (10.44)", "o")]:
        assert re.search(re.escape(book) + r" +" + re.escape(torch) + r" ", out)


def test_09_counts_give_zeros_markov_models_are_blind_and_the_neural_trigram_beats_the_bigram():
    out = run("09_ngrams_and_the_neural_trigram.py")
    rows = re.findall(r"^ +(\d) +([0-9.]+)% +(inf|[0-9.]+) +([0-9.]+) +([0-9.]+)$", out, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    zeros = [float(r[1]) for r in rows]
    assert zeros[0] == 0 and zeros[2] > 1 and zeros == sorted(zeros)        # more zeros as the order grows
    assert all(r[2] == "inf" for r in rows[1:])                             # maximum likelihood: infinite bits
    sums = re.findall(r"^k = (0\.5|0): Σ p over all 243 strings = ([0-9.]+); (\d+)% of them have p = 0$", out, re.M)
    assert [k for k, _, _ in sums] == ["0.5", "0"] and all(abs(float(v) - 1) < 1e-12 for _, v, _ in sums)
    assert int(sums[0][2]) == 0 and int(sums[1][2]) > 50                      # maximum likelihood: mostly zeros
    zero = {(int(m[0]), int(m[2])): float(m[1]) for o in (3, 5) for m in re.findall(
        rf"maximum-likelihood ({o})-gram: .*?([0-9.]+)% of (40)-character ones", out)}
    assert zero[3, 40] > 30 and zero[5, 40] > 50                           # quick corpus: 72% and 100%
    assert "Why the neural trigram trails the counts here" in out
    told = number(r"trigram told a closing letter comes ([0-9.]+)", out)
    assert abs(told - 1.0) < 0.1 and number(r"\(a coin flip\), RNN ([0-9.]+)", out) < 0.5
    assert max(max_errors(out).values()) < 1e-12
    bigram = number(r"bigram \(best add-k\) ([0-9.]+)", out)
    assert number(r"neural trigram ([0-9.]+) \(perplexity", out) < bigram


def test_10_cross_entropy_cancels_the_sigmoid_and_the_quadratic_error_learns_slowly():
    out = run("10_quadratic_vs_cross_entropy.py")
    m = re.search(r"dE/dy: autodiff ([0-9.]+), \(y − t\)/\(y\(1 − y\)\) = ([0-9.]+)", out)
    assert float(m[1]) == pytest.approx(float(m[2]), rel=1e-6)
    m = re.search(r"δ = dE/do: autodiff ([0-9.]+), y − t = ([0-9.]+)", out)
    assert float(m[1]) == pytest.approx(float(m[2]), rel=1e-6)
    m = re.search(r"quadratic δ: autodiff ([0-9.]+), \(y − t\) y \(1 − y\) = ([0-9.]+)", out)
    assert float(m[1]) == pytest.approx(float(m[2]), rel=1e-6)
    assert number(r"at the saturated start \(o = 4.0\): ([0-9.]+)", out) >= 10
    steps = re.search(r"\|y − t\| < 0.1: cross-entropy (\d+), quadratic (\d+)", out)
    assert int(steps[2]) > 3 * int(steps[1])                                # the slowdown, measured
    first = re.search(r"first 10 steps: cross-entropy ([0-9.]+), quadratic ([0-9.]+)", out)
    assert float(first[1]) > 10 * float(first[2])
    assert "wrote out/quadratic_vs_cross_entropy.png" in out or "no plot: matplotlib is missing" in out


def test_12_padding_with_ignore_index_is_exactly_the_words_one_by_one():
    out = run("12_words_of_different_lengths.py")
    assert max(max_errors(out).values()) < 1e-12
    assert "padded positions' logits: 0.0 (exactly zero)" in out
    assert "'ca' -> 'at' (want 'at')" in out and "'hell' -> 'ello' (want 'ello')" in out


def test_13_curvature_lambda_max_the_lr_boundary_and_pascanus_regularizer():
    out = run("13_curvature.py")
    errors = max_errors(out)
    assert errors["power iteration - eigvalsh"] < 1e-9 and errors["H v by hvp - H @ v"] < 1e-12
    assert errors["∇Ω·d - (Ω(θ+εd) - Ω(θ-εd))/2ε"] < 1e-6    # the create_graph gradient against differences
    assert number(r"‖∇L‖ = ([0-9.e+-]+);", out) < 1e-10 and "all positive, a minimum" in out
    rows = re.findall(r"^ +([0-9.]+) +[0-9.]+ +([0-9.]+) +([0-9.]+) +[0-9.e+-]+ +(settles|oscillates)", out, re.M)
    assert len(rows) == 6
    for c, predicted, measured, verdict in rows:                    # |1 - ηλ| per step, measured, and the verdict
        assert abs(float(predicted) - float(measured)) < 0.02
        assert verdict == ("settles" if float(c) < 1 else "oscillates")
    assert "settles at η = 0.995 · 2/λ_max, oscillates at 1.005 · 2/λ_max" in out
    dh0 = [float(v) for v in re.findall(r"with α = [0-9.]+: .*‖∂L/∂h_0‖ = ([0-9.e+-]+)", out)]
    assert len(dh0) == 2 and dh0[1] > 1e4 * dh0[0]                  # Ω keeps the gradient arriving at h_0
    profiles = [[float(v) for v in row.split()] for row in re.findall(r"last row\): (.*)$", out, re.M)]
    assert len(profiles) == 2 and all(len(p) == 5 for p in profiles)
    assert profiles[0][0] < 1e-4 * profiles[0][-1] and profiles[1][0] > 1e-2 * profiles[1][-1]  # vanishing, then not


def test_14_the_traced_step_reads_like_lossFun_equals_the_engine_and_trains():
    out = run("14_the_engine_writes_the_code.py")
    assert "def step(params, idx, targets):" in out and "for t in reversed(range(" in out
    for ours in ("dh_next + do @ out_W", "da = dh_2 * (1.0 - hs[t] * hs[t])", "dW_xh[:, idx[t]] += da.T",
                 "dh_next = da @ W_hh", "ss[t] = fs[t] * ss[t - 1] + gs[t] * s_tildes[t]"):
        assert ours in out, ours
    assert max_errors(out)["traced - engine"] < 1e-12
    lines = re.search(r"lines of code: T = 4: (\d+); T = 100: (\d+)", out)
    assert lines[1] == lines[2]
    losses = [float(v) for v in re.findall(r"^step +\d+ loss ([0-9.]+)", out, re.M)]
    assert losses[-1] < 0.2 * losses[0]
    assert "the next letters of 'hell': 'ello'" in out
