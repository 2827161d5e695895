"""tr.func against torch.func on the same functions: grad (composed), vjp, jvp, hvp, hessian, jacrev, jacfwd;
the Hessian-vector product of the CharRNN loss (rnn, lstm, gru) equal to PyTorch's; tr.grad's contract;
create_graph's refusals (fused steps, a user's Function with an ndarray backward)."""
import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn

torch = pytest.importorskip("torch")
F = torch.nn.functional


def f_scalar(x, y):  # the same code runs on Tensors and torch tensors
    return ((x * y).tanh() * x.exp()).sum() + (x ** 3.0).sum() * (y * y).sum()


def f_vector(x):
    return (x.reshape(2, 3).softmax(-1) * x.reshape(2, 3)).sum(0).tanh()


X = np.random.default_rng(0).standard_normal(6)
Y = np.random.default_rng(1).standard_normal(6)
V = np.random.default_rng(2).standard_normal(6)


def t(a):
    return torch.tensor(a)


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a), b.detach().numpy() if hasattr(b, "detach") else b, rtol=tol, atol=tol)


def test_grad_with_argnums_and_composed_equals_torch_func():
    close(tr.func.grad(f_scalar)(X, Y), torch.func.grad(f_scalar)(t(X), t(Y)))
    gx, gy = tr.func.grad(f_scalar, argnums=(0, 1))(X, Y)
    tx, ty = torch.func.grad(f_scalar, argnums=(0, 1))(t(X), t(Y))
    close(gx, tx), close(gy, ty)

    def s(x):
        return (x * x * x).tanh() * x.exp()
    for order, (mine, theirs) in enumerate([(s, s), (tr.func.grad(s), torch.func.grad(s))]):
        d2 = tr.func.grad(tr.func.grad(mine))(np.array(0.7))
        close(d2, torch.func.grad(torch.func.grad(theirs))(torch.tensor(0.7, dtype=torch.float64)))
    # no perturbation confusion: d/dx [x * (d/dy x*y at y=x)] = d/dx x^2 = 2x
    out = tr.func.grad(lambda x: x * tr.func.grad(lambda y: x * y)(x))(np.array(3.0))
    assert out == pytest.approx(6.0, abs=1e-14)


def test_vjp_jvp_jacrev_jacfwd_hessian_equal_torch_func():
    out, vjp_fn = tr.func.vjp(f_vector, X)
    tout, tvjp = torch.func.vjp(f_vector, t(X))
    w = np.array([0.5, -1.0, 2.0])
    close(out, tout), close(vjp_fn(w)[0], tvjp(t(w))[0])
    out, dy = tr.func.jvp(f_vector, (X,), (V,))
    close(dy, torch.func.jvp(f_vector, (t(X),), (t(V),))[1])
    J = torch.func.jacrev(f_vector)(t(X))
    close(tr.func.jacrev(f_vector)(X), J), close(tr.func.jacfwd(f_vector)(X), J)
    close(tr.func.hessian(f_scalar)(X, Y), torch.func.hessian(f_scalar)(t(X), t(Y)))
    close(tr.func.hessian(f_scalar, argnums=1)(X, Y), torch.func.hessian(f_scalar, argnums=1)(t(X), t(Y)))


def test_hvp_is_forward_over_reverse_and_equals_torch_and_the_hessian():
    out, hv = tr.func.hvp(lambda x: f_scalar(x, Tensor(Y)), (X,), (V,))
    tout, thv = torch.autograd.functional.hvp(lambda x: f_scalar(x, t(Y)), t(X), t(V))
    close(out, tout), close(hv, thv)
    close(hv, tr.func.hessian(f_scalar)(X, Y) @ V)
    _, (hx, hy) = tr.func.hvp(f_scalar, (X, Y), (V, -V))  # several primals: H of all of them together
    _, (tx, ty) = torch.autograd.functional.hvp(f_scalar, (t(X), t(Y)), (t(V), t(-V)))
    close(hx, tx), close(hy, ty)


def test_tr_grad_contract():
    x = Tensor(X, requires_grad=True, name="x")
    unused = Tensor(Y, requires_grad=True, name="unused")
    y = (x * x).sum()
    (g,) = tr.grad(y, x, retain_graph=True)
    np.testing.assert_allclose(g.numpy(), 2 * X)
    assert x.grad is None and g.grad_fn is None  # returned, .grad untouched, no graph without create_graph
    with pytest.raises(RuntimeError, match="input 1 \\('unused'.*not used.*allow_unused"):
        tr.grad(y, [x, unused], retain_graph=True)
    assert tr.grad(y, [x, unused], allow_unused=True, retain_graph=True)[1] is None
    (g,) = tr.grad(y, x, create_graph=True)
    assert g.grad_fn is not None
    (h,) = tr.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), 2.0)
    z = (x.tanh() * x).sum()
    z.backward(create_graph=True)  # .grad stays an ndarray, as the project's convention
    assert type(x.grad) is np.ndarray
    np.testing.assert_allclose(x.grad, np.tanh(X) + X * (1 - np.tanh(X) ** 2))
    h = (x * 2).tanh()  # an intermediate as the input: dL/dh
    L = (h * h).sum()
    np.testing.assert_allclose(tr.grad(L, h)[0].numpy(), 2 * np.tanh(2 * X))


def test_fused_steps_and_ndarray_backwards_refuse_create_graph_naming_themselves():
    idx, targets = np.array([0, 2, 1, 3]), np.array([2, 1, 3, 0])
    for cell, step in [("rnn", "RNNStep"), ("lstm", "LSTMStep"), ("gru", "GRUStep")]:
        model = nn.CharRNN(4, 3, cell=cell, fused=True, rng=np.random.default_rng(0))
        loss = nn.cross_entropy(model(idx)[0], targets)
        with pytest.raises(RuntimeError, match=f"^{step}: .*create_graph.*fused=False"):
            tr.grad(loss, model.parameters(), create_graph=True)

    from fuzz import Cube  # an ndarray backward of one's own, as a user writes one
    x = Tensor(X, requires_grad=True)
    with pytest.raises(RuntimeError, match="^Cube: its backward works on ndarrays.*differentiable_backward = True"):
        tr.grad(Cube.apply(x).sum(), x, create_graph=True)

    class DCube(Cube):  # the same rule declared differentiable: its saved array is input 0
        differentiable_backward = True
        saves = (0,)
    (g,) = tr.grad(DCube.apply(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(tr.grad(g.sum(), x)[0].numpy(), 6 * X)


# ---- the CharRNN loss's Hessian-vector product against PyTorch (functional models, the same weights) ----
def torch_charrnn_loss(cell, p, idx, targets):
    H = p["cell.W_hh" if cell == "rnn" else "cell.W_h"].shape[1]
    h = torch.zeros(H, dtype=torch.float64)
    s = torch.zeros(H, dtype=torch.float64)
    logits = []
    for x in idx:
        if cell == "rnn":
            h = torch.tanh(p["cell.W_xh"][:, x] + p["cell.W_hh"] @ h + p["cell.b_h"])
        elif cell == "lstm":
            i, f, g, o = (p["cell.W_x"][:, x] + p["cell.W_h"] @ h + p["cell.b"]).split(H)
            s = torch.sigmoid(f) * s + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(s)
        else:
            ax, ah = p["cell.W_x"][:, x] + p["cell.b_x"], p["cell.W_h"] @ h + p["cell.b_h"]
            r = torch.sigmoid(ax[:H] + ah[:H])
            z = torch.sigmoid(ax[H:2 * H] + ah[H:2 * H])
            n = torch.tanh(ax[2 * H:] + r * ah[2 * H:])
            h = (1 - z) * n + z * h
        logits.append(p["out.W"] @ h + p["out.b"])
    return F.cross_entropy(torch.stack(logits), torch.tensor(targets), reduction="sum")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_hvp_of_the_charrnn_loss_equals_pytorch(cell):
    rng = np.random.default_rng(3)
    idx, targets = rng.integers(0, 5, 6), rng.integers(0, 5, 6)
    model = nn.CharRNN(5, 4, cell=cell, rng=rng)
    names = list(model.named_parameters())
    theta = [p.data for p in model.parameters()]
    v = [rng.standard_normal(p.shape) for p in theta]

    def loss(*params):
        logits, _ = tr.func.functional_call(model, dict(zip(names, params)), idx)
        return nn.cross_entropy(logits, targets)
    _, hv = tr.func.hvp(loss, theta, v)  # forward over reverse
    tp = {n: torch.tensor(a, requires_grad=True) for n, a in zip(names, theta)}
    g = torch.autograd.grad(torch_charrnn_loss(cell, tp, idx, targets), list(tp.values()), create_graph=True)
    thv = torch.autograd.grad(sum((gi * torch.tensor(vi)).sum() for gi, vi in zip(g, v)), list(tp.values()))
    for mine, theirs in zip(hv, thv):
        np.testing.assert_allclose(mine, theirs.numpy(), rtol=0, atol=1e-10)
    # reverse over reverse (tr.grad twice, on the model's own parameters) gives the same H v
    params = model.parameters()
    gs = tr.grad(nn.cross_entropy(model(idx)[0], targets), params, create_graph=True)
    hv2 = tr.grad(sum((gi * vi).sum() for gi, vi in zip(gs, v)), params)
    for mine, theirs in zip(hv2, thv):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=0, atol=1e-10)


def test_a_plain_backward_runs_the_rules_on_ndarrays_and_records_no_op():
    from tinygrad_rnn import engine
    model = nn.CharRNN(5, 4, cell="lstm", rng=np.random.default_rng(0))
    loss = nn.cross_entropy(model(np.array([0, 3, 1, 4]))[0], np.array([3, 1, 4, 2]))
    before = next(engine._creation_order)
    loss.backward()
    assert next(engine._creation_order) == before + 1  # no node was made: the first-order path is all NumPy
    assert all(type(p.grad) is np.ndarray for p in model.parameters())
