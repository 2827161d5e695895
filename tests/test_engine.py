"""The engine: every op's value and gradient against NumPy and central finite differences."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn, viz
from tinygrad_rnn.function import Affine

from helpers import WrongSin, numeric_grads


def check_grads(fn, *arrays, seed=0, rtol=1e-6, atol=1e-8):
    """Backward of fn at arrays equals central differences (autograd's check_grads, one line a test)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(grad=weights)

    def loss():
        with tr.no_grad():
            return float(np.sum(weights * fn(*[Tensor(a) for a in arrays]).data))
    for i, (t, num) in enumerate(zip(tensors, numeric_grads(loss, arrays))):
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.shape == t.shape and t.grad.dtype == t.dtype
        np.testing.assert_allclose(t.grad, num, rtol=rtol, atol=atol, err_msg=f"input {i}")


def away_from_zero(rng, shape, margin=0.2):
    x = rng.standard_normal(shape)
    return np.sign(x) * (np.abs(x) + margin) + (x == 0) * margin


seeds = st.integers(0, 2**16)
shape_pairs = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4)


# ---- binary ops with broadcasting -----------------------------------------------------------------
@pytest.mark.parametrize("op, ref", [
    (lambda a, b: a + b, np.add),
    (lambda a, b: a - b, np.subtract),
    (lambda a, b: a * b, np.multiply),
    (lambda a, b: a / b, np.divide),
])
@given(shapes=shape_pairs, seed=seeds)
def test_binary_ops_broadcast(op, ref, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shapes.input_shapes[0]), away_from_zero(rng, shapes.input_shapes[1])
    np.testing.assert_allclose(op(Tensor(a), Tensor(b)).data, ref(a, b), rtol=1e-12)
    check_grads(op, a, b)


@given(shapes=shape_pairs, seed=seeds)
def test_pow_of_two_tensors(shapes, seed):
    rng = np.random.default_rng(seed)
    a = np.abs(rng.standard_normal(shapes.input_shapes[0])) + 0.5
    b = rng.standard_normal(shapes.input_shapes[1])
    check_grads(lambda x, y: x ** y, a, b)


def test_pow_and_reflected_forms_with_numbers():
    rng = np.random.default_rng(0)
    a = np.abs(rng.standard_normal((3, 2))) + 0.5
    check_grads(lambda x: x ** 3, a)
    check_grads(lambda x: 2.0 ** x, a)
    check_grads(lambda x: 1.5 - x, a)
    check_grads(lambda x: 2.0 / x, a)
    check_grads(lambda x: -x + 3 * x, a)
    np.testing.assert_allclose((2.0 ** Tensor(a)).data, 2.0 ** a)


def test_pow_edges_give_zero_gradients_as_pytorch():
    x = Tensor(np.zeros(3), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 0])
    a, b = Tensor(np.array([0.0, 0.0, 0.0, -1.0]), requires_grad=True), Tensor(np.array([0.0, 1.0, 2.0, 2.0]), requires_grad=True)
    with np.errstate(invalid="ignore"):
        (a ** b).sum().backward()
    np.testing.assert_array_equal(b.grad[:3], [0, 0, 0])
    assert np.isnan(b.grad[3])  # d(a**b)/db = a**b log(a) has no real value for a < 0
    np.testing.assert_array_equal(a.grad, [0, 1, 0, -2])


def test_integer_tensors_promote_with_python_numbers_as_numpy():
    np.testing.assert_array_equal((Tensor([1, 2]) + 0.5).data, [1.5, 2.5])
    np.testing.assert_array_equal((Tensor([1, 2]) * 0.5).data, [0.5, 1.0])
    np.testing.assert_array_equal((2.5 * Tensor([True, False])).data, [2.5, 0.0])
    assert (Tensor([1, 2]) + 1).dtype == np.int64


def test_gradient_of_a_zero_d_tensor_is_an_array():
    s = Tensor(2.0, requires_grad=True)
    (s * Tensor(np.ones((2, 3)))).sum().backward()
    assert type(s.grad) is np.ndarray and s.grad.shape == () and s.grad == 6.0


def test_ndarray_on_the_left_gives_tensors():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    m, v = rng.standard_normal((2, 3)), rng.standard_normal(4)
    for result, expected in [(v + x, v + x.data), (v - x, v - x.data), (v * x, v * x.data),
                             (m @ x, m @ x.data), (v / (x * x + 1), v / (x.data ** 2 + 1))]:
        assert isinstance(result, Tensor)
        np.testing.assert_allclose(result.data, expected)
    (m @ x).sum().backward()
    np.testing.assert_allclose(x.grad, m.T @ np.ones((2, 4)))


# ---- matmul in all its shapes ---------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
    ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 2)), ((4,), (2, 4, 3)),
])
def test_matmul(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b)
    check_grads(lambda x, y: x @ y, a, b)


@pytest.mark.parametrize("shape_x", [(4,), (3, 4), (2, 3, 4)])
def test_affine(shape_x):
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal(shape_x), rng.standard_normal((5, 4)), rng.standard_normal(5)
    np.testing.assert_allclose(Affine.apply(Tensor(x), Tensor(W), Tensor(b)).data, x @ W.T + b)
    check_grads(lambda x, W, b: Affine.apply(x, W, b), x, W, b)
    u = rng.standard_normal(shape_x[:-1] + (5,))  # a further term, as U x in a = b + W h + U x
    check_grads(lambda x, W, b, u: Affine.apply(x, W, b, u), x, W, b, u)
    with pytest.raises(ValueError, match=r"^affine: x \(3, 4\), W \(5, 3\), b \(5,\): want x"):
        Affine.apply(Tensor(np.ones((3, 4))), Tensor(np.ones((5, 3))), Tensor(np.ones(5)))


def test_matmul_shape_error_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"^matmul: \(3, 4\) @ \(5, 6\): inner dimensions 4 and 5 differ$"):
        Tensor(np.ones((3, 4))) @ Tensor(np.ones((5, 6)))


def test_broadcast_error_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"^add: shapes \(3,\) and \(4,\) cannot be broadcast together$"):
        Tensor(np.ones(3)) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"^mul: shapes \(2, 3\) and \(2,\)"):
        Tensor(np.ones((2, 3))) * np.ones(2)


# ---- elementwise functions --------------------------------------------------------------------------
@pytest.mark.parametrize("name, ref, domain", [
    ("exp", np.exp, "any"), ("log", np.log, "positive"), ("tanh", np.tanh, "any"),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), "any"), ("relu", lambda x: np.maximum(x, 0), "nonzero"),
    ("sqrt", np.sqrt, "positive"), ("abs", np.abs, "nonzero"),
])
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=4), seed=seeds)
def test_unary_ops(name, ref, domain, shape, seed):
    rng = np.random.default_rng(seed)
    x = {"any": rng.standard_normal(shape), "positive": np.abs(rng.standard_normal(shape)) + 0.3,
         "nonzero": away_from_zero(rng, shape)}[domain]
    np.testing.assert_allclose(getattr(Tensor(x), name)().data, ref(x), rtol=1e-12)
    check_grads(lambda t: getattr(t, name)(), x)


def test_sigmoid_saturates_without_overflow():
    with np.errstate(all="raise"):
        y = Tensor(np.array([-1e4, 0.0, 1e4]), requires_grad=True)
        s = y.sigmoid()
        s.sum().backward()
    np.testing.assert_allclose(s.data, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(y.grad, [0.0, 0.25, 0.0])


def test_clip_passes_gradient_only_inside():
    x = Tensor(np.array([-3.0, -0.5, 0.2, 4.0]), requires_grad=True)
    y = x.clip(-1, 1)
    (y * Tensor(np.array([1.0, 2.0, 3.0, 4.0]))).sum().backward()
    np.testing.assert_allclose(y.data, [-1, -0.5, 0.2, 1])
    np.testing.assert_allclose(x.grad, [0, 2, 3, 0])
    check_grads(lambda t: t.clip(-1.0, 1.0), np.array([[-2.5, 0.3], [0.7, 1.9]]))


# ---- reductions -----------------------------------------------------------------------------------
@st.composite
def shape_and_axis(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=3, max_side=4))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                          st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)))
    return shape, axis


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@given(shape_axis=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_reductions(name, shape_axis, keepdims, seed):
    shape, axis = shape_axis
    x = np.random.default_rng(seed).standard_normal(shape)  # continuous: no ties for max
    expected = getattr(np, {"sum": "sum", "mean": "mean", "max": "amax"}[name])(x, axis=axis, keepdims=keepdims)
    got = getattr(Tensor(x), name)(axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    np.testing.assert_allclose(got.data, expected, rtol=1e-12)
    check_grads(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), x)


def test_max_shares_gradient_between_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(shape_axis=shape_and_axis().filter(lambda s: not isinstance(s[1], tuple)), seed=seeds)
def test_softmax_family(name, shape_axis, seed):
    shape, axis = shape_axis
    axis = -1 if axis is None else axis
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    soft = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(getattr(Tensor(x), name)(axis=axis).data,
                               soft if name == "softmax" else np.log(soft), rtol=1e-10, atol=1e-12)
    check_grads(lambda t: getattr(t, name)(axis=axis), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_is_stable_for_huge_logits(name):
    z = np.array([1e4, -1e4, 0.0, 1e4 - 1.0])
    x = Tensor(z, requires_grad=True)
    y = getattr(x, name)()
    w = np.array([0.3, -1.0, 2.0, 0.5])
    (y * Tensor(w)).sum().backward()
    assert np.isfinite(y.data).all() and np.isfinite(x.grad).all()
    p = np.array([1 / (1 + np.exp(-1.0)), 0.0, 0.0, np.exp(-1.0) / (1 + np.exp(-1.0))])
    if name == "softmax":
        np.testing.assert_allclose(y.data, p, atol=1e-15)
        np.testing.assert_allclose(x.grad, p * (w - (w * p).sum()), atol=1e-12)
    else:
        np.testing.assert_allclose(y.data[[0, 3]], np.log(p[[0, 3]]), rtol=1e-12)
        np.testing.assert_allclose(y.data[1], -2e4 - np.log1p(np.exp(-1.0)), rtol=1e-12)
        np.testing.assert_allclose(x.grad, w - p * w.sum(), atol=1e-12)


# ---- shapes and indexing ----------------------------------------------------------------------------
def test_reshape_transpose_T():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    check_grads(lambda t: t.reshape(4, 6), x)
    check_grads(lambda t: t.reshape((3, -1)), x)
    check_grads(lambda t: t.transpose(2, 0, 1), x)
    check_grads(lambda t: t.transpose(-1, 0, 1), x)
    check_grads(lambda t: t.transpose(0, -1), x[0])
    check_grads(lambda t: t.transpose(), x)
    check_grads(lambda t: t.T, x[0])
    np.testing.assert_array_equal(Tensor(x).transpose(1, 2, 0).data, x.transpose(1, 2, 0))
    np.testing.assert_array_equal(Tensor(x[0]).T.data, x[0].T)


@pytest.mark.parametrize("index", [
    1, -1, slice(1, 3), (slice(None), 2), (Ellipsis, slice(None, None, 2)), (None, 0),
    np.array([0, 2, 2, 1]), (slice(None), np.array([3, 0, 3])), (np.array([1, 1]), np.array([0, 0])),
    [2, 0, 2], np.array([[0, 1], [1, 1]]),
])
def test_getitem(index):
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(Tensor(x)[index].data, x[index])
    check_grads(lambda t: t[index], x)


def test_repeated_integer_indices_accumulate():
    x = Tensor(np.arange(5.0), requires_grad=True)
    x[np.array([1, 1, 1, 4, 0, 4])].sum().backward()
    np.testing.assert_array_equal(x.grad, [1, 3, 0, 0, 2])
    W = Tensor(np.zeros((2, 4)), requires_grad=True)
    W[:, Tensor(np.array([3, 3, 0]))].sum().backward()  # a column gather, as a one-hot input
    np.testing.assert_array_equal(W.grad, [[1, 0, 0, 2], [1, 0, 0, 2]])


def test_concat_stack_where():
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((1, 3)), rng.standard_normal((2, 3))
    np.testing.assert_array_equal(tr.concat([Tensor(a), Tensor(b)]).data, np.concatenate([a, b]))
    check_grads(lambda x, y: tr.concat([x, y], axis=0), a, b)
    check_grads(lambda x, y: tr.concat([x, y.T], axis=1), a, c.T)
    check_grads(lambda x, y: tr.stack([x, y], axis=1), a, c)
    np.testing.assert_array_equal(tr.stack([Tensor(a), Tensor(c)], axis=-1).data, np.stack([a, c], -1))
    cond = a > 0
    check_grads(lambda x, y: tr.where(cond, x, y), a, c)
    check_grads(lambda x: tr.where(Tensor(cond), x, 0.0), a)
    np.testing.assert_array_equal(tr.where(Tensor(a) > 0, Tensor(a), 0.0).data, np.where(a > 0, a, 0))


def test_concat_and_stack_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"stack: all tensors need the same shape, got \[\(2,\), \(3,\)\]"):
        tr.stack([Tensor(np.ones(2)), Tensor(np.ones(3))])
    with pytest.raises(ValueError, match=r"^concat: shapes \[\(2, 3\), \(2, 4\)\] differ off axis 0$"):
        tr.concat([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))])


# ---- the backward pass itself -------------------------------------------------------------------------
def test_x_times_x_accumulates():
    x = Tensor(3.0, requires_grad=True)
    (x * x).backward()
    assert x.grad == 6.0  # early tinygrad's `=` instead of `+=` gave 3


def test_node_reused_twice_and_diamond():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4)

    def diamond(t):
        h = t.tanh()
        return (h * h.exp() + h).sum() * h
    check_grads(diamond, x)


def test_two_backward_calls_accumulate():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * 2 * x.data)
    (x * 3).sum().backward()  # a fresh graph adds on top
    np.testing.assert_array_equal(x.grad, 4 * x.data + 3)
    x.zero_grad()
    assert x.grad is None


def test_second_backward_through_freed_graph_raises():
    x = Tensor(np.array([0.5, 1.0]), requires_grad=True)
    y = x.tanh().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_hundred_thousand_op_chain():
    x = Tensor(np.array(0.5), requires_grad=True)
    h = x
    for _ in range(100_000):
        h = h * 1.0 + 0.0  # 200,000 nodes, far past Python's recursion limit
    h.backward()
    assert x.grad == 1.0


def test_only_leaves_keep_grad_unless_retained():
    x = Tensor(np.array([0.3, -0.2]), requires_grad=True)
    h = x.tanh()
    h2 = (x * 2).retain_grad()
    loss = (h * h2).sum()
    loss.backward()
    assert h.grad is None
    np.testing.assert_allclose(h2.grad, np.tanh(x.data))
    np.testing.assert_allclose(x.grad, (1 - np.tanh(x.data) ** 2) * 2 * x.data + 2 * np.tanh(x.data))


def test_non_scalar_backward_needs_grad():
    y = Tensor(np.ones((3, 4)), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"non-scalar output of shape \(3, 4\) needs backward\(grad="):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(4,\) but the output has shape \(3, 4\)"):
        y.backward(grad=np.ones(4))


def test_integer_data_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point data can require grad, got dtype int64"):
        Tensor(np.array([1, 2, 3]), requires_grad=True)
    with pytest.raises(TypeError, match="dtype bool"):
        Tensor([True, False], requires_grad=True)
    assert Tensor([1.5, 2]).dtype == np.float64


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    W = Tensor(rng.standard_normal((4, 2)).astype(np.float32), requires_grad=True)
    y = ((x @ W).tanh() * 2.0 + 1 - 0.5 / (x @ W).exp()).log_softmax().sum() ** 2
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and W.grad.dtype == np.float32


def test_no_grad_builds_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with tr.no_grad():
        y = (x * 2).tanh()
    assert not y.requires_grad and y.grad_fn is None
    assert tr.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_detach_cuts_the_graph():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x.detach()).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, x.data)


def test_scope_is_recorded_and_nests():
    x = Tensor(np.ones(2), requires_grad=True)
    with tr.scope("t=3"):
        a = x * 2
        with tr.scope("lstm"):
            b = a.tanh()
    c = b.sum()
    assert (a.grad_fn.scope, b.grad_fn.scope, c.grad_fn.scope) == ("t=3", "t=3/lstm", "")
    assert [p is x for p in a.grad_fn.parents] == [True, False]
    # nodes link nodes (a leaf as itself); parents gives them as tensors, an op's output by its node
    assert b.grad_fn.name == "Tanh" and b.grad_fn.inputs == (a.grad_fn,)
    (a_seen,) = b.grad_fn.parents
    assert a_seen.grad_fn is a.grad_fn and a_seen.shape == a.shape and a_seen.requires_grad


def test_detect_anomaly_names_op_and_scope():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with tr.scope("t=7"):
        y = x.sqrt()  # d sqrt(x)/dx is inf at 0
    loss = y.sum()
    with tr.detect_anomaly(), np.errstate(divide="ignore"), \
            pytest.raises(RuntimeError, match=r"Sqrt created in scope 't=7' produced inf"):
        loss.backward()


def test_custom_function_with_hand_written_backward():
    class Cube(tr.Function):
        """y = x**3;  dL/dx = 3 g x**2"""
        @staticmethod
        def forward(ctx, x, scale=1.0):
            ctx.save_for_backward(x)
            ctx.scale = scale
            return scale * x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return (3 * ctx.scale * g * x ** 2,)

    x = np.array([0.5, -1.0, 2.0])
    check_grads(lambda t: Cube.apply(t, scale=2.0), x)
    assert Cube.apply(Tensor(x, requires_grad=True)).grad_fn.name == "Cube"


def test_wrong_backward_is_caught_by_the_finite_difference_helper():
    with pytest.raises(AssertionError, match="input 0"):
        check_grads(lambda t: WrongSin.apply(t), np.array([0.3, 1.2]))  # its backward uses sin for cos


def test_backward_returning_wrong_shape_is_reported():
    class Bad(tr.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return (np.ones(7),)

    with pytest.raises(RuntimeError, match=r"Bad.backward returned a gradient of shape \(7,\) for an input of shape \(3,\)"):
        Bad.apply(Tensor(np.ones(3), requires_grad=True)).sum().backward()


def test_constructors_and_inspection():
    z = tr.zeros(2, 3, requires_grad=True)
    assert z.shape == (2, 3) and z.ndim == 2 and z.size == 6 and z.dtype == np.float64 and z.requires_grad
    assert tr.ones((4,)).data.sum() == 4
    r1, r2 = tr.randn(3, rng=np.random.default_rng(1)), tr.randn(3, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(r1.data, r2.data)
    assert Tensor(2.5).item() == 2.5 and isinstance(Tensor([1.0]).numpy(), np.ndarray)


def test_matches_pytorch_on_a_small_rnn_step():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    W, U, x, h = (rng.standard_normal(s) for s in [(5, 5), (5, 3), (4, 3), (4, 5)])
    ours = [Tensor(a, requires_grad=True) for a in (W, U, x, h)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (W, U, x, h)]
    for lib, (tW, tU, tx, th), sm in [(ours, ours, lambda z: z.log_softmax(axis=-1)),
                                      (torch, theirs, lambda z: torch.log_softmax(z, dim=-1))]:
        out = sm((th @ tW.T + tx @ tU.T).tanh() * 3).sum() / 4
        out.backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_leaf_gradients_never_alias_each_other_or_the_seed():
    a, b = Tensor(np.zeros(3), requires_grad=True), Tensor(np.zeros(3), requires_grad=True)
    seed = np.ones(3)
    (a + b).backward(grad=seed)  # Add hands the same array to both inputs
    a.grad += 10
    np.testing.assert_array_equal(b.grad, np.ones(3))
    np.testing.assert_array_equal(seed, np.ones(3))
    x = Tensor(np.ones(2), requires_grad=True)
    x.sum().backward()  # Sum's gradient is a read-only broadcast view: x.grad must be writable
    x.grad += 1
    np.testing.assert_array_equal(x.grad, [2, 2])


def test_a_backward_that_returns_its_saved_arrays_is_not_aliased():
    class Double(tr.Function):
        """y = 2 x;  dL/dx = 2 (ignoring g on purpose: the saved array itself is returned)"""
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(np.full(x.shape, 2.0))
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            return ctx.saved_tensors

    x = Tensor(np.ones(2), requires_grad=True)
    y = Double.apply(x).sum()
    for _ in range(3):
        y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad, [6, 6])  # 2 + 2 + 2, not 2 + 2 + 4


def test_the_same_scope_object_can_be_entered_inside_itself():
    step = tr.scope("a")
    with step:
        with step:
            inner = (Tensor(np.ones(1), requires_grad=True) * 2).grad_fn.scope
    after = (Tensor(np.ones(1), requires_grad=True) * 2).grad_fn.scope
    assert (inner, after) == ("a/a", "")


def test_reduction_axis_errors_name_the_op():
    with pytest.raises(ValueError, match=r"^sum: axis 0 is out of range for a tensor with 0 dimensions$"):
        Tensor(3.0).sum(axis=0)
    with pytest.raises(ValueError, match=r"^mean: axis \(0, 0\) names the same axis twice$"):
        Tensor(np.ones((2, 2))).mean(axis=(0, 0))


class _Rows(tr.Function):
    """y = W[idx];  dL/dW[idx] += g, returned sparse"""
    @staticmethod
    def forward(ctx, W, idx=None):
        ctx.idx = idx
        return W[idx]

    @staticmethod
    def backward(ctx, g):
        return (tr.engine.SparseGrad(ctx.idx, g),)


@pytest.mark.parametrize("idx", [2, np.array([0, 3, 0, 0])])
def test_sparse_gradients_add_into_leaves_and_intermediates(idx):
    W = np.random.default_rng(0).standard_normal((4, 3))
    check_grads(lambda w: _Rows.apply(w, idx=idx), W)             # straight into the leaf's .grad
    check_grads(lambda w: _Rows.apply(w * 1.5, idx=idx).tanh(), W)  # through an intermediate: made dense
    leaf = Tensor(W, requires_grad=True)
    _Rows.apply(leaf, idx=idx).sum().backward()
    expected = np.zeros((4, 3))
    np.add.at(expected, idx, 1.0)
    np.testing.assert_array_equal(leaf.grad, expected)


def test_outer_product_gradients_of_a_shared_weight_are_summed_once():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    x1, x2 = rng.standard_normal(4), rng.standard_normal((2, 4))

    def shared(w, b):  # W used by two Affines, a matvec, a dense op, and through an intermediate
        return (Affine.apply(x1, w, b).sum() + Affine.apply(x2, w, b).tanh().sum() + (w @ x1).exp().sum()
                + (w * w).sum() + Affine.apply(x1, w * 2.0, b).sum())
    check_grads(shared, W, b)
    w32 = Tensor(W.astype(np.float32), requires_grad=True)
    Affine.apply(x1.astype(np.float32), w32, Tensor(b.astype(np.float32))).sum().backward()
    assert w32.grad.dtype == np.float32
    np.testing.assert_allclose(w32.grad, np.outer(np.ones(3), x1), rtol=1e-6)


def test_a_tensor_copies_the_array_it_is_made_from():
    w0 = np.array([1.0, 2.0])
    w = Tensor(w0, requires_grad=True)
    (w * w).sum().backward()
    tr.nn.optim.SGD([w], lr=0.5).step()  # updates w.data in place
    np.testing.assert_array_equal(w0, [1.0, 2.0])
    np.testing.assert_array_equal(w.data, [0.0, 0.0])
    assert w.detach().data is w.data  # detach shares, as in PyTorch
    with pytest.raises(ValueError, match="^Tensor: data is not a regular array"):
        Tensor([[1.0, 2.0], [3.0]])


def test_a_name_reads_the_same_on_a_tensor_and_on_the_graphs_view_of_it():
    x = Tensor(np.array([0.1, 0.2]), requires_grad=True)
    h = x * 2
    loss = h.tanh().sum()
    (seen,) = loss.grad_fn.parents[0].grad_fn.parents  # a walk over the graph (a picture) before naming
    h.name = "h(1)"
    assert seen.name == "h(1)"
    seen.name = "h(2)"  # named through the graph's view
    assert h.name == "h(2)" and "h(2)" in repr(h)


def test_a_user_function_keeps_attributes_of_its_own_on_ctx():
    # API.md: ctx takes plain attributes; the engine's bookkeeping on the node must not overwrite them
    class Triple(tr.Function):
        """y = 3a; its forward keeps the local derivative as ctx.grad and more as ctx.retain, ctx.ghost"""

        @staticmethod
        def forward(ctx, a):
            ctx.grad = np.full_like(a, 3.0)
            ctx.retain, ctx.ghost, ctx.out_like, ctx.out_name = "r", "g", "l", "n"
            return 3 * a

        @staticmethod
        def backward(ctx, g):
            assert (ctx.retain, ctx.ghost, ctx.out_like, ctx.out_name) == ("r", "g", "l", "n")
            return (g * ctx.grad,)

    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = Triple.apply(x * 1.0)
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad, 18 * x.data, rtol=1e-15)


# ---- exact on every graph: the two derivatives the differential test found wrong, and GradSums ----------
def _micrograd_sanity(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    return z, q, h, y


def test_micrograd_sanity_expression_gives_46_and_every_retained_grad_matches_pytorch():
    x = Tensor(np.array(-4.0), requires_grad=True)
    z, q, h, y = _micrograd_sanity(x)
    for t in (z, q, h):
        t.retain_grad()
    y.backward()
    assert y.data == -20.0 and x.grad == 46.0  # micrograd's README; 0-d x used three times (was 10)
    # by hand at z = -10: dy/dh = 1, dy/dq = 1 + x = -3, dy/dz = (relu'(z) + x) * -3 + 2z relu'(z*z) = 12 - 20
    assert (h.grad, q.grad, z.grad) == (1.0, -3.0, -8.0)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    tz, tq, th, ty = _micrograd_sanity(tx)
    for t in (tz, tq, th):
        t.retain_grad()
    ty.backward()
    assert tx.grad.item() == x.grad
    assert (th.grad.item(), tq.grad.item(), tz.grad.item()) == (h.grad, q.grad, z.grad)


def test_a_0d_value_used_three_times_sends_all_three_shares():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 4))
    x = Tensor(np.array(0.3), requires_grad=True)
    v = x.sigmoid()
    ((v * a).sum() + (v * b).sum() + (v * c).sum()).backward()
    s = 1 / (1 + np.exp(-0.3))
    np.testing.assert_allclose(x.grad, s * (1 - s) * (a + b + c).sum(), rtol=1e-14)
    assert isinstance(x.grad, np.ndarray) and x.grad.shape == ()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fused_model_carries_the_tangent_of_a_given_initial_state(cell):
    """tr.jvp through a fused model's (h, s): the primals never require grad there (was 0.0 for an LSTM)."""
    fused = nn.CharRNN(2, 3, cell, fused=True, rng=np.random.default_rng(1))
    op_level = nn.CharRNN(2, 3, cell, rng=np.random.default_rng(1))
    rng = np.random.default_rng(2)
    primals = tuple(rng.normal(size=3) for _ in range(2 if cell == "lstm" else 1))
    tangents = tuple(rng.normal(size=3) for _ in primals)

    def loss_of(model):
        return lambda *state: model(np.array([0, 1]), state if len(state) == 2 else state[0])[0].sum()
    _, t_fused = tr.jvp(loss_of(fused), primals, tangents)
    _, t_op = tr.jvp(loss_of(op_level), primals, tangents)
    eps = 1e-6
    with tr.no_grad():
        up = loss_of(op_level)(*[Tensor(p + eps * v) for p, v in zip(primals, tangents)]).item()
        down = loss_of(op_level)(*[Tensor(p - eps * v) for p, v in zip(primals, tangents)]).item()
    assert abs(t_fused - (up - down) / (2 * eps)) < 1e-7
    np.testing.assert_allclose(t_fused, t_op, rtol=1e-12)


def test_gradsums_adds_every_kind_of_share_into_a_buffer_it_owns():
    from tinygrad_rnn.engine import GradSums, OuterGrad, SparseGrad
    rng = np.random.default_rng(0)
    like = np.zeros((3, 4))
    first, second = rng.normal(size=(3, 4)), rng.normal(size=(2, 3, 4))  # the second broadcast: summed back
    u, w = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))
    sums, v = GradSums(), object()
    assert sums.add(v, first, like) is True
    assert sums.add(v, second, like) is False
    assert sums.add(v, SparseGrad((np.array([0, 0]), slice(None)), np.ones((2, 4))), like) is False
    assert sums.add(v, OuterGrad(u, w), like) is False
    kept = first.copy()
    total = sums.pop(v, like, keep=True)
    expected = first + second.sum(0) + u.T @ w
    expected[0] += 2  # a repeated index adds twice
    np.testing.assert_allclose(total, expected, rtol=1e-14)
    assert total.shape == like.shape and total.dtype == like.dtype
    assert not np.shares_memory(total, first) and not np.shares_memory(total, second)  # a sum of our own
    assert (first == kept).all()  # a share is never written into: it may be another input's too
    assert sums.waiting() == []


def test_gradsums_keeps_a_lone_share_as_it_came_and_a_0d_sum_an_array():
    from tinygrad_rnn.engine import GradSums, SparseGrad
    like, g = np.zeros(()), np.array(2.0)
    sums, v = GradSums(), object()
    sums.add(v, g, like)
    assert sums.pop(v, like) is g  # held as it came: no copy for a node used once
    sums.add(v, g, like)
    kept = sums.pop(v, like, keep=True)
    assert kept is not g and kept == g  # one the caller keeps (a leaf's .grad): a copy, g may be another's too
    shares = [np.array(1.5) for _ in range(3)]
    for share in shares:
        sums.add(v, share, like)
    total = sums.pop(v, like, keep=True)
    assert isinstance(total, np.ndarray) and total.shape == () and total == 4.5
    assert all(s == 1.5 for s in shares)  # summed into an array of our own, no share written into
    sparse = SparseGrad((Ellipsis, slice(0, 2)), np.ones(2))
    sums.add(v, sparse, np.zeros(4))
    assert sums.pending[v] is sparse  # a lone slice's share stays sparse until it is needed
    assert sums.pop(v, np.zeros(4)).tolist() == [1, 1, 0, 0]
    sums.add(v, np.ones(3, np.float64), np.zeros(3, np.float32))
    assert sums.pop(v, np.zeros(3, np.float32)).dtype == np.float32  # cast to the tensor's dtype


def test_tr_grad_returns_gradients_and_touches_no_grad():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=3), requires_grad=True)
    W = Tensor(rng.normal(size=(2, 3)), requires_grad=True, name="W")
    h = (W @ x).tanh()
    y = (h * h).sum()
    gx, gh, gx_again = tr.grad(y, [x, h, x], retain_graph=True)
    assert x.grad is None and W.grad is None
    np.testing.assert_array_equal(gx.data, gx_again.data)
    np.testing.assert_allclose(gh.data, 2 * h.data, rtol=1e-14)
    np.testing.assert_allclose(gx.data, W.data.T @ (2 * h.data * (1 - h.data ** 2)), rtol=1e-14)
    unused = Tensor(np.ones(2), requires_grad=True, name="u")
    with pytest.raises(RuntimeError, match=r"grad: input 1 \('u'\) is not used"):
        tr.grad(y, [x, unused], retain_graph=True)
    assert tr.grad(y, [x, unused], allow_unused=True)[1] is None


def test_one_graph_walk_makes_no_tensors_and_leaves_no_reference_cycles():
    import gc
    import weakref
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x.tanh() * 2).sum()
    kinds = [type(v).__name__ for v in tr.engine.walk(y)]
    assert kinds == ["Tensor", "Tanh", "Tensor", "Mul", "Sum"]  # inputs first; the constant 2 a leaf
    tanh = y.grad_fn.inputs[0].inputs[0]
    assert tanh._ghost is None  # the walk read the links only
    gc.disable()
    try:
        stand_in = weakref.ref(tanh.output())  # what viz and check draw from
        assert stand_in() is None  # linked weakly from its node: no node <-> tensor cycle keeps it
        assert "Tanh" in viz.draw(y).source
    finally:
        gc.enable()


# ---- found by a second reviewer: tr.grad's part of the graph, and a checkpoint's re-run under no_grad ------
def test_tr_grad_of_an_intermediate_leaves_the_rest_of_the_graph_and_every_grad_alone():
    x = Tensor(np.array([0.3, -0.5]), requires_grad=True)
    W = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    y = tr.checkpoint(lambda v: (v @ W).tanh(), x)
    h = y * 2
    (gh,) = tr.grad((h * h).sum(), [h])
    np.testing.assert_allclose(gh.data, 2 * h.data, rtol=1e-14)
    assert W.grad is None and x.grad is None  # the checkpoint below h did not run (it would add into W.grad)
    y2 = x.tanh()
    h2 = y2 * 2
    tr.grad((h2 * h2).sum(), [h2])
    (y2 * 3).sum().backward()  # the tanh below h2 kept its saved output
    np.testing.assert_allclose(x.grad, 3 * (1 - np.tanh(x.data) ** 2), rtol=1e-14)


def test_tr_grad_create_graph_at_the_output_of_an_op_that_cannot_differentiate_twice():
    from fuzz import Cube  # an ndarray backward: its rule is not asked to run, only its output's gradient
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    h = Cube.apply(x)
    (gh,) = tr.grad((h * h).sum(), [h], create_graph=True)
    np.testing.assert_allclose(gh.data, 2 * h.data, rtol=1e-14)
    (ggh,) = tr.grad(gh.sum(), [h])
    np.testing.assert_allclose(ggh.data, [2.0, 2.0], rtol=1e-14)


def test_a_checkpoint_differentiates_when_backward_runs_under_no_grad():
    W = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    x = Tensor(np.array([0.1, 0.2]), requires_grad=True)
    loss = (tr.checkpoint(lambda v: (v @ W).tanh(), x) ** 2).sum()
    with tr.no_grad():
        loss.backward()
    y = np.tanh(x.data @ W.data)
    np.testing.assert_allclose(x.grad, W.data @ (2 * y * (1 - y * y)), rtol=1e-14)  # as PyTorch: [2.0466, 4.8605]
    np.testing.assert_allclose(x.grad, [2.0466, 4.8605], atol=1e-4)
