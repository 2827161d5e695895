"""What the engine costs on tiny arrays: forward + backward through tinygrad_rnn next to the bare
NumPy calls that do the same math (forward, then the vector-Jacobian product into a gradient buffer)
and, if PyTorch is installed, next to torch autograd on float64 tensors (one thread, as NumPy's BLAS).

Run: python benchmarks/op_overhead.py   (timings interleaved, median of many repeats)
Columns /numpy and /torch are engine time over theirs. A torch backward() call has a fixed cost of
about 20 µs, so its column here is mostly that; over a whole training step see bench.py.
"""
import os
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads BLAS;
    os.environ.setdefault(_name, "1")                                          # the library sets none
import timeit

import tinygrad_rnn as tr  # noqa: E402

import numpy as np

try:
    import torch
except ImportError:
    torch = None


def cases(rng):
    """(label, engine, numpy, torch or None) per op: each a no-argument forward + backward."""
    a, b = rng.standard_normal(100), rng.standard_normal(100)
    W, x = rng.standard_normal((100, 100)), rng.standard_normal(100)
    z = rng.standard_normal(65)
    g100, g65 = np.ones(100), np.ones(65)
    ta, tb = tr.Tensor(a, requires_grad=True), tr.Tensor(b, requires_grad=True)
    tW, tx = tr.Tensor(W, requires_grad=True), tr.Tensor(x, requires_grad=True)
    tz = tr.Tensor(z, requires_grad=True)

    def engine(make):
        def run():
            for t in (ta, tb, tW, tx, tz):
                t.grad = None
            make().backward(grad=g100 if make is not log_softmax else g65)
        return run

    def add():
        return ta + tb

    def tanh():
        return ta.tanh()

    def matvec():
        return tW @ tx

    def log_softmax():
        return tz.log_softmax()

    # Bare NumPy: the forward, then each input's gradient written into a fresh buffer, as the engine does.
    def np_add():
        y = a + b
        ga, gb = g100.copy(), g100.copy()
        return y, ga, gb

    def np_tanh():
        y = np.tanh(a)
        ga = g100 * (1 - y * y)
        return ga

    def np_matvec():
        y = W @ x
        gW, gx = np.dot(g100[:, None], x[None, :]), W.T @ g100  # the fastest outer product
        return y, gW, gx

    def np_log_softmax():
        shifted = z - z.max()
        y = shifted - np.log(np.exp(shifted).sum())
        gz = g65 - np.exp(y) * g65.sum()
        return gz

    engine_and_numpy = [("add (100,)", engine(add), np_add),
                        ("tanh (100,)", engine(tanh), np_tanh),
                        ("matvec (100,100) @ (100,)", engine(matvec), np_matvec),
                        ("log_softmax (65,)", engine(log_softmax), np_log_softmax)]
    torch_fns = torch_cases(a, b, W, x, z) if torch is not None else [None] * len(engine_and_numpy)
    return [(label, e, n, t) for (label, e, n), t in zip(engine_and_numpy, torch_fns)]


def torch_cases(a, b, W, x, z):
    """The same four ops through torch autograd, leaves reset to .grad = None each time as for the engine."""
    pa, pb, pW, px, pz = (torch.tensor(v, requires_grad=True) for v in (a, b, W, x, z))
    g100, g65 = torch.ones(100, dtype=torch.float64), torch.ones(65, dtype=torch.float64)

    def autograd(make, g):
        def run():
            for t in (pa, pb, pW, px, pz):
                t.grad = None
            make().backward(g)
        return run

    def add():
        return pa + pb

    def tanh():
        return pa.tanh()

    def matvec():
        return pW @ px

    def log_softmax():
        return pz.log_softmax(0)

    return [autograd(add, g100), autograd(tanh, g100), autograd(matvec, g100), autograd(log_softmax, g65)]


def median_us(fn, number, repeat):
    return 1e6 * np.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    rng = np.random.default_rng(0)
    if torch is None:
        print("float64, one BLAS thread")
        print(f"{'op (forward + backward)':28s} {'engine µs':>10s} {'numpy µs':>10s} {'ratio':>7s}")
    else:
        torch.set_num_threads(1)
        print("float64, one BLAS thread, torch.set_num_threads(1)")
        print(f"{'op (forward + backward)':28s} {'engine µs':>10s} {'numpy µs':>10s} {'torch µs':>10s}"
              f" {'/numpy':>7s} {'/torch':>7s}")
    for label, engine_fn, numpy_fn, torch_fn in cases(rng):
        fns = [engine_fn, numpy_fn] + ([torch_fn] if torch_fn else [])
        for fn in fns:
            fn()  # warm-up
        times = [[] for _ in fns]
        for _ in range(15):  # interleave so all see the same machine state
            for fn, ts in zip(fns, times):
                ts.append(median_us(fn, 2000, 3))
        e, n, *t = (np.median(ts) for ts in times)
        print(f"{label:28s} {e:10.2f} {n:10.2f} " + "".join(f"{v:10.2f} " for v in t) + f"{e / n:7.2f}"
              + "".join(f" {e / v:7.2f}" for v in t))
    if torch is None:
        print("PyTorch not installed: pip install -e '.[bench]' for its column")


if __name__ == "__main__":
    main()
