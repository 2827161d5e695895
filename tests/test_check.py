"""check: gradcheck passes on correct ops and names the input of a wrong one; compare and compare_cell reports."""
import re

import numpy as np
import pytest
from helpers import MGU, WrongSin, assert_grads_match
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, check, manual, nn


class Sin(tr.Function):
    """y = sin(a);  dL/da = g * cos(a)"""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.sin(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.cos(a),)


class UnreversedFlip(tr.Function):
    """y = a[::-1] whose backward forgets to flip g back: right for g = ones, wrong for most other g."""

    @staticmethod
    def forward(ctx, a):
        return a[::-1].copy()

    @staticmethod
    def backward(ctx, g):
        return (g,)


class ScaleForgetsB(tr.Function):
    """y = a * b whose backward gives b no gradient at all."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b, None


class Close(tr.Function):
    """y = 1e-3 a**3 with a gradient 5e-4 too large (relative): passes or fails by the tolerances."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return 1e-3 * a ** 3

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * 3e-3 * a ** 2 * (1 + 5e-4),)


# ---- gradcheck on correct ops -------------------------------------------------------------------------
OPS = {
    "matmul_tanh": (lambda x, W: (x @ W.T).tanh(), [(3, 4), (5, 4)]),
    "broadcast_mul_add": (lambda a, b, c: a * b + c, [(3, 4), (4,), (3, 1)]),
    "div_pow": (lambda a, b: a / (b * b + 1.0) ** 1.5, [(2, 3), (2, 3)]),
    "exp_log_sigmoid": (lambda a: (a.exp() + 1.0).log() * a.sigmoid(), [(5,)]),
    "softmax_rows": (lambda a: a.softmax(axis=-1), [(3, 4)]),
    "log_softmax_cols": (lambda a: a.log_softmax(axis=0), [(3, 4)]),
    "sum_mean_axes": (lambda a: a.sum(axis=0) * a.mean(axis=1, keepdims=True), [(3, 4)]),
    "getitem_repeats": (lambda a: a[np.array([0, 2, 0, 0])] * 2.0, [(3, 2)]),
    "concat_stack_where": (lambda a, b: tr.stack([tr.concat([a, b], axis=1)[:, 1:4],
                                                  tr.where(a.data > 0, a, b * b)]), [(2, 3), (2, 3)]),
    "reshape_transpose": (lambda a: a.reshape(4, 3).transpose(1, 0) @ a.reshape(3, 4).T, [(2, 6)]),
    "custom_sin": (lambda a: Sin.apply(a) * a, [(2, 3)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_passes_on_engine_ops(name):
    rng = np.random.default_rng(0)
    fn, shapes = OPS[name]
    assert_grads_match(fn, *[rng.standard_normal(s) for s in shapes])


def test_gradcheck_checks_every_output_entry():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    # with the all-ones seed the unflipped gradient is right; only single output entries expose it
    out = UnreversedFlip.apply(x)
    out.backward(grad=np.ones(4))
    np.testing.assert_array_equal(x.grad, np.ones(4))
    with pytest.raises(check.GradcheckError) as info:
        check.gradcheck(UnreversedFlip.apply, Tensor(x.data, requires_grad=True))
    err = info.value
    # every mismatch is 1 vs 0; the first in row order is output 0 against input 0
    assert (err.output_index, err.input_index) == ((0,), (0,))
    assert (err.analytic, err.numerical) == (1.0, pytest.approx(0.0))
    assert "8 of 16 Jacobian entries fail" in str(err)


def test_gradcheck_fails_on_wrong_backward_and_names_the_input():
    rng = np.random.default_rng(0)
    scale = Tensor(rng.standard_normal(3), requires_grad=True, name="scale")
    x = Tensor(rng.uniform(0.5, 1.5, size=(2, 3)), requires_grad=True, name="x")
    with pytest.raises(check.GradcheckError) as info:
        check.gradcheck(lambda s, a: WrongSin.apply(a) * s, (scale, x))
    err = info.value
    assert isinstance(err, RuntimeError)
    assert (err.input_position, err.input_name) == (1, "x")
    row, col = err.input_index
    assert err.output_index == (row, col)  # sin is elementwise: the worst entry is on the diagonal
    a, s = x.data[row, col], scale.data[col]
    assert err.analytic == pytest.approx(s * np.sin(a), rel=1e-12)
    assert err.numerical == pytest.approx(s * np.cos(a), rel=1e-6)
    message = str(err)
    assert "input 1 ('x')" in message
    assert f"output[{row}, {col}]" in message and f"input[{row}, {col}]" in message
    assert f"{err.analytic:.10g}" in message and f"{err.numerical:.10g}" in message


def test_gradcheck_counts_a_missing_gradient_as_zero():
    rng = np.random.default_rng(0)
    a, b = (Tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2))
    with pytest.raises(check.GradcheckError) as info:
        check.gradcheck(ScaleForgetsB.apply, (a, b))
    assert info.value.input_position == 1 and info.value.input_name is None
    assert info.value.analytic == 0.0
    i = info.value.input_index[0]
    assert info.value.numerical == pytest.approx(a.data[i], rel=1e-8)
    # an input the output does not depend on: zero analytic, zero numerical, passes
    assert check.gradcheck(lambda p, q: p * 2.0, (a, b)) is True


def test_gradcheck_leaves_inputs_and_other_leaves_as_they_were():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    W = Tensor(rng.standard_normal((4, 3)), requires_grad=True)  # used by fn, not checked
    x.grad = np.full((2, 3), 7.0)
    data, grad, data_copy = x.data, x.grad, x.data.copy()
    assert check.gradcheck(lambda t: (t @ W.T).tanh(), x)
    assert x.data is data and x.grad is grad
    np.testing.assert_array_equal(x.data, data_copy)
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 7.0))
    assert W.grad is None


def test_gradcheck_restores_inputs_when_fn_raises():
    x = Tensor(np.ones(3), requires_grad=True)
    data = x.data
    with pytest.raises(ValueError, match="matmul"):
        check.gradcheck(lambda t: t @ np.ones((4, 2)), x)
    assert x.data is data and x.grad is None


def test_gradcheck_checks_float32_inputs_in_float64():
    # in float32, x + 1e-6 rounds to x for |x| ~ 1, so the numerical gradient would be 0 and fail
    x = Tensor(np.array([0.7, 1.3, -1.1], dtype=np.float32), requires_grad=True)
    assert check.gradcheck(lambda t: Sin.apply(t) * t, x)
    assert x.data.dtype == np.float32 and x.grad is None
    with pytest.raises(check.GradcheckError):
        check.gradcheck(lambda t: WrongSin.apply(t), x)


def test_gradcheck_rejects_bad_arguments():
    x = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="no input requires grad"):
        check.gradcheck(lambda t: t * 2.0, Tensor(np.ones(2)))
    with pytest.raises(TypeError, match="must return a Tensor"):
        check.gradcheck(lambda t: t.data, x)
    with pytest.raises(TypeError, match="input 0 is a ndarray"):
        check.gradcheck(lambda t: t, (np.ones(2),))
    with pytest.raises(ValueError, match="not a leaf"):
        check.gradcheck(lambda t: t, x * 2.0)


def test_gradcheck_tolerances_follow_allclose():
    # the numerical derivative of 1e-3 * x**3 at 1 is 3e-3 (to ~1e-12); analytic claims 3e-3 * (1 + 5e-4)
    x = Tensor(np.array([1.0]), requires_grad=True)
    assert check.gradcheck(Close.apply, x, atol=0.0, rtol=1e-3)
    with pytest.raises(check.GradcheckError):
        check.gradcheck(Close.apply, x, atol=0.0, rtol=1e-4)
    assert check.gradcheck(Close.apply, x, atol=2e-6, rtol=0.0)


@pytest.mark.parametrize("atol,rtol,verdict", [(0.0, 1e-3, True), (0.0, 1e-4, False), (2e-6, 0.0, True),
                                               (1e-6, 0.0, False), (1e-5, 1e-3, True)])
def test_gradcheck_verdicts_match_pytorch(atol, rtol, verdict):
    torch = pytest.importorskip("torch")

    class TorchClose(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return 1e-3 * a ** 3

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * 3e-3 * a ** 2 * (1 + 5e-4)

    x = np.array([1.0, -0.5])
    theirs = torch.autograd.gradcheck(TorchClose.apply, (torch.tensor(x, requires_grad=True),), eps=1e-6,
                                      atol=atol, rtol=rtol, raise_exception=False)
    try:
        ours = check.gradcheck(Close.apply, Tensor(x, requires_grad=True), eps=1e-6, atol=atol, rtol=rtol)
    except check.GradcheckError:
        ours = False
    assert ours == theirs == verdict


CELLS = [("rnn", {}), ("lstm", {"cell_input": "tanh"}), ("lstm", {"cell_input": "sigmoid"}), ("gru", {})]


# ---- gradcheck on nn --------------------------------------------------------------------------------------
def test_gradcheck_passes_on_linear_and_rnn_cell():
    rng = np.random.default_rng(0)
    lin = nn.Linear(3, 2, rng=np.random.default_rng(0))
    cell = nn.RNNCell(3, 4, rng=np.random.default_rng(0))
    x, h = (Tensor(rng.standard_normal(s), requires_grad=True) for s in [(2, 3), (2, 4)])
    assert check.gradcheck(lambda x, W, b: lin(x), (x, *lin.named_parameters().values()))
    params = cell.named_parameters()
    assert check.gradcheck(lambda x, h, *_: cell(x, h), (x, h, params["W_xh"], params["W_hh"], params["b_h"]))
    assert all(p.grad is None for p in [*lin.parameters(), *cell.parameters()])


@pytest.mark.parametrize("cell_input", ["tanh", "sigmoid"])
def test_gradcheck_passes_on_lstm_cell_both_outputs(cell_input):
    rng = np.random.default_rng(0)
    cell = nn.LSTMCell(3, 2, cell_input=cell_input, rng=np.random.default_rng(0))
    x, h, s = (Tensor(rng.standard_normal(shape), requires_grad=True) for shape in [(2, 3), (2, 2), (2, 2)])
    params = cell.named_parameters()
    inputs = (x, h, s, params["W_x"], params["W_h"], params["b"])
    assert check.gradcheck(lambda x, h, s, *_: cell(x, (h, s))[0], inputs)
    assert check.gradcheck(lambda x, h, s, *_: cell(x, (h, s))[1], inputs)


def test_gradcheck_passes_on_cross_entropy():
    rng = np.random.default_rng(0)
    targets = np.array([2, 0, 1, 2])
    for reduction in ("sum", "mean"):
        assert_grads_match(lambda z: nn.cross_entropy(z, targets, reduction=reduction),
                           rng.standard_normal((4, 3)))


@pytest.mark.parametrize("cell,kw", CELLS)
def test_gradcheck_passes_on_char_rnn_logits(cell, kw):
    model = nn.CharRNN(4, 3, cell=cell, rng=np.random.default_rng(0), **kw)
    idx = np.array([[0, 3], [2, 2]])  # (T, B): every logit of every step and batch row is checked
    assert check.gradcheck(lambda *_: model(idx)[0], tuple(model.named_parameters().values()))


# ---- compare ---------------------------------------------------------------------------------------------
def _grads(rng):
    return {"W_xh": rng.standard_normal((3, 4)), "b_h": rng.standard_normal(3), "b_y": rng.standard_normal(4)}


def _parse(text):
    """Rows of the text table: name -> (max abs, max rel, verdict)."""
    rows = {}
    for line in text.splitlines()[2:]:
        name, max_abs, max_rel, verdict = line.split(None, 3)
        rows[name] = (max_abs, max_rel, verdict)
    return rows


def test_compare_equal_gradients_pass_with_zero_error():
    rng = np.random.default_rng(0)
    a = _grads(rng)
    report = check.compare(a, {k: v.copy() for k, v in a.items()})
    assert report.ok and bool(report)
    assert [r.name for r in report.rows] == ["W_xh", "b_h", "b_y"]
    assert all(r.max_abs == 0.0 and r.max_rel == 0.0 and r.passed for r in report.rows)


def test_compare_flags_a_perturbed_gradient_with_its_errors():
    rng = np.random.default_rng(0)
    a = _grads(rng)
    b = {k: v.copy() for k, v in a.items()}
    b["W_xh"][1, 2] += 1e-3
    report = check.compare(a, b)
    assert not report.ok and not bool(report)
    row = report["W_xh"]
    assert not row.passed
    assert row.max_abs == pytest.approx(1e-3, rel=1e-9)
    big = max(abs(a["W_xh"][1, 2]), abs(b["W_xh"][1, 2]))
    assert row.max_rel == pytest.approx(1e-3 / big, rel=1e-9)
    assert report["b_h"].passed and report["b_y"].passed
    # a looser tolerance lets the same difference through
    assert check.compare(a, b, atol=2e-3).ok


def test_compare_relative_error_uses_the_larger_magnitude_and_zero_is_exact():
    report = check.compare({"p": np.array([2.0, 0.0, -1e-300])}, {"p": np.array([1.0, 0.0, 1e-300])},
                           atol=0.0, rtol=0.6)
    row = report["p"]
    assert row.max_abs == 1.0
    assert row.max_rel == 2.0  # 2e-300 / 1e-300 at the sign flip
    assert not row.passed


def test_compare_reports_missing_keys_and_shape_mismatches_as_failures():
    a = {"W": np.ones((2, 2)), "b": np.ones(2)}
    b = {"W": np.ones((2, 3)), "c": np.ones(2)}
    report = check.compare(a, b, names=("mine", "yours"))
    assert [r.name for r in report.rows] == ["W", "b", "c"]
    assert not any(r.passed for r in report.rows)
    assert report["W"].note == "shapes (2, 2) and (2, 3) differ"
    assert report["b"].note == "missing from yours" and report["c"].note == "missing from mine"
    assert np.isnan(report["b"].max_abs)
    with pytest.raises(KeyError, match="no parameter 'd'"):
        report["d"]


def test_compare_fails_a_nan_gradient_and_shows_it():
    report = check.compare({"p": np.array([1.0, np.nan])}, {"p": np.array([1.0, 2.0])})
    assert not report.ok and np.isnan(report["p"].max_abs)
    assert _parse(str(report))["p"] == ("nan", "nan", "FAIL")


def test_compare_takes_tensor_data():
    a = {"W": Tensor(np.array([1.0, 2.0]))}
    assert check.compare(a, {"W": np.array([1.0, 2.5])})["W"].max_abs == 0.5


def test_compare_text_table_shows_each_rows_numbers():
    rng = np.random.default_rng(0)
    a = _grads(rng)
    b = {k: v + 1e-10 * rng.standard_normal(v.shape) for k, v in a.items()}
    b["b_h"][0] += 0.25
    del b["b_y"]
    report = check.compare(a, b)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("autodiff vs manual: 1 of 3 parameters pass")
    assert lines[1].split() == ["parameter", "max", "abs", "err", "max", "rel", "err", "pass"]
    rows = _parse(text)
    assert set(rows) == {"W_xh", "b_h", "b_y"}
    for name in ("W_xh", "b_h"):
        r = report[name]
        assert float(rows[name][0]) == pytest.approx(r.max_abs, rel=1e-2)
        assert float(rows[name][1]) == pytest.approx(r.max_rel, rel=1e-2)
    assert rows["W_xh"][2] == "ok" and rows["b_h"][2] == "FAIL"
    assert float(rows["b_h"][0]) == pytest.approx(0.25, rel=1e-2)
    assert rows["b_y"] == ("-", "-", "FAIL  missing from manual")
    # right-aligned: each row's max rel cell ends under the end of its header
    end = lines[1].index("max rel err") + len("max rel err")
    assert all(line[:end].endswith(rows[line.split()[0]][1]) for line in lines[2:])


def test_compare_html_table_has_one_row_per_parameter():
    a = {"<W>": np.ones(2), "b": np.ones(2)}
    report = check.compare(a, {"<W>": np.ones(2), "b": np.zeros(2)})
    page = report._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    cells = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td[^>]*>(.*?)</td></tr>", page)
    assert cells == [("&lt;W&gt;", "0.00e+00", "0.00e+00", "ok"), ("b", "1.00e+00", "1.00e+00", "FAIL")]


@given(arrays(np.float64, st.integers(1, 6), elements=st.floats(-1e3, 1e3)),
       arrays(np.float64, 6, elements=st.floats(-1e3, 1e3)))
def test_compare_is_symmetric_and_bounds_each_entry(a, noise):
    b = a + noise[:a.size]
    ab, ba = check.compare({"p": a}, {"p": b}), check.compare({"p": b}, {"p": a})
    assert ab.rows[0].max_abs == ba.rows[0].max_abs == np.max(np.abs(a - b))
    assert ab.rows[0].max_rel == ba.rows[0].max_rel <= 2.0  # |a - b| <= 2 max(|a|, |b|)
    assert ab.ok == ba.ok


# ---- compare_cell ----------------------------------------------------------------------------------------
def _model(cell, seed=0, **kw):
    return nn.CharRNN(5, 3, cell=cell, rng=np.random.default_rng(seed), **kw)


@pytest.mark.parametrize("cell,kw", CELLS)
@pytest.mark.parametrize("shape", [(4,), (3, 2)])
def test_compare_cell_all_three_agree(cell, kw, shape):
    rng = np.random.default_rng(1)
    model = _model(cell, **kw)
    inputs, targets = rng.integers(0, 5, size=shape), rng.integers(0, 5, size=shape)
    before = {k: (p.data, p.data.copy()) for k, p in model.named_parameters().items()}
    report = check.compare_cell(model, inputs, targets)
    assert report.ok, str(report)
    assert all(r.max_abs < 1e-10 for r in report.reports[("autodiff", "manual")].rows)
    assert all(r.max_abs < 1e-6 for pair in report.reports.values() for r in pair.rows)
    assert report.losses["autodiff"] == pytest.approx(report.losses["manual"], abs=1e-12)
    for k, p in model.named_parameters().items():
        assert p.data is before[k][0] and p.grad is None
        np.testing.assert_array_equal(p.data, before[k][1])


def test_compare_cell_gradients_are_the_real_ones():
    rng = np.random.default_rng(2)
    model = _model("rnn")
    inputs, targets = rng.integers(0, 5, size=4), rng.integers(0, 5, size=4)
    report = check.compare_cell(model, inputs, targets)
    params = model.named_parameters()
    names = {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"}
    weights = {m: params[k].data for k, m in names.items()}
    loss, _, _ = manual.rnn_bptt(weights, inputs, targets, np.zeros(3))
    assert report.losses["manual"] == loss
    logits, _ = model(inputs)
    assert report.losses["autodiff"] == pytest.approx(nn.cross_entropy(logits, targets, reduction="sum").item(),
                                                      abs=1e-12)
    assert loss > 0.5 * 4 * np.log(5)  # a fresh model is near chance, not a zero loss that would match anything


def test_compare_cell_uses_the_given_state():
    rng = np.random.default_rng(3)
    model = _model("lstm")
    inputs, targets = rng.integers(0, 5, size=3), rng.integers(0, 5, size=3)
    state = (rng.standard_normal(3), rng.standard_normal(3))
    with_state = check.compare_cell(model, inputs, targets, state=state)
    zero_state = check.compare_cell(model, inputs, targets)
    assert with_state.ok and zero_state.ok
    assert with_state.losses["autodiff"] != pytest.approx(zero_state.losses["autodiff"], abs=1e-6)


def test_compare_cell_flags_a_wrong_manual_gradient(monkeypatch):
    rng = np.random.default_rng(4)
    model = _model("rnn")
    inputs, targets = rng.integers(0, 5, size=4), rng.integers(0, 5, size=4)
    right = manual.rnn_bptt

    def off_by_transpose(params, inputs, targets, h0):  # the classic slip: dW_hh = h_{t-1} dhraw^T
        loss, grads, h = right(params, inputs, targets, h0)
        return loss, {**grads, "W_hh": grads["W_hh"].T}, h

    monkeypatch.setattr(manual, "rnn_bptt", off_by_transpose)
    report = check.compare_cell(model, inputs, targets)
    assert not report.ok
    failing = {pair: [r.name for r in rep.rows if not r.passed] for pair, rep in report.reports.items()}
    assert failing == {("autodiff", "manual"): ["cell.W_hh"], ("autodiff", "numeric"): [],
                       ("manual", "numeric"): ["cell.W_hh"]}
    assert report.loss_ok and "DISAGREEMENT: see the FAIL rows" in str(report)


def test_compare_cell_flags_a_different_forward(monkeypatch):
    rng = np.random.default_rng(4)
    inputs, targets = rng.integers(0, 5, size=4), rng.integers(0, 5, size=4)
    right = manual.rnn_bptt
    monkeypatch.setattr(manual, "rnn_bptt", lambda *args: (right(*args)[0] + 1e-3, *right(*args)[1:]))
    report = check.compare_cell(_model("rnn"), inputs, targets)
    assert not report.loss_ok and not report.ok
    assert all(rep.ok for rep in report.reports.values())
    assert "(DIFFERENT)" in str(report) and "different losses" in str(report)


def test_compare_cell_table_names_parameters_both_ways():
    rng = np.random.default_rng(5)
    model = _model("rnn")
    inputs, targets = rng.integers(0, 5, size=4), rng.integers(0, 5, size=4)
    report = check.compare_cell(model, inputs, targets)
    text = str(report)
    lines = text.splitlines()
    assert "rnn cell" in lines[0] and "T=4" in lines[0]
    assert "all three agree" in text
    title = next(line for line in lines if "autodiff vs manual" in line and "manual vs numeric" in line)
    header = lines[lines.index(title) + 1]
    assert header.split() == ["parameter"] + ["max", "abs", "max", "rel", "pass"] * 3
    labels = {"cell.W_xh (U, W_xh)": "cell.W_xh", "cell.W_hh (W, W_hh)": "cell.W_hh",
              "cell.b_h (b, b_h)": "cell.b_h", "out.W (V, W_hy)": "out.W", "out.b (c, b_y)": "out.b"}
    body = lines[lines.index(header) + 1:]
    assert len(body) == 5
    for line, (label, name) in zip(body, labels.items()):
        assert line.startswith(label)
        cells = line[len(label):].split()
        assert len(cells) == 9 and cells[2::3] == ["ok"] * 3
        for k, pair in enumerate(check._PAIRS):
            assert float(cells[3 * k]) == pytest.approx(report.reports[pair][name].max_abs, rel=1e-2, abs=1e-300)
    # each group title starts where its group's first number starts
    for group in ("autodiff vs manual", "autodiff vs numeric", "manual vs numeric"):
        start = title.index(group)
        assert all(line[start - 1] == " " and line[start].isdigit() for line in body)
    html = report._repr_html_()
    assert html.count("<tr>") == 2 + 5 and "cell.W_hh (W, W_hh)" in html


def test_compare_cell_labels_lstm_blocks():
    rng = np.random.default_rng(6)
    args = rng.integers(0, 5, size=2), rng.integers(0, 5, size=2)
    book = check.compare_cell(_model("lstm", cell_input="sigmoid"), *args)
    assert list(book.labels.values())[:3] == ["cell.W_x (U^g|U^f|U|U^o, W_x)", "cell.W_h (W^g|W^f|W|W^o, W_h)",
                                              "cell.b (b^g|b^f|b|b^o, b)"]
    assert "calls them g|f|(cell input)|q" in str(book)
    # the default tanh cell input is PyTorch's LSTM, not the book's: no book symbols on its gate weights
    tanh = check.compare_cell(_model("lstm"), *args)
    assert list(tanh.labels.values()) == ["cell.W_x (W_x)", "cell.W_h (W_h)", "cell.b (b)",
                                          "out.W (V, W_hy)", "out.b (c, b_y)"]
    assert "U^g" not in str(tanh) and "cell_input='sigmoid'" in str(tanh)


def test_compare_cell_gru_has_no_book_gate_symbols():
    rng = np.random.default_rng(6)
    report = check.compare_cell(_model("gru"), rng.integers(0, 5, size=3), rng.integers(0, 5, size=3))
    assert report.ok and report.pairs == check._PAIRS
    assert list(report.labels.values()) == ["cell.W_x (W_x)", "cell.W_h (W_h)", "cell.b_x (b_x)", "cell.b_h (b_h)",
                                            "out.W (V, W_hy)", "out.b (c, b_y)"]
    assert "gru cell" in str(report) and "r|z|n" in str(report)


@pytest.mark.parametrize("shape", [(4,), (3, 2)])
def test_compare_cell_on_a_user_cell_is_autodiff_vs_numeric_and_says_so(shape):
    rng = np.random.default_rng(7)
    model = nn.CharRNN(5, 3, cell=MGU(5, 3, rng), rng=rng)
    inputs, targets = rng.integers(0, 5, size=shape), rng.integers(0, 5, size=shape)
    h0 = rng.standard_normal(shape[1:] + (3,))
    report = check.compare_cell(model, inputs, targets, state=h0)
    assert report.ok and report.pairs == (("autodiff", "numeric"),) and "manual" not in report.losses
    assert set(report.labels) == set(model.named_parameters())
    assert report.labels["out.W"] == "out.W (V)" and report.labels["cell.U_f"] == "cell.U_f"
    assert all(r.max_abs < 1e-6 for r in report.reports[("autodiff", "numeric")].rows)
    logits, _ = model(inputs, Tensor(h0))
    assert report.losses["autodiff"] == pytest.approx(nn.cross_entropy(logits, targets).item(), abs=1e-12)
    text = str(report)
    assert "MGU cell" in text and "finite differences only" in text and "manual" not in text
    header = text.splitlines()[text.splitlines().index(next(l for l in text.splitlines() if "autodiff vs numeric" in l
                                                            and "within" not in l)) + 1]
    assert header.split() == ["parameter", "max", "abs", "max", "rel", "pass"]
    assert all(p.grad is None for p in model.parameters())


def test_compare_cell_on_a_user_cell_with_a_wrong_gradient_fails():
    rng = np.random.default_rng(8)
    cell = MGU(5, 3, rng)
    right = cell.forward
    cell.forward = lambda x, h: right(x, h) + WrongSin.apply(cell.b)  # sin(b) with a wrong backward
    report = check.compare_cell(nn.CharRNN(5, 3, cell=cell, rng=rng), rng.integers(0, 5, 3), rng.integers(0, 5, 3))
    assert not report.ok
    assert [r.name for r in report.reports[("autodiff", "numeric")].rows if not r.passed] == ["cell.b"]
    assert "DISAGREEMENT" in str(report)


def test_report_iterates_over_its_rows():
    report = check.compare({"W": np.ones(2), "b": np.zeros(1)}, {"W": np.ones(2), "b": np.array([0.5])})
    assert len(report) == 2
    assert [(row.name, row.passed) for row in report] == [("W", True), ("b", False)]


def test_gradcheck_leaves_a_retained_intermediate_gradient_as_it_was():
    rng = np.random.default_rng(0)
    W = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    h = (W * 2).retain_grad()  # built before the call, captured by fn
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    assert check.gradcheck(lambda x: (h @ x).tanh(), (x,))
    assert h.grad is None and W.grad is None and x.grad is None
