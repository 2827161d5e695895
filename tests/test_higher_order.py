"""Gradients of gradients (create_graph=True): every built-in op's backward differentiated again, against
PyTorch's torch.autograd.grad(create_graph=True) and against central differences of the first derivative;
third order for a few; the refusals of ndarray backwards (fused steps, a user's Function)."""
import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import nn
from tinygrad_rnn.function import Affine, BroadcastTo, ScatterAdd
from tinygrad_rnn.nn.cells import ColumnGather


def _pos(rng, *shape):
    return rng.uniform(0.5, 2.0, shape)


def _gen(rng, *shape):
    return rng.standard_normal(shape)


IDX = np.array([2, 0, 2, 3])  # a repeated index: its gradients add up
MASK = np.array([[True, False, True, False], [False, True, True, True], [True, True, False, False]])

# name, inputs (rng -> arrays), tinygrad_rnn function of Tensors, torch function of tensors
OPS = [
    ("add broadcast", lambda r: (_gen(r, 3, 4), _gen(r, 4)), lambda a, b: a + b, lambda a, b: a + b),
    ("sub", lambda r: (_gen(r, 3, 4), _gen(r, 3, 1)), lambda a, b: a - b, lambda a, b: a - b),
    ("mul broadcast", lambda r: (_gen(r, 3, 4), _gen(r, 4)), lambda a, b: a * b, lambda a, b: a * b),
    ("x*x", lambda r: (_gen(r, 5),), lambda a: a * a, lambda a: a * a),
    ("div", lambda r: (_gen(r, 3, 4), _pos(r, 4)), lambda a, b: a / b, lambda a, b: a / b),
    ("pow", lambda r: (_pos(r, 3, 4), _gen(r, 3, 4)), lambda a, b: a ** b, lambda a, b: a ** b),
    ("pow const", lambda r: (_gen(r, 6),), lambda a: a ** 3.0, lambda a: a ** 3.0),
    ("neg", lambda r: (_gen(r, 4),), lambda a: -a, lambda a: -a),
    ("matmul 2d@2d", lambda r: (_gen(r, 3, 4), _gen(r, 4, 2)), lambda a, b: a @ b, lambda a, b: a @ b),
    ("matmul 2d@1d", lambda r: (_gen(r, 3, 4), _gen(r, 4)), lambda a, b: a @ b, lambda a, b: a @ b),
    ("matmul 1d@2d", lambda r: (_gen(r, 4), _gen(r, 4, 3)), lambda a, b: a @ b, lambda a, b: a @ b),
    ("matmul 3d@2d", lambda r: (_gen(r, 2, 3, 4), _gen(r, 4, 2)), lambda a, b: a @ b, lambda a, b: a @ b),
    ("affine vector", lambda r: (_gen(r, 4), _gen(r, 3, 4), _gen(r, 3), _gen(r, 3)),
     lambda x, W, b, t: Affine.apply(x, W, b, t), lambda x, W, b, t: W @ x + b + t),
    ("affine rows", lambda r: (_gen(r, 2, 5, 4), _gen(r, 3, 4), _gen(r, 3)),
     lambda x, W, b: Affine.apply(x, W, b), lambda x, W, b: x @ W.T + b),
    ("exp", lambda r: (_gen(r, 3, 4),), lambda a: a.exp(), lambda a: a.exp()),
    ("log", lambda r: (_pos(r, 3, 4),), lambda a: a.log(), lambda a: a.log()),
    ("tanh", lambda r: (_gen(r, 3, 4),), lambda a: a.tanh(), lambda a: a.tanh()),
    ("sigmoid", lambda r: (_gen(r, 3, 4),), lambda a: a.sigmoid(), lambda a: a.sigmoid()),
    ("relu", lambda r: (_gen(r, 3, 4),), lambda a: a.relu() * a, lambda a: a.relu() * a),
    ("sqrt", lambda r: (_pos(r, 3, 4),), lambda a: a.sqrt(), lambda a: a.sqrt()),
    ("abs", lambda r: (_gen(r, 3, 4),), lambda a: a.abs() * a, lambda a: a.abs() * a),
    ("clip", lambda r: (_gen(r, 3, 4),), lambda a: a.clip(-0.5, 0.7) * a, lambda a: a.clamp(-0.5, 0.7) * a),
    ("sum axis", lambda r: (_gen(r, 3, 4),), lambda a: a.sum(axis=0), lambda a: a.sum(dim=0)),
    ("sum all", lambda r: (_gen(r, 3, 4),), lambda a: a.sum() * a, lambda a: a.sum() * a),
    ("mean keepdims", lambda r: (_gen(r, 3, 4),), lambda a: a.mean(axis=1, keepdims=True) * a,
     lambda a: a.mean(dim=1, keepdim=True) * a),
    ("max axis", lambda r: (_gen(r, 3, 4),), lambda a: a.max(axis=1) * a.sum(axis=1),
     lambda a: a.amax(dim=1) * a.sum(dim=1)),
    ("softmax", lambda r: (_gen(r, 3, 4),), lambda a: a.softmax(axis=-1), lambda a: a.softmax(dim=-1)),
    ("softmax axis 0", lambda r: (_gen(r, 3, 4),), lambda a: a.softmax(axis=0), lambda a: a.softmax(dim=0)),
    ("log_softmax", lambda r: (_gen(r, 3, 4),), lambda a: a.log_softmax(), lambda a: a.log_softmax(dim=-1)),
    ("reshape", lambda r: (_gen(r, 3, 4),), lambda a: a.reshape(2, 6) * a.reshape(2, 6),
     lambda a: a.reshape(2, 6) * a.reshape(2, 6)),
    ("transpose", lambda r: (_gen(r, 2, 3, 4),), lambda a: a.transpose(2, 0, 1) * a.transpose(2, 0, 1),
     lambda a: a.permute(2, 0, 1) * a.permute(2, 0, 1)),
    ("T", lambda r: (_gen(r, 3, 4), _gen(r, 3, 4)), lambda a, b: a.T @ b, lambda a, b: a.T @ b),
    ("getitem slice", lambda r: (_gen(r, 3, 4),), lambda a: a[1:, ::2] * a[:2, 1::2],
     lambda a: a[1:, ::2] * a[:2, 1::2]),
    ("getitem repeated", lambda r: (_gen(r, 5, 3),), lambda a: a[IDX] * a[IDX], lambda a: a[IDX] * a[IDX]),
    ("getitem mask", lambda r: (_gen(r, 3, 4),), lambda a: a[MASK] * a[MASK], lambda a: a[MASK] * a[MASK]),
    ("concat", lambda r: (_gen(r, 2, 3), _gen(r, 4, 3)), lambda a, b: tr.concat([a, b * a.sum()], axis=0),
     lambda a, b: __import__("torch").cat([a, b * a.sum()], dim=0)),
    ("stack", lambda r: (_gen(r, 3), _gen(r, 3)), lambda a, b: tr.stack([a * b, b], axis=1),
     lambda a, b: __import__("torch").stack([a * b, b], dim=1)),
    ("where", lambda r: (_gen(r, 3, 4), _gen(r, 4)), lambda a, b: tr.where(MASK, a * b, b),
     lambda a, b: __import__("torch").where(__import__("torch").tensor(MASK), a * b, b)),
    ("broadcast_to", lambda r: (_gen(r, 3, 1),), lambda a: BroadcastTo.apply(a, shape=(2, 3, 4)) * a,
     lambda a: a.expand(2, 3, 4) * a),
    ("scatter_add", lambda r: (_gen(r, 4, 3),), lambda v: ScatterAdd.apply(v * v, index=IDX, shape=(5, 3)),
     lambda v: __import__("torch").zeros(5, 3, dtype=v.dtype).index_add(0, __import__("torch").tensor(IDX), v * v)),
    ("column gather", lambda r: (_gen(r, 4, 6),), lambda W: ColumnGather.apply(W, idx=IDX) * W[:, 0],
     lambda W: W[:, IDX].T * W[:, 0]),
    ("column gather one", lambda r: (_gen(r, 4, 6),), lambda W: ColumnGather.apply(W, idx=3) * W[:, 0],
     lambda W: W[:, 3] * W[:, 0]),
    ("cross_entropy", lambda r: (_gen(r, 4, 5),), lambda z: nn.cross_entropy(z, [1, -100, 4, 1], "mean"),
     lambda z: __import__("torch").nn.functional.cross_entropy(z, __import__("torch").tensor([1, -100, 4, 1]))),
    ("cross_entropy sum", lambda r: (_gen(r, 2, 3, 5),), lambda z: nn.cross_entropy(z, [[0, 1, 2], [4, 3, 3]]),
     lambda z: __import__("torch").nn.functional.cross_entropy(
         z.reshape(-1, 5), __import__("torch").tensor([0, 1, 2, 4, 3, 3]), reduction="sum")),
    ("binary_cross_entropy", lambda r: (_gen(r, 3, 4),), lambda z: nn.binary_cross_entropy(z, MASK),
     lambda z: __import__("torch").nn.functional.binary_cross_entropy_with_logits(
         z, __import__("torch").tensor(MASK, dtype=z.dtype), reduction="sum")),
    ("mse", lambda r: (_gen(r, 3, 4), _gen(r, 3, 4)), lambda a, b: nn.mse(a * b, np.ones((3, 4))),
     lambda a, b: 0.5 * ((a * b - 1) ** 2).sum()),
]


def _loss(f, xs, W):
    """A scalar of the op's output that is curved in every entry: sum(W * tanh(f(xs)))."""
    y = f(*xs)
    return (y.tanh() * W).sum()


def _weights(f, arrays, rng):
    shape = f(*[tr.Tensor(a) for a in arrays]).shape
    return rng.standard_normal(shape)


def _hvp(f, arrays, W, V):
    """d/dx (sum_i <dL/dx_i, V_i>) = H V by create_graph, and the first derivative dL/dx."""
    xs = [tr.Tensor(a, requires_grad=True) for a in arrays]
    gs = tr.grad(_loss(f, xs, W), xs, create_graph=True)
    inner = sum((g * v).sum() for g, v in zip(gs, V))
    return [g.numpy() for g in gs], [h.numpy() for h in tr.grad(inner, xs)]


def _torch_hvp(f, arrays, W, V):
    torch = pytest.importorskip("torch")
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    L = (f(*xs).tanh() * torch.tensor(W)).sum()
    gs = torch.autograd.grad(L, xs, create_graph=True)
    inner = sum((g * torch.tensor(v)).sum() for g, v in zip(gs, V))
    return [g.detach().numpy() for g in gs], [h.numpy() for h in torch.autograd.grad(inner, xs)]


@pytest.mark.parametrize("name,make,f,tf", OPS, ids=[op[0] for op in OPS])
def test_second_derivative_of_every_op_equals_pytorch_and_differences_of_the_first(name, make, f, tf):
    rng = np.random.default_rng(0)
    arrays = make(rng)
    W = _weights(f, arrays, rng)
    V = [rng.standard_normal(a.shape) for a in arrays]
    g, Hv = _hvp(f, arrays, W, V)
    tg, tHv = _torch_hvp(tf, arrays, W, V)
    for mine, theirs in zip(g + Hv, tg + tHv):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-11)
    eps = 1e-6  # central differences of the first derivative along V

    def first(sign):
        xs = [tr.Tensor(a + sign * eps * v, requires_grad=True) for a, v in zip(arrays, V)]
        return tr.grad(_loss(f, xs, W), xs)
    for hv, up, down in zip(Hv, first(1), first(-1)):
        np.testing.assert_allclose(hv, (up.numpy() - down.numpy()) / (2 * eps), rtol=1e-5, atol=1e-6)


THIRD = ["mul broadcast", "pow", "matmul 2d@1d", "affine rows", "log_softmax", "softmax", "getitem repeated",
         "cross_entropy", "sigmoid", "div", "concat"]


@pytest.mark.parametrize("name", THIRD)
def test_third_derivative_equals_pytorch(name):
    torch = pytest.importorskip("torch")
    _, make, f, tf = next(op for op in OPS if op[0] == name)
    rng = np.random.default_rng(1)
    arrays = make(rng)
    W = _weights(f, arrays, rng)
    V, U = ([rng.standard_normal(a.shape) for a in arrays] for _ in range(2))
    xs = [tr.Tensor(a, requires_grad=True) for a in arrays]
    gs = tr.grad(_loss(f, xs, W), xs, create_graph=True)
    hs = tr.grad(sum((g * v).sum() for g, v in zip(gs, V)), xs, create_graph=True)
    ts = tr.grad(sum((h * u).sum() for h, u in zip(hs, U)), xs)
    txs = [torch.tensor(a, requires_grad=True) for a in arrays]
    tgs = torch.autograd.grad((tf(*txs).tanh() * torch.tensor(W)).sum(), txs, create_graph=True)
    ths = torch.autograd.grad(sum((g * torch.tensor(v)).sum() for g, v in zip(tgs, V)), txs, create_graph=True)
    tts = torch.autograd.grad(sum((h * torch.tensor(u)).sum() for h, u in zip(ths, U)), txs)
    for mine, theirs in zip(ts, tts):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["broadcast_to", "scatter_add"])
def test_the_ops_of_create_graph_have_forward_mode_rules(name):
    torch = pytest.importorskip("torch")
    _, make, f, tf = next(op for op in OPS if op[0] == name)
    rng = np.random.default_rng(2)
    (x,), v = make(rng), rng.standard_normal(make(rng)[0].shape)
    _, dy = tr.jvp(f, (x,), (v,))
    np.testing.assert_allclose(dy, torch.func.jvp(tf, (torch.tensor(x),), (torch.tensor(v),))[1].numpy(),
                               rtol=1e-12, atol=1e-12)


def _second_order_problems(graph, fuzz, torch):
    """H·v of a random graph's output by create_graph against PyTorch's and, for a smooth graph, against central
    differences of the first derivative: sentences for each disagreement."""
    wrt = [(name, data) for name, data, req in graph.leaves if req]
    rng = np.random.default_rng(graph.seed + 2)
    v = [rng.normal(size=data.shape) for _, data in wrt]

    def hvp_tr(shift=0.0):
        leaves = {name: tr.Tensor(data.copy(), requires_grad=req, name=name) for name, data, req in graph.leaves}
        for (name, _), d in zip(wrt, v):
            leaves[name].data += shift * d
        y, _ = fuzz.run_tr(graph, leaves)
        xs = [leaves[n] for n, _ in wrt]
        gs = tr.grad(y, xs, create_graph=shift == 0.0, allow_unused=True)
        gs = [g if g is not None else tr.Tensor(np.zeros(x.shape)) for g, x in zip(gs, xs)]
        if shift:
            return [g.numpy() for g in gs]
        inner = sum((g * d).sum() for g, d in zip(gs, v))
        if not inner.requires_grad:
            return [np.zeros(x.shape) for x in xs]
        hs = tr.grad(inner, xs, allow_unused=True)
        return [np.zeros(x.shape) if h is None else h.numpy() for h, x in zip(hs, xs)]
    mine = hvp_tr()
    problems = []
    leaves = {name: torch.tensor(data, requires_grad=req) for name, data, req in graph.leaves}
    t_y, _ = fuzz.run_torch(graph, leaves, retain=False)
    xs = [leaves[n] for n, _ in wrt]
    t_g = torch.autograd.grad(t_y, xs, create_graph=True, allow_unused=True)
    inner = sum((g * torch.tensor(d)).sum() for g, d in zip(t_g, v) if g is not None)
    t_h = torch.autograd.grad(inner, xs, allow_unused=True) if torch.is_tensor(inner) and inner.requires_grad \
        else [None] * len(xs)
    for (name, data), h, th in zip(wrt, mine, t_h):
        th = np.zeros(data.shape) if th is None else th.numpy(force=True)
        if not fuzz._close(h, th, 1e-8):
            problems.append(f"H v of {name} vs torch: {h!r} vs {th!r}")
    if graph.smooth and not any(line.island or line.op == "detach" for line in graph.lines):  # held values: no
        eps = 1e-5                                                                            # difference applies
        for (name, _), h, up, down in zip(wrt, mine, hvp_tr(eps), hvp_tr(-eps)):
            if not fuzz._close(h, (up - down) / (2 * eps), 1e-4):
                problems.append(f"H v of {name} vs differences of the gradient: {h!r} vs {(up - down) / (2 * eps)!r}")
    return problems


def test_random_graphs_second_derivatives_agree_with_pytorch_and_differences():
    """The differential test's generator (tests/fuzz.py), second order: 270 random graphs over the public ops."""
    torch = pytest.importorskip("torch")
    import fuzz
    checked = 0
    for seed in range(300):
        if seed % 10 == 0:
            continue  # the model cases: CharRNN's HVP has its own test (test_func.py)
        graph = fuzz.make_graph(seed)
        if any(line.op == "cube" for line in graph.lines):
            continue  # a user's Function with an ndarray backward: it refuses create_graph (test_func.py)
        problems = _second_order_problems(graph, fuzz, torch)
        assert not problems, graph.source() + "\n" + "\n".join(problems[:3])
        checked += 1
    assert checked >= 150
