"""The lab's experiments at small sizes with their numbers asserted, their plots, and `tinygrad-rnn lab`
run as a user runs it (exit codes, one-line errors, the table without matplotlib)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tinygrad_rnn import lab

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
SMALL = {"vanishing": dict(T=12, H=6), "copies": {}, "influence": dict(T=10, H=6), "truncation": dict(long=20),
         "rtrl": dict(Ts=(3, 12), Hs=(2,), H=3, T=5, V=4)}


@pytest.fixture(scope="module")
def results():
    return {name: lab.run(name, **SMALL[name]) for name in SMALL}


def test_vanishing_smaller_radius_decays_faster_and_saturation_breaks_the_simple_rule(results):
    r = results["vanishing"]
    runs, radii, (low, high) = r.numbers["runs"], r.numbers["radii"], r.numbers["gains"]
    rnn = [runs["rnn", low, rho]["rate"] for rho in radii]
    assert all(a < b for a, b in zip(rnn, rnn[1:])), rnn  # the lecture notes: smaller ρ, faster decay
    for rho in radii:
        plain, saturated = runs["rnn", low, rho], runs["rnn", high, rho]
        assert plain["rate"] < rho  # tanh' < 1 multiplies every step: slower than ρ^(T-t) predicts...
        assert saturated["mean"] < plain["mean"] and saturated["rate"] < plain["rate"]  # ...more so when saturated
        for cell in ("rnn", "lstm"):
            run = runs[cell, low, rho]
            assert run["jac"][-1] == pytest.approx(1.0)  # ∂z_T-1/∂z_T-1 = I
            assert run["grad"].shape == (r.numbers["T"],) and run["ratio"] == run["grad"][0] / run["grad"][-1]
            # ∂L_T/∂h_t = J_t^T ∂L_T/∂z_T-1 (L_T reads only h_T-1): the Jacobian's norm bounds every row
            assert np.all(run["grad"] <= run["jac"] * run["grad"][-1] * (1 + 1e-12))
    assert runs["rnn", low, max(radii)]["rate"] > 1 > runs["rnn", high, max(radii)]["rate"]  # ρ = 1.5 vanishes too
    lstm = [runs["lstm", low, rho]["rate"] for rho in radii]
    assert max(lstm) - min(lstm) < max(rnn) - min(rnn)  # the LSTM's decay depends less on ρ
    assert "ρ^(T-1)" in r.table and "vanishes too" in r.table


def test_copies_add_up_to_the_gradient(results):
    r = results["copies"]
    norms, diffs = r.numbers["norms"], r.numbers["max_diff"]
    assert list(norms) == ["cell.W_xh", "cell.W_hh", "cell.b_h", "out.W", "out.b"]
    assert max(diffs.values()) <= 1e-12 and r.numbers["ok"]
    assert norms["cell.W_hh"][0] == 0 and np.all(norms["cell.W_hh"][1:] > 0)  # W_hh h_{-1} with h_{-1} = 0
    for name, n in norms.items():  # the triangle inequality: the copies' norms bound the sum's
        assert n.shape == (4,) and n.sum() >= r.numbers["grad_norm"][name] > 0
    assert "within 1e-12" in r.table


def test_influence_is_lower_triangular_and_an_open_forget_gate_reaches_further(results):
    r = results["influence"]
    maps, reach = r.numbers["maps"], r.numbers["reach"]
    assert list(maps) == ["RNN", "LSTM", "LSTM, b_f + 3"]
    for M in maps.values():
        assert M.shape == (10, 10) and np.all(np.triu(M, 1) == 0) and np.all(M[np.tril_indices(10)] > 0)
    assert reach["LSTM, b_f + 3"] > 5 * reach["LSTM"]
    assert r.table.count("\nt=") == 10


def test_truncation_is_exact_once_a_chunk_covers_the_sequence(results):
    r = results["truncation"]
    scores = r.numbers["scores"]
    short, long = r.numbers["cases"]
    for k in r.numbers["ks"]:
        for case, T in ((short, 4), (long, 20)):
            s = scores[case, k]
            if k >= T:
                assert s["rel"] == 0 and s["cos"] == pytest.approx(1, abs=1e-15)
            else:
                assert s["rel"] > 1e-4 and s["cos"] < 1
    assert scores[short, 1]["rel"] > scores[short, 2]["rel"]


# ---- one cell: what `lab EXPERIMENT --cell gru` runs ----------------------------------------------------------
GRU = ["cell.W_x", "cell.W_h", "cell.b_x", "cell.b_h", "out.W", "out.b"]


@pytest.fixture(scope="module")
def gru_results():
    return {"vanishing": lab.run("vanishing", cell="gru", **SMALL["vanishing"]),
            "copies": lab.run("copies", cell="gru"),
            "influence": lab.run("influence", cell="gru", **SMALL["influence"]),
            "truncation": lab.run("truncation", cell="gru", **SMALL["truncation"]),
            "rtrl": lab.run("rtrl", **{**SMALL["rtrl"], "cells": ("gru",)})}


def test_copies_of_a_gru_add_up_to_the_gradient(gru_results):
    r = gru_results["copies"]
    norms, diffs = r.numbers["norms"], r.numbers["max_diff"]
    assert list(norms) == GRU
    assert max(diffs.values()) <= 1e-12 and r.numbers["ok"] and "within 1e-12" in r.table
    assert norms["cell.W_h"][0] == 0 and np.all(norms["cell.W_h"][1:] > 0)  # W_h h_{-1} with h_{-1} = 0
    for name, n in norms.items():
        assert n.shape == (4,) and n.sum() >= r.numbers["grad_norm"][name] > 0
    assert "with a GRU cell" in r.table and "cell.W_h at t=1" in r.table


def test_vanishing_with_a_gru_scales_its_candidate_block_and_keeps_the_bound(gru_results):
    r = gru_results["vanishing"]
    runs, radii, (low, high) = r.numbers["runs"], r.numbers["radii"], r.numbers["gains"]
    assert r.numbers["cells"] == ("rnn", "gru") and "---GRU---" in r.table and "LSTM" not in r.table.split("\n\n")[1]
    for rho in radii:
        H = 6
        model = lab._scaled("gru", rho, 1.0, 4, H)
        assert np.max(np.abs(np.linalg.eigvals(model.cell.W_h.data[2 * H:]))) == pytest.approx(rho)
        for gain in (low, high):
            run = runs["gru", gain, rho]
            assert run["jac"][-1] == pytest.approx(1.0) and 0 < run["mean"] < 1  # the mean update gate z
            assert np.all(run["grad"] <= run["jac"] * run["grad"][-1] * (1 + 1e-12))
    only_rnn = lab.run("vanishing", cell="rnn", **SMALL["vanishing"])
    assert only_rnn.numbers["cells"] == ("rnn",) and "LSTM" not in only_rnn.table and "GRU" not in only_rnn.table


def test_influence_with_a_gru_beside_the_rnn(gru_results):
    r = gru_results["influence"]
    maps = r.numbers["maps"]
    assert list(maps) == ["RNN", "GRU"]
    T, H = 10, 6
    for M in maps.values():
        assert M.shape == (T, T) and np.all(np.triu(M, 1) == 0) and np.all(M[np.tril_indices(T)] > 0)
    # the diagonal by an independent formula: ∂L_t/∂h_t = out.W^T (softmax(o_t) - e_y_t), L_t reads h_t alone
    from tinygrad_rnn import nn
    from tinygrad_rnn.data import Vocab
    vocab = Vocab("hello")
    ids = vocab.encode(("hello" * 4)[:T + 1])
    model = nn.CharRNN(vocab.size, H, "gru", rng=np.random.default_rng(0))
    o = model(ids[:-1])[0].data
    p = np.exp(o - o.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(T), ids[1:]] -= 1
    assert np.allclose(np.diag(maps["GRU"]), np.linalg.norm(p @ model.out.W.data, axis=1), rtol=1e-12)


def test_truncation_of_a_gru_is_exact_once_a_chunk_covers_the_sequence(gru_results):
    r = gru_results["truncation"]
    scores, (short, long) = r.numbers["scores"], r.numbers["cases"]
    for k in r.numbers["ks"]:
        for case, T in ((short, 4), (long, 20)):
            s = scores[case, k]
            assert (s["rel"] == 0) if k >= T else (s["rel"] > 1e-4 and s["cos"] < 1)
    assert "(GRU cell)" in r.table


def test_rtrl_of_a_gru_equals_bptt(gru_results):
    r = gru_results["rtrl"]
    assert {key[0] for key in r.numbers["runs"]} == {"gru"}
    assert r.numbers["worst"] < 1e-12
    H, V = 3, 4
    assert r.numbers["runs"]["gru", H, 5]["P"] == 3 * H * H + 4 * H * V + 6 * H + V


@pytest.mark.parametrize("name", list(SMALL))
def test_every_experiment_draws_its_plot(results, name, tmp_path):
    pytest.importorskip("matplotlib")
    path = lab.save_plot(results[name], tmp_path / f"{name}.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.parametrize("name", list(SMALL))
def test_every_experiment_draws_its_plot_with_a_gru(gru_results, name, tmp_path):
    pytest.importorskip("matplotlib")
    data = lab.save_plot(gru_results[name], tmp_path / f"{name}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_save_plot_refuses_an_unknown_suffix(results, tmp_path):
    with pytest.raises(ValueError, match=r"^lab: cannot write plot\.jpg: the plot's file must end in \.png, \.svg, \.pdf$"):
        lab.save_plot(results["copies"], tmp_path / "plot.jpg")
    assert not (tmp_path / "plot.jpg").exists()


# ---- the command -----------------------------------------------------------------------------------------
def run(*args, cwd, env=ENV):
    done = subprocess.run([sys.executable, "-m", "tinygrad_rnn", "lab", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=120)
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert "Traceback" not in out + err, err
    return done.returncode, out, err


def test_lab_prints_the_table_and_writes_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rc, out, err = run("copies", "-o", "copies.png", cwd=tmp_path)
    assert rc == 0, err
    assert "max |Σ_t - .grad|" in out and "within 1e-12" in out and "wrote copies.png" in out
    assert (tmp_path / "copies.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,says", [
    (["tides"], "tinygrad-rnn: error: unknown experiment 'tides'; choose one of vanishing, copies, influence"),
    (["copies", "-o", "copies.jpg"], "tinygrad-rnn: error: argument -o/--output: 'copies.jpg' must end in .png"),
    ([], "tinygrad-rnn: error: the following arguments are required: EXPERIMENT"),
])
def test_lab_bad_input_is_one_line_and_exit_2(tmp_path, args, says):
    rc, out, err = run(*args, cwd=tmp_path)
    assert rc == 2 and out == ""
    assert err.startswith(says) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_lab_with_a_cell_shows_that_cell(tmp_path):
    rc, out, err = run("copies", "--cell", "gru", cwd=tmp_path)
    assert rc == 0, err
    assert "cell.W_x  cell.W_h  cell.b_x  cell.b_h" in out and "within 1e-12" in out


@pytest.mark.parametrize("args,says", [
    (["copies", "--cell", "tree"], "tinygrad-rnn: error: argument --cell: invalid choice: 'tree'"),
    (["influence", "--cell", "gru", "--cell-input", "sigmoid"],
     "tinygrad-rnn: error: --cell-input applies to the LSTM only, not to --cell gru (see 'tinygrad-rnn lab --help')"),
    (["copies", "--cell-input", "sigmoid"],
     "tinygrad-rnn: error: --cell-input applies to the LSTM only: give it with --cell lstm"),
])
def test_lab_bad_cell_is_one_line_and_exit_2(tmp_path, args, says):
    rc, out, err = run(*args, cwd=tmp_path)
    assert rc == 2 and out == ""
    assert err.startswith(says) and err.count("\n") == 1, err


def test_lab_without_matplotlib_prints_the_table_and_says_how_to_install(tmp_path):
    blocker = tmp_path / "blocked"
    (blocker / "matplotlib").mkdir(parents=True)
    (blocker / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(blocker), *filter(None, [ENV.get("PYTHONPATH")])])}
    rc, out, err = run("copies", "-o", "copies.png", cwd=tmp_path, env=env)
    assert rc == 1
    assert "max |Σ_t - .grad|" in out  # the table is all there
    assert err.count("\n") == 1 and "pip install -e '.[plot]'" in err, err
    assert not (tmp_path / "copies.png").exists()


def test_lab_plots_count_steps_from_1_and_give_each_weight_its_graph_colour(results):
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib.colors import to_hex
    from tinygrad_rnn.viz import _weight_colour
    r = results["copies"]
    assert [line.split()[0] for line in r.table.splitlines() if line.startswith("t=")] == ["t=1", "t=2", "t=3", "t=4"]
    fig = plt.figure()
    try:
        r.draw(fig)
        ax = fig.axes[0]
        colours = {c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in ax.containers}
        assert colours == {name: _weight_colour(name) for name in r.numbers["norms"]}  # W_xh green, W_hh orange, ...
        assert colours["cell.W_xh"] != colours["cell.W_hh"]
        assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["t=1", "t=2", "t=3", "t=4"]
        assert [round(x) for x in ax.get_xticks()] == [1, 2, 3, 4]
    finally:
        plt.close(fig)
    trunc = results["truncation"]
    assert {4, 20} <= set(trunc.numbers["ks"])                       # each curve reaches its own k = T
    fig = plt.figure()
    try:
        results["rtrl"].draw(fig)
        handles = fig.axes[0].get_lines()
        looks = {(h.get_color(), h.get_linestyle(), h.get_marker()) for h in handles}
        assert len(looks) == len(handles) == 4                          # RTRL/BPTT x RNN/LSTM, all told apart
        assert len({(h.get_linestyle(), h.get_marker()) for h in handles}) == 2
    finally:
        plt.close(fig)


def test_memory_lab_budgets_keep_memory_flat_and_run_the_planned_steps():
    from tinygrad_rnn import nn
    result = lab.run("memory", Ts=(40, 160), budgets=(4,), k=8, rtrl_up_to=40)
    runs = result.numbers["runs"]
    assert set(result.numbers["modes"]) == {"all stored", "every 8", "sqrt(T)", "4 slots", "RTRL"}
    assert runs["4 slots", 160]["steps"] == nn.MemoryBudget(4).plan(160)[0] > 2 * 160
    assert runs["every 8", 160]["steps"] == runs["sqrt(T)", 160]["steps"] == 320
    assert ("RTRL", 160) not in runs and runs["RTRL", 40]["steps"] == 40
    assert runs["all stored", 160]["mem"] / runs["all stored", 40]["mem"] > 2.5  # storing grows with T
    assert max(runs["4 slots", 160]["mem"], runs["sqrt(T)", 160]["mem"]) < runs["all stored", 160]["mem"] / 2
    assert "4 slots" in result.table and "forward steps" in result.table
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = plt.figure()
    try:
        result.draw(fig)
        left, right = fig.axes
        assert left.get_xscale() == left.get_yscale() == right.get_xscale() == "log"
        assert [t.get_text() for t in left.get_legend().get_texts()] == result.numbers["modes"]
        assert "4 slots" in right.get_legend().get_texts()[3].get_text()
    finally:
        plt.close(fig)
