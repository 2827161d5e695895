"""Issue 23, the first hour of a new user: the README's prototyper code runs as printed (a cell, an op with
save_for_backward, backward and jvp), a user cell's checkpoint samples from the command line, multi-layer
CharRNN equals torch.nn.RNN(num_layers=...), and the library's calls run BLAS on one thread, scoped."""
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from test_cli import fails, run
import tinygrad_rnn as tr
from tinygrad_rnn import check, nn, train

ROOT = Path(__file__).resolve().parent.parent


def readme_python(section: str) -> list:
    """The ```python blocks of the README section whose heading starts with `section`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = re.split(r"^## ", text, flags=re.M)
    part = next(b for b in body if b.startswith(section))
    return re.findall(r"^```python\n(.*?)^```", part, re.S | re.M)


@pytest.fixture(scope="module")
def prototyper(tmp_path_factory):
    """The prototyper section's two blocks run as printed, in a scratch directory: their namespace."""
    d = tmp_path_factory.mktemp("prototyper")
    cell_block, op_block = readme_python("Your first ten minutes prototyping a cell")
    here = os.getcwd()
    os.chdir(d)
    try:
        names: dict = {}
        exec(compile(cell_block, "README cell block", "exec"), names)
        exec(compile(op_block, "README op block", "exec"), names)
    finally:
        os.chdir(here)
    names["dir"], names["cell_source"] = d, cell_block.split("\nmodel =")[0]
    return names


def test_the_readme_op_has_softsigns_derivative_both_ways(prototyper):
    x, dy = prototyper["x"], prototyper["dy"]
    want = 1 / (1 + np.abs(x.data)) ** 2                       # d/dx x/(1+|x|), by hand
    np.testing.assert_allclose(x.grad, want, rtol=1e-15)
    np.testing.assert_allclose(dy, want, rtol=1e-15)           # J·1: the diagonal Jacobian's entries
    torch = pytest.importorskip("torch")
    t = torch.tensor(x.data, requires_grad=True)
    torch.nn.functional.softsign(t).sum().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-15)


def test_the_readme_cell_checks_trains_and_samples_from_the_command_line(prototyper):
    d, run_ = prototyper["dir"], prototyper["run"]
    assert prototyper["check"].compare_cell(prototyper["model"], np.array([1, 0, 2]), np.array([0, 2, 2])).ok
    assert run_.config.cell == "MGU" and run_.step == 100 and (d / "mgu.npz").exists()
    (d / "mycell.py").write_text(prototyper["cell_source"], encoding="utf-8")
    rc, out, err = run("sample", "mgu.npz", "--cell-module", "mycell:MGU", "--length", "30", "--seed", "0", cwd=d)
    assert rc == 0 and len(out) == 30 and set(out) <= set(run_.vocab.chars), err
    fails(1, "sample", "mgu.npz", cwd=d, says="user-written MGU cell; load it in Python with "
                                              "train.Run.load(path, cell=MGU), or sample it with")
    fails(1, "sample", "mgu.npz", "--cell-module", "nomodule:MGU", cwd=d, says="cannot import nomodule")
    fails(1, "sample", "mgu.npz", "--cell-module", "mycell:Nope", cwd=d, says="mycell has no class Nope")
    fails(2, "sample", "mgu.npz", "--cell-module", "mycell", cwd=d, says="--cell-module wants MODULE:CLASS")


@pytest.mark.parametrize("cell, torch_class", [("rnn", "RNN"), ("lstm", "LSTM"), ("gru", "GRU")])
def test_a_multi_layer_charrnn_is_torch_nn_rnn_with_num_layers(cell, torch_class):
    torch = pytest.importorskip("torch")
    V, H, L, T, B = 5, 4, 3, 6, 2
    model = nn.CharRNN(V, H, cell, num_layers=L, rng=np.random.default_rng(0))
    torch.manual_seed(0)
    reference = getattr(torch.nn, torch_class)(V, H, num_layers=L).double()
    weights = reference.state_dict()
    for layer, c in enumerate(model.cell.layers()):
        c.load_torch_state_dict({k[:-len(f"_l{layer}")]: v for k, v in weights.items() if k.endswith(f"_l{layer}")})
    idx = np.random.default_rng(1).integers(0, V, (T, B))
    _, states = model.unroll(idx)
    out, h_n = reference(torch.nn.functional.one_hot(torch.tensor(idx), V).double())
    top = np.stack([model.hidden(s).data for s in states])     # (T, B, H): the top layer's h_t
    np.testing.assert_allclose(top, out.detach().numpy(), atol=1e-12)
    last = h_n[0] if cell == "lstm" else h_n                   # (L, B, H): every layer's last h
    for layer, s in enumerate(states[-1]):
        h = s[0] if cell == "lstm" else s
        np.testing.assert_allclose(h.data, last[layer].detach().numpy(), atol=1e-12)


def test_a_multi_layer_charrnn_has_autodiff_gradients_and_refuses_what_it_cannot_stack():
    model = nn.CharRNN(4, 3, "lstm", num_layers=2, rng=np.random.default_rng(0))
    assert sorted(model.named_parameters())[:3] == ["cell.layer0.W_h", "cell.layer0.W_x", "cell.layer0.b"]
    assert model.named_parameters()["cell.layer1.W_x"].shape == (12, 3)  # layer 1 reads layer 0's h
    report = check.compare_cell(model, np.array([1, 0, 2, 2]), np.array([0, 2, 2, 3]))
    assert report.ok
    for kw in (dict(fused=True), dict(learn_h0=True), dict(num_layers=0)):
        with pytest.raises(ValueError, match="^CharRNN: num_layers"):
            nn.CharRNN(4, 3, "rnn", **{"num_layers": 2, **kw})


# ---- BLAS threads -----------------------------------------------------------------------------------
def _blas_threads():
    from threadpoolctl import threadpool_info
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def blas_free(monkeypatch):
    """No BLAS thread variable set and BLAS on more than one thread, as a user's script starts."""
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_limits
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to limit")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    from tinygrad_rnn import _blas
    monkeypatch.setattr(_blas, "_chosen", None)  # the library reads the environment once: again here
    with threadpool_limits(2, user_api="blas"):
        if not _blas_threads() or max(_blas_threads()) < 2:
            pytest.skip("this NumPy's BLAS is single-threaded")
        yield


TEXT = "the cat sat on the mat and the dog ran far " * 20


def test_training_runs_blas_on_one_thread_and_gives_the_callers_setting_back(blas_free):
    seen = []
    run_ = train.Run.start(train.Config(cell="lstm", hidden=8, seq_len=5, batch=2, eval_every=2), TEXT)
    train.fit(run_, TEXT, 3, on_step=lambda *a: seen.append(_blas_threads()),
              on_eval=lambda *a: seen.append(_blas_threads()))
    assert seen and all(max(t) == 1 for t in seen)
    assert max(_blas_threads()) == 2  # back as the caller had it
    tr.analysis.influence(nn.CharRNN(4, 3, rng=np.random.default_rng(0)), np.array([1, 0, 2]), np.array([0, 2, 2]))
    assert max(_blas_threads()) == 2


def test_a_users_blas_variable_wins(blas_free, monkeypatch):
    from tinygrad_rnn import _blas
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setattr(_blas, "_chosen", None)
    seen = []
    run_ = train.Run.start(train.Config(cell="rnn", hidden=8, seq_len=5, batch=2), TEXT)
    train.fit(run_, TEXT, 2, on_step=lambda *a: seen.append(_blas_threads()))
    assert all(max(t) == 2 for t in seen)


def test_threadpoolctl_is_a_dependency_and_the_plot_hint_is_one_command():
    setup = (ROOT / "setup.cfg").read_text()
    assert re.search(r"install_requires =(\n    .*)*\n    threadpoolctl", setup)
    for path in [ROOT / "README.md", *sorted((ROOT / "tinygrad_rnn").glob("*.py"))]:
        assert "tinygrad_rnn[plot]" not in path.read_text(encoding="utf-8"), path


def test_the_readme_notebook_command_leaves_the_lesson_as_it_is(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    lesson = sorted((ROOT / "examples").glob("01_*.py"))[0]
    assert f"jupytext --to notebook examples/{lesson.name}" in (ROOT / "README.md").read_text(encoding="utf-8")
    copy = tmp_path / lesson.name
    copy.write_bytes(lesson.read_bytes())
    import subprocess
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "notebook", str(copy)], check=True,
                   capture_output=True, timeout=120)
    assert copy.read_bytes() == lesson.read_bytes()
    notebook = jupytext.read(copy.with_suffix(".ipynb"))
    kinds = [c.cell_type for c in notebook.cells]
    assert kinds[0] == "markdown" and kinds.count("code") >= 3  # the docstring is text, not code that prints itself
    assert notebook.cells[0].source.startswith("01 · hello")


class _Probe(nn.Module):
    """A module that notes the BLAS threads its forward, and its op's backward, run with."""

    def __init__(self, hidden_size, seen):
        self.hidden_size, self.seen, self.W = hidden_size, seen, tr.Tensor(np.eye(2), requires_grad=True)

    def forward(self, x):
        self.seen.append(("forward", max(_blas_threads())))
        return _Noting.apply(x @ self.W, seen=self.seen)


class _Noting(tr.Function):
    @staticmethod
    def forward(ctx, a, seen):
        ctx.seen = seen
        return a

    @staticmethod
    def backward(ctx, g):
        ctx.seen.append(("backward", max(_blas_threads())))
        return (g,)


def test_a_small_models_forward_and_every_backward_run_blas_on_one_thread(blas_free):
    seen = []
    _Probe(8, seen)(tr.Tensor(np.ones((3, 2)))).sum().backward()
    _Probe(4096, seen)(tr.Tensor(np.ones((3, 2))))     # a big model: BLAS as the caller has it
    assert seen == [("forward", 1), ("backward", 1), ("forward", 2)]
    assert max(_blas_threads()) == 2


def test_lessons_write_their_pictures_into_out():
    for lesson in sorted((ROOT / "examples").glob("[0-9][0-9]_*.py")):
        source = lesson.read_text(encoding="utf-8")
        for written in re.findall(r"(?:viz\.save\(.*?|savefig\()\s*['\"]([^'\"]+)['\"]", source):
            assert written.startswith("out/"), (lesson.name, written)
