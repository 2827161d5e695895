"""Forward mode: every op's jvp against J·v from finite differences and from torch.func.jvp."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinygrad_rnn as tr
import tinygrad_rnn.engine as engine
from tinygrad_rnn import Tensor, nn
from tinygrad_rnn.function import Affine
from tinygrad_rnn.nn.cells import ColumnGather
from tinygrad_rnn.nn.fused import GRUStep, LSTMStep, RNNStep, StackRows

V_, H_ = 5, 3  # vocabulary and hidden size of the cell tests


def fd_jvp(fn, primals, tangents, h=1e-4):
    """J·v by the five-point central difference along v (error O(h^4)), engine forward only."""
    def at(s):
        with tr.no_grad():
            return fn(*[Tensor(p + s * v) for p, v in zip(primals, tangents)]).data
    return (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)


def check_jvp(fn, *primals, seed=0, tol=1e-9):
    """tr.jvp of fn at primals, in a random direction, equals the finite-difference J·v."""
    rng = np.random.default_rng(seed)
    primals = [np.array(p, dtype=np.float64) for p in primals]
    tangents = [rng.standard_normal(p.shape) for p in primals]
    out, dy = tr.jvp(fn, primals, tangents)
    with tr.no_grad():
        np.testing.assert_array_equal(out.data, fn(*[Tensor(p) for p in primals]).data)
    assert dy.shape == out.shape and dy.dtype == out.dtype
    np.testing.assert_allclose(dy, fd_jvp(fn, primals, tangents), rtol=tol, atol=tol)
    return dy


def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)


def distinct(rng, shape):
    """Entries at least 0.05 apart, so a max has no tie within the difference step."""
    return rng.permutation(np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape) * 0.05


IDX = np.array([2, 0, 2])
MASK = np.array([True, False, True])
TARGETS = np.array([[1, 4], [0, 3], [2, 2]])
PADDED = np.array([[1, -100], [0, 3], [-100, 2]])  # ignore_index: two padded positions count for nothing
PROBS = np.random.default_rng(7).uniform(0, 1, (3, 4))  # targets of the sigmoid output

# (name, engine fn, torch fn (None where the torch spelling is the same), inputs as (maker, shape))
CASES = [
    ("add", lambda a, b: a + b, None, [(normal, (3, 4)), (normal, (4,))]),
    ("sub", lambda a, b: a - b, None, [(normal, (3, 1)), (normal, (3, 4))]),
    ("mul", lambda a, b: a * b, None, [(normal, (2, 3, 4)), (normal, (3, 1))]),
    ("div", lambda a, b: a / b, None, [(normal, (3, 4)), (away_from_zero, (3, 4))]),
    ("pow", lambda a, b: a ** b, None, [(positive, (3, 4)), (normal, (4,))]),
    ("pow_number", lambda a: a ** 3, None, [(normal, (3, 4))]),
    ("rpow", lambda a: 2.0 ** a, None, [(normal, (3, 4))]),
    ("neg", lambda a: -a, None, [(normal, (3, 4))]),
    ("matmul_2d_2d", lambda a, b: a @ b, None, [(normal, (3, 4)), (normal, (4, 5))]),
    ("matmul_2d_1d", lambda a, b: a @ b, None, [(normal, (3, 4)), (normal, (4,))]),
    ("matmul_1d_2d", lambda a, b: a @ b, None, [(normal, (4,)), (normal, (4, 5))]),
    ("matmul_1d_1d", lambda a, b: a @ b, None, [(normal, (4,)), (normal, (4,))]),
    ("matmul_3d_2d", lambda a, b: a @ b, None, [(normal, (2, 3, 4)), (normal, (4, 5))]),
    ("matmul_2d_3d", lambda a, b: a @ b, None, [(normal, (3, 4)), (normal, (2, 4, 5))]),
    ("matmul_1d_3d", lambda a, b: a @ b, None, [(normal, (4,)), (normal, (2, 4, 5))]),
    ("matmul_3d_1d", lambda a, b: a @ b, None, [(normal, (2, 3, 4)), (normal, (4,))]),
    ("affine_vector", lambda x, W, b: Affine.apply(x, W, b), lambda x, W, b: W @ x + b,
     [(normal, (4,)), (normal, (3, 4)), (normal, (3,))]),
    ("affine_rows_term", lambda x, W, b, u: Affine.apply(x, W, b, u), lambda x, W, b, u: x @ W.T + b + u,
     [(normal, (2, 4)), (normal, (3, 4)), (normal, (3,)), (normal, (2, 3))]),
    ("affine_3d", lambda x, W, b: Affine.apply(x, W, b), lambda x, W, b: x @ W.T + b,
     [(normal, (2, 5, 4)), (normal, (3, 4)), (normal, (3,))]),
    ("exp", lambda a: a.exp(), None, [(normal, (3, 4))]),
    ("log", lambda a: a.log(), None, [(positive, (3, 4))]),
    ("tanh", lambda a: a.tanh(), None, [(normal, (3, 4))]),
    ("sigmoid", lambda a: a.sigmoid(), None, [(normal, (3, 4))]),
    ("relu", lambda a: a.relu(), None, [(away_from_zero, (3, 4))]),
    ("sqrt", lambda a: a.sqrt(), None, [(positive, (3, 4))]),
    ("abs", lambda a: a.abs(), None, [(away_from_zero, (3, 4))]),
    ("clip", lambda a: (a * 3).clip(-1.0, 1.0), lambda a: (a * 3).clamp(-1.0, 1.0), [(away_from_zero, (3, 4))]),
    ("sum_all", lambda a: a.sum(), None, [(normal, (2, 3, 4))]),
    ("sum_axes_keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True),
     lambda a: a.sum(dim=(0, 2), keepdim=True), [(normal, (2, 3, 4))]),
    ("mean_all", lambda a: a.mean(), None, [(normal, (2, 3, 4))]),
    ("mean_axis", lambda a: a.mean(axis=-1), lambda a: a.mean(dim=-1), [(normal, (2, 3, 4))]),
    ("max_all", lambda a: a.max(), lambda a: a.amax(), [(distinct, (3, 4))]),
    ("max_axis_keepdims", lambda a: a.max(axis=1, keepdims=True), lambda a: a.amax(dim=1, keepdim=True),
     [(distinct, (2, 3, 4))]),
    ("softmax", lambda a: a.softmax(axis=0), lambda a: a.softmax(dim=0), [(normal, (3, 4))]),
    ("log_softmax", lambda a: a.log_softmax(), lambda a: a.log_softmax(dim=-1), [(normal, (3, 4))]),
    ("reshape", lambda a: a.reshape(4, -1), None, [(normal, (2, 3, 4))]),
    ("transpose_axes", lambda a: a.transpose(2, 0, 1), lambda a: a.permute(2, 0, 1), [(normal, (2, 3, 4))]),
    ("transpose_reverse", lambda a: a.T, lambda a: a.permute(2, 1, 0), [(normal, (2, 3, 4))]),
    ("getitem_slices", lambda a: a[1:, ::2], None, [(normal, (3, 4))]),
    ("getitem_ellipsis", lambda a: a[..., 1:3], None, [(normal, (2, 3, 4))]),
    ("getitem_repeated", lambda a: a[IDX], lambda a: a[IDX.tolist()], [(normal, (3, 4))]),
    ("getitem_mask", lambda a: a[MASK], lambda a: a[MASK.tolist()], [(normal, (3, 4))]),
    ("getitem_separated_arrays", lambda a: a[[0, 1], :, [1, 3]], None, [(normal, (2, 3, 4))]),
    ("concat", lambda a, b: tr.concat([a, b], axis=1), lambda a, b: __import__("torch").cat([a, b], dim=1),
     [(normal, (3, 2)), (normal, (3, 4))]),
    ("stack", lambda a, b: tr.stack([a, b], axis=1), lambda a, b: __import__("torch").stack([a, b], dim=1),
     [(normal, (3, 4)), (normal, (3, 4))]),
    ("where", lambda a, b: tr.where(MASK[:, None], a, b),
     lambda a, b: __import__("torch").where(__import__("torch").tensor(MASK[:, None]), a, b),
     [(normal, (3, 4)), (normal, (4,))]),
    ("column_gather_one", lambda W: ColumnGather.apply(W, idx=2), lambda W: W[:, 2], [(normal, (3, 5))]),
    ("column_gather_batch", lambda W: ColumnGather.apply(W, idx=IDX), lambda W: W[:, IDX.tolist()].T,
     [(normal, (3, 5))]),
    ("cross_entropy_sum", lambda z: nn.cross_entropy(z, TARGETS),
     lambda z: __import__("torch").nn.functional.cross_entropy(
         z.reshape(-1, 5), __import__("torch").tensor(TARGETS.reshape(-1)), reduction="sum"),
     [(normal, (3, 2, 5))]),
    ("cross_entropy_mean", lambda z: nn.cross_entropy(z, TARGETS, reduction="mean"),
     lambda z: __import__("torch").nn.functional.cross_entropy(
         z.reshape(-1, 5), __import__("torch").tensor(TARGETS.reshape(-1)), reduction="mean"),
     [(normal, (3, 2, 5))]),
    ("cross_entropy_ignore_index", lambda z: nn.cross_entropy(z, PADDED, reduction="mean"),
     lambda z: __import__("torch").nn.functional.cross_entropy(
         z.reshape(-1, 5), __import__("torch").tensor(PADDED.reshape(-1)), reduction="mean"),
     [(normal, (3, 2, 5))]),
    ("binary_cross_entropy_sum", lambda z: nn.binary_cross_entropy(z, PROBS),
     lambda z: __import__("torch").nn.functional.binary_cross_entropy_with_logits(
         z, __import__("torch").tensor(PROBS), reduction="sum"), [(normal, (3, 4))]),
    ("binary_cross_entropy_mean", lambda z: nn.binary_cross_entropy(z, PROBS, reduction="mean"),
     lambda z: __import__("torch").nn.functional.binary_cross_entropy_with_logits(
         z, __import__("torch").tensor(PROBS), reduction="mean"), [(normal, (3, 4))]),
    ("stack_rows", lambda a, b, c: StackRows.apply(a, b, c, out=np.empty((3, 2, 4))),
     lambda a, b, c: __import__("torch").stack([a, b, c]), [(normal, (2, 4)), (normal, (2, 4)), (normal, (2, 4))]),
    ("stack_rows_cols", lambda a, b, c: StackRows.apply(a, b, c, out=np.empty((3, 2, 4)), cols=3),
     lambda a, b, c: __import__("torch").stack([a, b, c])[..., :3],
     [(normal, (2, 4)), (normal, (2, 4)), (normal, (2, 4))]),
]
CASE_IDS = [c[0] for c in CASES]


def make_inputs(specs, seed=0):
    rng = np.random.default_rng(seed)
    return [maker(rng, shape) for maker, shape in specs]


def only_moving(fn, primals, k):
    """fn of input k alone, the others held as constants (their tangents are None inside)."""
    def fk(x):
        return fn(*[x if i == k else Tensor(p) for i, p in enumerate(primals)])
    return fk


@pytest.mark.parametrize("name, fn, torch_fn, specs", CASES, ids=CASE_IDS)
def test_jvp_of_every_op_matches_finite_differences(name, fn, torch_fn, specs):
    primals = make_inputs(specs)
    check_jvp(fn, *primals)
    if len(primals) > 1:  # each input moving alone: the others' tangents are missing, not zero arrays
        for k in range(len(primals)):
            check_jvp(only_moving(fn, primals, k), primals[k], seed=k + 1)


@pytest.mark.parametrize("name, fn, torch_fn, specs", CASES, ids=CASE_IDS)
def test_jvp_of_every_op_matches_torch(name, fn, torch_fn, specs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    primals = make_inputs(specs)
    tangents = [rng.standard_normal(p.shape) for p in primals]
    _, dy = tr.jvp(fn, primals, tangents)
    _, want = torch.func.jvp(torch_fn or fn, tuple(torch.tensor(p) for p in primals),
                             tuple(torch.tensor(v) for v in tangents))
    np.testing.assert_allclose(dy, want.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b,
                                lambda a, b: a / b, lambda a, b: tr.where(a > 0, a, b)])
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**16))
def test_jvp_of_broadcasting_ops(op, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = normal(rng, shapes.input_shapes[0]), away_from_zero(rng, shapes.input_shapes[1])
    check_jvp(op, a, b, seed=seed)
    check_jvp(only_moving(op, [a, b], 0), a, seed=seed)
    check_jvp(only_moving(op, [a, b], 1), b, seed=seed)


# ---- compositions ---------------------------------------------------------------------------------
def test_jvp_of_a_composition():
    rng = np.random.default_rng(0)
    W = Tensor(rng.standard_normal((5, 4)))  # a constant inside fn
    check_jvp(lambda x, c: ((x @ W.T).tanh() * x[:, :1] + c.sigmoid()).log_softmax().sum(axis=0),
              rng.standard_normal((3, 4)), rng.standard_normal(5))


def test_jvp_of_an_lstm_step():
    rng = np.random.default_rng(0)
    cell = nn.LSTMCell(3, 4, rng=rng)
    check_jvp(lambda x, h, s: tr.concat(list(cell(x, (h, s)))), *(rng.standard_normal(n) for n in (3, 4, 4)))


@pytest.mark.parametrize("idx", [2, np.array([2, 0, 2])], ids=["one", "batch"])
@pytest.mark.parametrize("cell_input", ["tanh", "sigmoid", None, "gru"], ids=["lstm_tanh", "lstm_sigmoid", "rnn", "gru"])
def test_jvp_of_the_fused_steps(cell_input, idx):
    """CharRNN(fused=True)'s one-node steps: jvp against differences and against the op-level cell's jvp."""
    rng = np.random.default_rng(0)
    batch = np.shape(idx)
    if cell_input == "gru":
        cell = nn.GRUCell(V_, H_, rng=rng)

        def fused(W_x, W_h, b_x, b_h, h):
            return GRUStep.apply(W_x, W_h, b_x, b_h, h, idx=idx)

        def ops(W_x, W_h, b_x, b_h, h):
            cell.W_x, cell.W_h, cell.b_x, cell.b_h = W_x, W_h, b_x, b_h
            return cell.step(cell.project_onehot(idx), h)
        primals = [cell.W_x.data, cell.W_h.data, cell.b_x.data, cell.b_h.data, rng.standard_normal(batch + (H_,))]
    elif cell_input is None:
        cell = nn.RNNCell(V_, H_, rng=rng)

        def fused(W_xh, W_hh, b_h, h):
            return RNNStep.apply(W_xh, W_hh, b_h, h, idx=idx)

        def ops(W_xh, W_hh, b_h, h):
            cell.W_xh, cell.W_hh, cell.b_h = W_xh, W_hh, b_h
            return cell.step(cell.project_onehot(idx), h)
        primals = [cell.W_xh.data, cell.W_hh.data, cell.b_h.data, rng.standard_normal(batch + (H_,))]
    else:
        cell = nn.LSTMCell(V_, H_, cell_input=cell_input, rng=rng)

        def fused(W_x, W_h, b, z):
            return LSTMStep.apply(W_x, W_h, b, z, idx=idx, cell_input=cell_input)

        def ops(W_x, W_h, b, z):
            cell.W_x, cell.W_h, cell.b = W_x, W_h, b
            return tr.concat(list(cell.step(cell.project_onehot(idx), (z[..., :H_], z[..., H_:]))), axis=-1)
        primals = [cell.W_x.data, cell.W_h.data, cell.b.data, rng.standard_normal(batch + (2 * H_,))]
    dy = check_jvp(fused, *primals)
    same = np.random.default_rng(0)  # check_jvp's direction
    tangents = [same.standard_normal(p.shape) for p in primals]
    np.testing.assert_allclose(dy, tr.jvp(ops, primals, tangents)[1], rtol=1e-12, atol=1e-14)
    for k in range(len(primals)):  # each input moving alone (the state alone, a weight alone)
        check_jvp(only_moving(fused, primals, k), primals[k], seed=k)


def test_jvp_of_a_reused_subexpression_equals_its_formula():
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal(6), rng.standard_normal(6)

    def fn(x):
        y = x.tanh()             # used three times below, x itself twice
        return y * y + y.exp() + x * x

    _, dy = tr.jvp(fn, (x,), (v,))
    y = np.tanh(x)
    np.testing.assert_allclose(dy, ((2 * y + np.exp(y)) * (1 - y * y) + 2 * x) * v, rtol=1e-13)
    check_jvp(fn, x)


def test_jvp_through_a_long_chain():
    x, v = np.array([0.3]), np.array([1.0])

    def fn(x):
        for _ in range(2000):  # deeper than any recursion limit: forward mode keeps no graph to walk
            x = (x * 0.999).tanh() + 0.001
        return x

    _, dy = tr.jvp(fn, (x,), (v,))
    check_jvp(fn, x)
    assert np.isfinite(dy).all()


def test_jvp_of_a_function_that_ignores_its_input_is_zero():
    out, dy = tr.jvp(lambda x: Tensor(np.ones(3)) * 2.0, (np.ones(2),), (np.ones(2),))
    np.testing.assert_array_equal(dy, np.zeros(3))


def test_jvp_keeps_float32():
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    out, dy = tr.jvp(lambda x: (x * x).tanh(), (x,), (np.ones(4),))
    assert out.dtype == np.float32 and dy.dtype == np.float32
    np.testing.assert_allclose(dy, 2 * x * (1 - np.tanh(x * x) ** 2), rtol=1e-6)


def test_jvp_runs_no_backward(monkeypatch):
    def no_backward(*args, **kwargs):
        raise AssertionError("a backward pass ran")
    monkeypatch.setattr(engine, "run_backward", no_backward)
    rng = np.random.default_rng(0)
    W = Tensor(rng.standard_normal((3, 3)), requires_grad=True)  # builds a graph as usual; nothing walks it
    check_jvp(lambda x: (W @ x).tanh().sum(), rng.standard_normal(3))
    assert W.grad is None


def test_a_tangent_from_an_earlier_jvp_is_not_reused():
    kept = []
    x, v = np.array([0.5, -1.0]), np.array([1.0, 2.0])

    def keep(x):
        kept.append(x.exp())  # carries a tangent in this jvp
        return kept[-1]
    tr.jvp(keep, (x,), (v,))
    # in a new jvp, kept[0] is a constant: d(y * kept)/dy = kept, with nothing from its old tangent
    _, dy = tr.jvp(lambda y: y * kept[0], (np.ones(2),), (np.ones(2),))
    np.testing.assert_allclose(dy, np.exp(x))


# ---- custom Functions ------------------------------------------------------------------------------
class SinNoJvp(tr.Function):
    """y = sin(a);  dL/da = g * cos(a); no forward-mode rule"""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.sin(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.cos(a),)


class Sin(SinNoJvp):
    """y = sin(a) with its forward-mode rule dy = da * cos(a); counts the directions it was shown."""
    seen_shapes: list = []

    @staticmethod
    def jvp(ctx, da):
        (a,) = ctx.saved_tensors
        Sin.seen_shapes.append(da.shape)
        return da * np.cos(a)


def test_custom_function_without_jvp_names_the_op():
    with pytest.raises(NotImplementedError, match="SinNoJvp"):
        tr.jvp(lambda x: SinNoJvp.apply(x * 2.0), (np.ones(3),), (np.ones(3),))
    # applied to constants only, it needs no rule
    _, dy = tr.jvp(lambda x: x + SinNoJvp.apply(Tensor(np.ones(3))), (np.ones(3),), (np.ones(3),))
    np.testing.assert_array_equal(dy, np.ones(3))


def test_custom_function_with_jvp_is_used_one_direction_at_a_time():
    Sin.seen_shapes.clear()
    x = np.linspace(-1, 1, 5)
    dy = check_jvp(lambda x: Sin.apply(x * x), x)
    assert Sin.seen_shapes and set(Sin.seen_shapes) == {(5,)}  # shaped like its input, no direction axis
    np.testing.assert_allclose(dy, np.cos(x * x) * 2 * x * np.random.default_rng(0).standard_normal(5))
    # several directions at once (as RTRL pushes them): still called per direction
    Sin.seen_shapes.clear()
    xt = Tensor(x)
    V = np.random.default_rng(0).standard_normal((3, 5))
    with engine._forward_mode([(xt, V)]):
        y = Sin.apply(xt)
        dY = engine._tangent_of(y)
    assert Sin.seen_shapes == [(5,)] * 3
    np.testing.assert_allclose(dY, V * np.cos(x), rtol=1e-14)


def test_a_wrong_shaped_custom_jvp_is_a_clear_error():
    class Bad(Sin):
        @staticmethod
        def jvp(ctx, da):
            return np.ones(7)
    with pytest.raises(RuntimeError, match=r"Bad.jvp returned a tangent of shape \(7,\) for an output of shape \(5,\)"):
        tr.jvp(lambda x: Bad.apply(x), (np.ones(5),), (np.ones(5),))


# ---- batched directions (the path RTRL uses) --------------------------------------------------------
def test_batched_directions_equal_one_jvp_each():
    rng = np.random.default_rng(0)
    cell = nn.LSTMCell(3, 4, rng=rng)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))

    def fn(x, h):
        h2, s2 = cell(x, (h, h * 0.5))
        return tr.stack([h2, s2]).log_softmax().mean(axis=1)

    V = rng.standard_normal((4,) + x.shape), rng.standard_normal((4,) + h.shape)
    xt, ht = Tensor(x), Tensor(h)
    with engine._forward_mode([(xt, V[0]), (ht, V[1])]):
        batched = engine._tangent_of(fn(xt, ht))
    for k in range(4):
        np.testing.assert_allclose(batched[k], tr.jvp(fn, (x, h), (V[0][k], V[1][k]))[1], rtol=1e-13, atol=1e-15)


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("primals, tangents, fn, error, message", [
    ((np.ones(2),), (np.ones(2), np.ones(2)), lambda x: x, ValueError, "1 primals but 2 tangents"),
    ((np.ones(2),), (np.ones(3),), lambda x: x, ValueError, r"tangent 0 has shape \(3,\) but its primal has shape \(2,\)"),
    ((np.arange(2),), (np.ones(2),), lambda x: x, TypeError, "primal 0 has dtype int64"),
    ((np.ones(2),), (np.ones(2),), lambda x: x.data, TypeError, "fn must return a Tensor, got ndarray"),
    ((np.ones(2),), (np.ones(2),), lambda x: tr.jvp(lambda y: y, (x,), (np.ones(2),))[0], RuntimeError, "nested"),
])
def test_jvp_bad_input(primals, tangents, fn, error, message):
    with pytest.raises(error, match=message):
        tr.jvp(fn, primals, tangents)
    assert engine._state.forward is None  # forward mode is off again after the error
