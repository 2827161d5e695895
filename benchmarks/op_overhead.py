"""What the engine costs on tiny arrays: forward + backward through tinygrad_rnn next to the bare
NumPy calls that do the same math (forward, then the vector-Jacobian product into a gradient buffer).

Run: python benchmarks/op_overhead.py   (timings interleaved, median of many repeats)
"""
import timeit

import numpy as np

import tinygrad_rnn as tr


def engine_and_numpy_cases(rng):
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
        gW, gx = np.outer(g100, x), W.T @ g100
        return y, gW, gx

    def np_log_softmax():
        shifted = z - z.max()
        y = shifted - np.log(np.exp(shifted).sum())
        gz = g65 - np.exp(y) * g65.sum()
        return gz

    return [("add (100,)", engine(add), np_add),
            ("tanh (100,)", engine(tanh), np_tanh),
            ("matvec (100,100) @ (100,)", engine(matvec), np_matvec),
            ("log_softmax (65,)", engine(log_softmax), np_log_softmax)]


def median_us(fn, number, repeat):
    return 1e6 * np.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    rng = np.random.default_rng(0)
    print(f"{'op (forward + backward)':28s} {'engine µs':>10s} {'numpy µs':>10s} {'ratio':>7s}")
    for label, engine_fn, numpy_fn in engine_and_numpy_cases(rng):
        engine_fn(), numpy_fn()  # warm-up
        engine_times, numpy_times = [], []
        for _ in range(15):  # interleave so both see the same machine state
            engine_times.append(median_us(engine_fn, 2000, 3))
            numpy_times.append(median_us(numpy_fn, 2000, 3))
        e, n = np.median(engine_times), np.median(numpy_times)
        print(f"{label:28s} {e:10.2f} {n:10.2f} {e / n:7.2f}")


if __name__ == "__main__":
    main()
