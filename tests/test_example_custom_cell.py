"""examples/11_custom_cell.py run as the course runs it (TINYGRAD_RNN_QUICK=1), its printed claims checked:
a GRU written from tensor ops equals nn.GRUCell, the book's variant passes gradcheck, its picture shares
each weight across steps, and train.fit lowers its held-out loss."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "11_custom_cell.py"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("custom_cell")
    env = dict(os.environ, TINYGRAD_RNN_QUICK="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (cwd / "my_gru_unrolled.svg").exists() or (cwd / "my_gru_unrolled.dot").exists()
    return done.stdout


def test_the_example_is_a_short_percent_format_lesson():
    source = EXAMPLE.read_text()
    assert source.count("# %%") >= 3 and len(source.splitlines()) <= 120


def test_my_gru_equals_nn_gru_cell_and_the_books_variant_differs(out):
    errors = {m[1]: float(m[2]) for m in re.finditer(r"^max \|(.+?)\|.* = ([-+0-9.e]+)$", out, re.M)}
    assert set(errors) == {"h MyGRU - h nn.GRUCell", *(f"d/d{n} MyGRU - nn.GRUCell" for n in
                                                        ("W_x", "W_h", "b_x", "b_h"))}
    assert all(v < 1e-12 for v in errors.values()), errors
    assert float(re.search(r"the book's GRU\) is another cell: \|h difference\| up to ([\d.]+)", out)[1]) > 1e-2


def test_the_books_variant_passes_gradcheck_and_compare_cell_says_numeric_only(out):
    B, H, D = 3, 5, 4
    entries = B * H * (B * D + B * H + 3 * H * D + 3 * H * H + 2 * 3 * H)
    assert f"gradcheck(book GRU step): True, all {entries} Jacobian entries" in out
    assert "gradient check, MyGRU cell" in out and "so autodiff is compared with finite differences only" in out
    rows = re.findall(r"^(cell\.\S+|out\.\S+(?: \(\w\))?) +(\S+) +(\S+) +(ok|FAIL)$", out, re.M)
    assert [r[0] for r in rows] == ["cell.W_x", "cell.W_h", "cell.b_x", "cell.b_h", "out.W (V)", "out.b (c)"]
    assert all(r[3] == "ok" and float(r[1]) < 1e-6 for r in rows)


def test_the_picture_has_one_node_per_weight_used_in_every_step(out):
    assert "cell.W_h: one node, 9 edges out" in out  # 3 slices of W_h in each of 3 steps
    assert "wrote my_gru_unrolled.svg" in out or "note: save: Graphviz's dot program was not found" in out


def test_fit_trains_the_user_cell(out):
    before, after = (float(x) for x in re.search(r"held-out bits/char: ([\d.]+) before, ([\d.]+) after", out).groups())
    assert after < before - 0.5
    assert re.search(r"^cell MyGRU, [\d,]+ parameters, 40 steps of Adam", out, re.M)
    sample = re.search(r"^sample: (.*)$", out, re.M)[1]
    assert sample.startswith("Elizabeth ") and len(sample) == 90
