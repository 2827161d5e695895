"""Function transforms over the engine's two modes, as torch.func and JAX: grad (composable, grad(grad(f))),
vjp, jvp, hvp (forward-over-reverse: the jvp of the gradient, H never formed), hessian, jacrev, jacfwd.

A transform called on arrays returns arrays. Called on Tensors that require grad (inside another
transform), it differentiates with create_graph=True and returns Tensors, so the outer one can
differentiate its result again; each such argument is first passed through a fresh node, so that an
inner gradient is taken with respect to the inner variable only (no "perturbation confusion").
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import numpy as np

from . import engine
from .tensor import Tensor

__all__ = ["grad", "vjp", "jvp", "hvp", "hessian", "jacrev", "jacfwd", "functional_call"]

Argnums = Union[int, Sequence[int]]


def _variables(owner: str, args: tuple, argnums: Argnums) -> tuple:
    """(args with the differentiated ones as Tensors that require grad and other float arrays as constant
    Tensors, the differentiated ones' positions, nested?)."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or not all(isinstance(k, int) and -len(args) <= k < len(args) for k in nums):
        raise ValueError(f"{owner}: argnums {argnums!r} does not name arguments of a call with {len(args)}")
    nums = tuple(k % len(args) for k in nums)
    nested = any(isinstance(args[k], Tensor) and args[k].requires_grad for k in nums)
    args = [Tensor(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args]  # constants
    for k in nums:
        a = args[k]
        if isinstance(a, Tensor) and a.requires_grad:
            args[k] = a.reshape(a.shape)  # a node of this transform's own: its gradient is this level's
        else:
            a = np.asarray(a.data if isinstance(a, Tensor) else a)
            if not np.issubdtype(a.dtype, np.floating):
                raise TypeError(f"{owner}: argument {k} has dtype {a.dtype}; only floating-point arguments "
                                "are differentiated")
            args[k] = Tensor(a, requires_grad=True)
    return tuple(args), nums, nested


def _gradients(out: Tensor, xs: Sequence[Tensor], seed: Any, nested: bool) -> list:
    """d(out)/d(xs) for the seed: Tensors with their graph when nested, else arrays; zeros where out ignores x."""
    gs = engine.grad(out, list(xs), grad_outputs=seed, retain_graph=True, create_graph=nested, allow_unused=True)
    result = []
    for x, g in zip(xs, gs):
        if g is None:
            g = Tensor(np.zeros_like(x.data))
        result.append(g if nested else g.numpy())
    return result


def _output(owner: str, out: Any) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"{owner}: fn must return a Tensor, got {type(out).__name__}")
    return out


def grad(fn: Callable, argnums: Argnums = 0) -> Callable:
    """A function returning d fn / d args[argnums] of a scalar-valued fn (a tuple for a tuple of argnums),
    as torch.func.grad / jax.grad; composable: grad(grad(f)) is the second derivative."""
    def grad_fn(*args: Any) -> Any:
        args, nums, nested = _variables("grad", args, argnums)
        out = _output("grad", fn(*args))
        if out.size != 1:
            raise RuntimeError(f"grad: fn must return a scalar, got shape {out.shape}; use jacrev or vjp")
        if not out.requires_grad:  # fn does not depend on its arguments
            gs = [np.zeros(args[k].shape, args[k].dtype) for k in nums]
        else:
            gs = _gradients(out.reshape(()), [args[k] for k in nums], None, nested)
        return gs[0] if isinstance(argnums, int) else tuple(gs)
    return grad_fn


def vjp(fn: Callable, *primals: Any) -> tuple:
    """(fn(*primals), vjp_fn) with vjp_fn(v) = v^T J, one gradient per primal (a tuple), as torch.func.vjp."""
    args, nums, nested = _variables("vjp", primals, tuple(range(len(primals))))
    out = _output("vjp", fn(*args))

    def vjp_fn(cotangent: Any) -> tuple:
        v = np.asarray(cotangent.data if isinstance(cotangent, Tensor) else cotangent, dtype=out.dtype)
        if v.shape != out.shape:
            raise ValueError(f"vjp: the cotangent has shape {v.shape} but fn's output has shape {out.shape}")
        if not out.requires_grad:
            return tuple(np.zeros(a.shape, a.dtype) for a in args)
        return tuple(_gradients(out, args, v, nested))
    return (out if nested else out.numpy()), vjp_fn


def jvp(fn: Callable, primals: Sequence, tangents: Sequence) -> tuple:
    """(fn(*primals), J·tangents) in one forward pass, as torch.func.jvp (tr.jvp, with arrays out)."""
    out, tangent = engine.jvp(fn, primals, tangents)
    return out.numpy(), tangent


def hvp(fn: Callable, primals: Sequence, tangents: Sequence) -> tuple:
    """(fn(*primals), H·v) for a scalar fn, H its Hessian in all primals together and v = tangents:
    forward mode over a create_graph backward (the jvp of the gradient), so H is never formed.
    H·v is one array for one primal, a tuple (one per primal) for several."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"hvp: {len(primals)} primals but {len(tangents)} tangents")
    xs, _, _ = _variables("hvp", primals, tuple(range(len(primals))))
    seeds = []
    for k, (x, v) in enumerate(zip(xs, tangents)):
        v = np.asarray(v.data if isinstance(v, Tensor) else v, dtype=x.dtype)
        if v.shape != x.shape:
            raise ValueError(f"hvp: tangent {k} has shape {v.shape} but its primal has shape {x.shape}")
        seeds.append((x, v[None]))  # one direction
    with engine._forward_mode(seeds, keep_nodes=True):
        out = _output("hvp", fn(*xs))
        if out.size != 1:
            raise RuntimeError(f"hvp: fn must return a scalar, got shape {out.shape}")
        gs = engine.grad(out.reshape(()), list(xs), create_graph=True, allow_unused=True) if out.requires_grad \
            else (None,) * len(xs)
        hv = []
        for x, g in zip(xs, gs):
            t = None if g is None else engine._tangent_of(g)
            hv.append(np.zeros_like(x.data) if t is None else np.array(t[0]))
    return out.numpy(), (hv[0] if len(hv) == 1 else tuple(hv))


def jacrev(fn: Callable, argnums: int = 0) -> Callable:
    """A function returning the Jacobian of fn with respect to args[argnums], shape out.shape + x.shape,
    by reverse mode: one backward per output entry, as torch.func.jacrev."""
    def jac_fn(*args: Any) -> Any:
        args, (k,), nested = _variables("jacrev", args, argnums)
        nested = nested or engine._state.forward is not None  # inside jacfwd: rows with a graph to push along
        x, out = args[k], _output("jacrev", fn(*args))
        if not out.requires_grad:
            J = np.zeros(out.shape + x.shape, out.dtype)
            return Tensor(J) if nested else J
        rows = []
        for i in range(out.size):
            seed = np.zeros(out.size, out.dtype)
            seed[i] = 1
            rows.extend(_gradients(out, [x], seed.reshape(out.shape), nested))
        if not nested:
            return np.stack(rows).reshape(out.shape + x.shape)
        from .tensor import stack
        return stack(rows).reshape(out.shape + x.shape)
    return jac_fn


def jacfwd(fn: Callable, argnums: int = 0) -> Callable:
    """A function returning the Jacobian of fn with respect to args[argnums], shape out.shape + x.shape,
    by forward mode: all x.size directions pushed in one pass, as torch.func.jacfwd."""
    def jac_fn(*args: Any) -> np.ndarray:
        if not isinstance(argnums, int):
            raise TypeError(f"jacfwd: argnums must be an int, got {argnums!r}")
        args, (k,), _ = _variables("jacfwd", args, argnums)
        x = args[k]
        eye = np.eye(x.size, dtype=x.dtype).reshape((x.size,) + x.shape)  # direction i moves entry i
        with engine._forward_mode([(x, eye)], keep_nodes=True):
            out = fn(*args)
            out = _output("jacfwd", out)
            t = engine._tangent_of(out)
        if t is None:
            return np.zeros(out.shape + x.shape, out.dtype)
        return np.moveaxis(np.asarray(t), 0, -1).reshape(out.shape + x.shape)
    return jac_fn


def hessian(fn: Callable, argnums: int = 0) -> Callable:
    """A function returning the Hessian of a scalar fn with respect to args[argnums], shape x.shape + x.shape:
    jacfwd(jacrev(fn)), forward mode over reverse (small inputs: it holds all x.size directions at once)."""
    def hess_fn(*args: Any) -> np.ndarray:
        H = jacfwd(jacrev(fn, argnums), argnums)(*args)
        shape = np.shape(args[argnums].data if isinstance(args[argnums], Tensor) else args[argnums])
        return H.reshape(shape + shape)
    return hess_fn


def functional_call(module: Any, params: dict, *args: Any, **kwargs: Any) -> Any:
    """module(*args, **kwargs) computed with params (name -> Tensor or array, names as named_parameters())
    in place of its own parameters, which are put back afterwards, as torch.func.functional_call."""
    known = module.named_parameters()
    unknown = [name for name in params if name not in known]
    if unknown:
        raise KeyError(f"functional_call: {type(module).__name__} has no parameter {unknown[0]!r} "
                       f"(it has {', '.join(known)})")
    owners = []
    for name, value in params.items():
        *path, attr = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        owners.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value if isinstance(value, Tensor) else Tensor(value))
    try:
        return module(*args, **kwargs)
    finally:
        for owner, attr, old in owners:
            setattr(owner, attr, old)
