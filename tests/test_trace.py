"""tr.trace: the program the engine writes equals the engine (loss and every gradient, 1e-12), rolls the
time steps into loops whose length does not grow with T, and runs alone (exec with numpy only)."""
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import nn


class TwoLayerTanhCell(nn.Module):
    """A user cell from ops: h = tanh(W [x; h_prev] + b) -> tanh(U h + c), not a built-in."""

    def __init__(self, D, H, rng):
        self.hidden_size = H
        self.W = tr.Tensor(rng.normal(size=(H, D + H)) * 0.4, requires_grad=True, name="W")
        self.b = tr.Tensor(rng.normal(size=H) * 0.1, requires_grad=True, name="b")
        self.U = tr.Tensor(rng.normal(size=(H, H)) * 0.4, requires_grad=True, name="U")

    def forward(self, x, h):
        if h is None:
            h = tr.zeros(*x.shape[:-1], self.hidden_size)
        a = (tr.concat([x, h], axis=-1) @ self.W.T + self.b).tanh()
        return (a @ self.U.T).tanh() * 0.5 + h * 0.5


def _model(cell, V, H, rng, **kw):
    return nn.CharRNN(V, H, cell=TwoLayerTanhCell(V, H, rng) if cell == "user" else cell, rng=rng, **kw)


def _engine(model, idx, targets):
    loss = nn.cross_entropy(model(idx)[0], targets)
    names = list(model.named_parameters())
    grads = tr.grad(loss, list(model.named_parameters().values()))
    return loss.item(), {n: g.data for n, g in zip(names, grads)}


def _trace_charrnn(model, idx, targets):
    def step(idx, targets):
        return nn.cross_entropy(model(idx)[0], targets)
    return tr.trace(step, idx, targets, params=model.named_parameters())


@pytest.mark.parametrize("cell,kw", [("rnn", {}), ("lstm", {}), ("lstm", {"cell_input": "sigmoid"}), ("gru", {}),
                                     ("user", {})])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_program_equals_engine_on_new_characters(cell, kw, batch):
    rng = np.random.default_rng(0)
    V, H, T = 7, 5, 6
    model = _model(cell, V, H, rng, **kw)
    idx, targets = rng.integers(0, V, (T,) + batch), rng.integers(0, V, (T,) + batch)
    prog = _trace_charrnn(model, idx, targets)
    assert "for t in range(T):" in prog.source and "for t in reversed(range(" in prog.source
    for _ in range(2):  # other characters than the traced ones: the program reads them as arguments
        idx, targets = rng.integers(0, V, (T,) + batch), rng.integers(0, V, (T,) + batch)
        loss, grads = prog(idx, targets)
        want_loss, want = _engine(model, idx, targets)
        assert abs(float(loss) - want_loss) <= 1e-12 * max(1.0, abs(want_loss))
        assert set(grads) == set(want)
        for name in want:
            assert grads[name].shape == want[name].shape
            np.testing.assert_allclose(grads[name], want[name], rtol=0, atol=1e-12, err_msg=name)


def test_the_source_runs_alone_with_only_numpy():
    rng = np.random.default_rng(1)
    model = _model("lstm", 6, 4, rng)
    idx, targets = rng.integers(0, 6, 5), rng.integers(0, 6, 5)
    prog = _trace_charrnn(model, idx, targets)
    assert [line for line in prog.source.splitlines() if "import" in line] == ["import numpy as np"]
    namespace = {}
    exec(prog.source, namespace)  # a fresh namespace: the source imports numpy itself
    params = {n: p.data for n, p in model.named_parameters().items()}
    loss, grads = namespace["step"](params, idx, targets)
    want_loss, want = _engine(model, idx, targets)
    assert abs(loss - want_loss) < 1e-12
    for name in want:
        np.testing.assert_allclose(grads[name], want[name], rtol=0, atol=1e-12)


def test_rolled_source_does_not_grow_with_T_and_reads_like_lossFun():
    lengths = {}
    for T in (5, 60):
        rng = np.random.default_rng(2)
        model = _model("rnn", 8, 6, rng)
        prog = _trace_charrnn(model, rng.integers(0, 8, T), rng.integers(0, 8, T))
        lengths[T] = len(prog.source.splitlines())
        src = prog.source
    assert lengths[5] == lengths[60]
    for piece in ("T = 60", "hs[t] = np.tanh(hs[t - 1] @ W_hh.T + b_h + W_xh[:, idx[t]].T)",
                  "dW_hh += ", "dh_next = ", "dW_xh[:, idx[t]] += ", "# Tanh.backward"):
        assert piece in src, piece


def test_program_reads_the_current_parameters():
    rng = np.random.default_rng(3)
    model = _model("gru", 5, 4, rng)
    idx, targets = rng.integers(0, 5, 4), rng.integers(0, 5, 4)
    prog = _trace_charrnn(model, idx, targets)
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # a training loop: call, step on the program's gradients, call again
        loss, grads = prog(idx, targets)
        want_loss, want = _engine(model, idx, targets)
        assert abs(float(loss) - want_loss) < 1e-12
        for name, p in model.named_parameters().items():
            np.testing.assert_allclose(grads[name], want[name], atol=1e-12)
            p.grad = grads[name]
        opt.step()


def test_other_shapes_and_dtypes_are_refused_in_one_sentence():
    rng = np.random.default_rng(4)
    model = _model("rnn", 5, 3, rng)
    idx, targets = rng.integers(0, 5, 4), rng.integers(0, 5, 4)
    prog = _trace_charrnn(model, idx, targets)
    with pytest.raises(ValueError, match=r"argument idx has shape \(5,\), the program was traced for shape \(4,\)"):
        prog(rng.integers(0, 5, 5), targets)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        prog(idx)
    model.cell.W_hh.data = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"parameter cell.W_hh has shape \(4, 4\), the program was traced for \(3, 3\)"):
        prog(idx, targets)
    x = rng.normal(size=3)
    f = tr.trace(lambda x: (x * x).sum(), x, params={})
    with pytest.raises(TypeError, match="argument x has dtype float32, the program was traced for float64"):
        f(x.astype(np.float32))


def test_refusals_name_what_is_wrong():
    rng = np.random.default_rng(5)
    model = nn.CharRNN(5, 3, cell="rnn", fused=True, rng=rng)
    idx = rng.integers(0, 5, 4)
    with pytest.raises(RuntimeError, match="RNNStep.*fused=False"):
        tr.trace(lambda i, t: nn.cross_entropy(model(i)[0], t), idx, idx, params=model.named_parameters())
    W = tr.Tensor(rng.normal(size=(2, 2)), requires_grad=True)
    with pytest.raises(TypeError, match="one-entry Tensor"):
        tr.trace(lambda: W * 2, params={"W": W})


_UNARY = [("tanh", lambda a: a.tanh()), ("sigmoid", lambda a: a.sigmoid()), ("exp", lambda a: (a * 0.3).exp()),
          ("neg", lambda a: -a), ("sq", lambda a: a * a), ("T", lambda a: a.T), ("sum0", lambda a: a.sum(axis=0)),
          ("softmax", lambda a: a.softmax(axis=-1)), ("logsoftmax", lambda a: a.log_softmax(axis=-1)),
          ("reshape", lambda a: a.reshape(-1)), ("slice", lambda a: a[..., :2]), ("mean", lambda a: a.mean(axis=-1)),
          ("log", lambda a: (a * a + 1.0).log()), ("sqrt", lambda a: (a * a + 1.0).sqrt()),
          ("pow", lambda a: (a * a + 1.0) ** 1.5), ("div", lambda a: a / (a * a + 2.0))]
_BINARY = [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
           ("matmul", lambda a, b: a @ b.T), ("concat", lambda a, b: tr.concat([a, b], axis=-1)),
           ("stack", lambda a, b: tr.stack([a, b]).sum(axis=0))]


def _random_graph(rng):
    """A random expression over two arguments and two weights; every value has shape (3, 4) or is brought
    back to it, so any op can follow any other."""
    plan = []
    for _ in range(rng.integers(3, 9)):
        if rng.random() < 0.5:
            plan.append(("u", int(rng.integers(len(_UNARY))), int(rng.integers(4))))
        else:
            plan.append(("b", int(rng.integers(len(_BINARY))), int(rng.integers(4)), int(rng.integers(4))))

    def fit(v):  # back to (3, 4)
        if v.shape == (3, 4):
            return v
        if v.size == 12:
            return v.reshape(3, 4)
        if v.shape == (4, 3):
            return v.T
        if v.ndim == 2 and v.shape[0] == 3:
            return v[:, :4] if v.shape[1] >= 4 else tr.concat([v] * 4, axis=1)[:, :4]
        return v.sum() + tr.zeros(3, 4)

    def fn(x, y, W, V):
        vals = [x, y, W, V]
        for step in plan:
            if step[0] == "u":
                vals.append(fit(_UNARY[step[1]][1](vals[-1 - step[2] % len(vals)])))
            else:
                a, b = vals[-1 - step[2] % len(vals)], vals[-1 - step[3] % len(vals)]
                vals.append(fit(_BINARY[step[1]][1](a, b)))
        return (vals[-1] * vals[-2]).sum() + (vals[-3] ** 2).sum() + (W * V).sum() * 0.1
    return fn


def test_random_expression_graphs_equal_the_engine():
    rng = np.random.default_rng(6)
    for n in range(25):
        fn = _random_graph(rng)
        W = tr.Tensor(rng.normal(size=(3, 4)), requires_grad=True)
        V = tr.Tensor(rng.normal(size=(3, 4)), requires_grad=True)
        x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
        prog = tr.trace(lambda x, y: fn(x, y, W, V), x, y, params={"W": W, "V": V})
        for args in ((x, y), (rng.normal(size=(3, 4)), rng.normal(size=(3, 4)))):  # new values too
            loss = fn(tr.Tensor(args[0]), tr.Tensor(args[1]), W, V)
            want = [np.zeros((3, 4)) if g is None else g.data for g in tr.grad(loss, [W, V], allow_unused=True)]
            got_loss, got = prog(*args)
            assert abs(float(got_loss) - loss.item()) <= 1e-12 * max(1.0, abs(loss.item())), n
            np.testing.assert_allclose(got["W"], want[0], rtol=1e-12, atol=1e-12, err_msg=str(n))
            np.testing.assert_allclose(got["V"], want[1], rtol=1e-12, atol=1e-12, err_msg=str(n))


def test_cli_trace_writes_the_step(tmp_path):
    out = tmp_path / "step.py"
    run = subprocess.run([sys.executable, "-m", "tinygrad_rnn", "trace", "--cell", "lstm", "--steps", "6",
                          "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    source = out.read_text()
    namespace = {}
    exec(source, namespace)
    assert "for t in reversed(range(" in source and "T = 6" in source
    assert callable(namespace["step"])
    printed = subprocess.run([sys.executable, "-m", "tinygrad_rnn", "trace", "--steps", "3"],
                             capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0 and "def step(params, idx, targets):" in printed.stdout
    bad = subprocess.run([sys.executable, "-m", "tinygrad_rnn", "trace", "--steps", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "steps" in bad.stderr


def test_float32_stays_float32_and_a_step_number_is_not_a_character():
    rng = np.random.default_rng(7)
    model = _model("lstm", 10, 6, rng, dtype=np.float32)
    idx = np.arange(5)  # idx[t] == t at every step: the loop still reads W_x[:, idx[t]] but dstacked[t]
    prog = _trace_charrnn(model, idx, idx[::-1].copy())
    assert "W_x[:, idx[t]]" in prog.source and "dstacked[t]" in prog.source
    other_idx, other_targets = rng.integers(0, 10, 5), rng.integers(0, 10, 5)
    loss, grads = prog(other_idx, other_targets)
    want_loss, want = _engine(model, other_idx, other_targets)
    assert np.asarray(loss).dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert abs(float(loss) - want_loss) < 1e-4
    for name in want:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-4, atol=1e-5)
