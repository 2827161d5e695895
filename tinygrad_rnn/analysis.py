"""Gradient analysis: the lecture notes' questions about backpropagation through time, answered by
measurement on a CharRNN (any cell): ∂L/∂h_t, how far back each step's loss reaches, the gradient of
each time step's copy θ_t of the shared weights, and the state Jacobians Π diag(g') W_hh.

A thin layer over the engine, as torch.func over autograd: each function unrolls the model with
`CharRNN.unroll`, asks the engine's backward, and returns plain arrays; no second copy of the math.
- ∂L/∂h_t: `retain_grad()` on each h_t of the unrolled graph, one backward.
- per-copy gradients: the engine already sends one gradient term per use of a weight (W_hh used at
  T steps gets T terms) and sums them into W_hh.grad. `per_step_grads` points the recorded ops of
  step t (those created under scope "t=k") at a copy θ_t of each parameter, so the same backward
  leaves the terms of step t in θ_t.grad instead of summing them: one forward, one backward, the
  engine's own terms (a model built with T parameter copies, the tests' independent check, would
  need its own forward). A fused model, whose output layer is one op over all steps, is unrolled
  op-level for this.
- state Jacobians: each step is unrolled from a fresh leaf copy of the previous state, so z_t is an
  independent variable, and the engine's vector-Jacobian products carry the rows of ∂z_{T-1}/∂z_{t+1}
  back one step to ∂z_{T-1}/∂z_t. (retain_grad on an LSTM's s_t in one graph would add the path
  through h_t = o tanh(s_t) of the same step: a total derivative, not the recurrence's Jacobian.)
- RTRL: the engine's forward mode instead of its backward: one tangent direction per parameter
  entry, so each tensor's tangent is its derivative with respect to all of θ, carried step to step.
Every function leaves the model as it found it: same parameter objects, values, requires_grad, .grad.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Union

import numpy as np

from . import _memory
from .engine import Function, _forward_mode, _state, _tangent_of, no_grad, walk
from .nn.losses import cross_entropy
from .tensor import Tensor, concat

__all__ = ["hidden_grads", "influence", "per_step_grads", "state_jacobians", "spectral_radius", "rtrl_grads"]

_STEP = re.compile(r"(?:^|/)t=(\d+)(?:/|$)")  # the time step CharRNN.unroll records in each op's scope


# ---- shared pieces ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _untouched(model: Any, owner: str, grads: bool = True) -> Iterator[list]:
    """Run inside with the model's parameters requiring grad (grads=True) or not, .grad cleared;
    restore every parameter's requires_grad and .grad (the same array object) afterwards."""
    params = list(model.named_parameters().values())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    grad_enabled, _state.grad_enabled = _state.grad_enabled, True  # works inside no_grad() too
    try:
        for p in params:
            p.requires_grad, p.grad = grads, None
        yield params
    finally:
        _state.grad_enabled = grad_enabled
        for p, requires_grad, grad in saved:
            p.requires_grad, p.grad = requires_grad, grad


@contextlib.contextmanager
def _op_level(model: Any) -> Iterator[None]:
    """A fused model (CharRNN(fused=True)) unrolled op by op inside: its output layer runs once over all
    steps, one op no step owns; the op-level steps give the same values (to 1e-12) and one op per use."""
    fused = getattr(model, "fused", False)
    try:
        if fused:
            model.fused = False
        yield
    finally:
        if fused:
            model.fused = fused


def _check_sequences(owner: str, model: Any, inputs: Any, targets: Any = None) -> tuple:
    """inputs (and targets) as int arrays of the same shape (T,) or (T, B), for a CharRNN-like model."""
    if not all(hasattr(model, a) for a in ("unroll", "named_parameters", "cell")):
        raise TypeError(f"{owner}: model must be a CharRNN (with unroll and cell), got {type(model).__name__}")
    inputs = np.asarray(inputs.data if isinstance(inputs, Tensor) else inputs)
    if not np.issubdtype(inputs.dtype, np.integer) or inputs.ndim not in (1, 2) or inputs.shape[0] == 0:
        raise ValueError(f"{owner}: inputs must be integers of shape (T,) or (T, B) with T >= 1, "
                         f"got {inputs.dtype} of shape {inputs.shape}")
    if targets is None:
        return inputs, None
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if not np.issubdtype(targets.dtype, np.integer) or targets.shape != inputs.shape:
        raise ValueError(f"{owner}: targets must be integers of the inputs' shape {inputs.shape}, "
                         f"got {targets.dtype} of shape {targets.shape}")
    return inputs, targets


def _hidden(model: Any, state: Any, owner: str) -> Tensor:
    """h of a state, checked to be a tensor the state holds (so its gradient is the whole ∂L/∂h)."""
    h = model.cell.hidden(state) if hasattr(model.cell, "hidden") else state
    if not isinstance(h, Tensor) or (hasattr(model.cell, "hidden") and model.cell.hidden(state) is not h):
        raise TypeError(f"{owner}: the cell's hidden(state) must return a Tensor held in the state")
    return h


def _unroll(model: Any, inputs: np.ndarray, state: Any, owner: str) -> tuple[Tensor, list, list]:
    """logits, the states after each step and their hidden vectors h_t (gradients kept on them)."""
    logits, states = model.unroll(inputs, state)
    hs = [_hidden(model, s, owner).retain_grad() for s in states]
    if not all(h.requires_grad for h in hs):
        raise ValueError(f"{owner}: the hidden states do not depend on any parameter (is every weight frozen?)")
    return logits, states, hs


def _grad_or_zeros(t: Tensor) -> np.ndarray:
    return np.zeros_like(t.data) if t.grad is None else t.grad


# ---- public functions -------------------------------------------------------------------------------------
def hidden_grads(model: Any, inputs: Any, targets: Any, state: Any = None,
                 loss: Union[str, int] = "sum") -> np.ndarray:
    """∂L/∂h_t for every step: (T, H) or (T, B, H). loss="sum": L = Σ_t L_t; "last": L_{T-1}; int k: L_k."""
    inputs, targets = _check_sequences("hidden_grads", model, inputs, targets)
    T = len(inputs)
    if isinstance(loss, str):
        if loss not in ("sum", "last"):
            raise ValueError(f"hidden_grads: loss must be 'sum', 'last' or a step index, got {loss!r}")
        steps = slice(None) if loss == "sum" else slice(T - 1, T)
    elif isinstance(loss, (int, np.integer)) and not isinstance(loss, bool) and -T <= loss < T:
        k = int(loss) % T
        steps = slice(k, k + 1)
    else:
        raise ValueError(f"hidden_grads: loss must be 'sum', 'last' or a step index in [0, {T}), got {loss!r}")
    with _untouched(model, "hidden_grads"):
        logits, _, hs = _unroll(model, inputs, state, "hidden_grads")
        cross_entropy(logits[steps], targets[steps]).backward()
        return np.stack([_grad_or_zeros(h) for h in hs])


def influence(model: Any, inputs: Any, targets: Any, state: Any = None) -> np.ndarray:
    """M (T, T) with M[t, k] = ‖∂L_t/∂h_k‖ (2-norm over all entries, batch included) for k <= t, else 0."""
    inputs, targets = _check_sequences("influence", model, inputs, targets)
    T = len(inputs)
    M = np.zeros((T, T))
    with _untouched(model, "influence"):
        logits, _, hs = _unroll(model, inputs, state, "influence")
        for t in range(T):  # one backward per loss term, through the same graph
            for h in hs:
                h.grad = None
            cross_entropy(logits[t], targets[t]).backward(retain_graph=True)
            M[t, :t + 1] = [np.linalg.norm(_grad_or_zeros(h)) for h in hs[:t + 1]]
    return M


def per_step_grads(model: Any, inputs: Any, targets: Any, state: Any = None) -> dict[str, np.ndarray]:
    """name -> (T, *shape): entry t is ∂L/∂θ_t, the gradient of step t's copy of each parameter;
    the sum over t is the full gradient (the lecture notes: ∇θ is the sum over the copies θ_t)."""
    inputs, targets = _check_sequences("per_step_grads", model, inputs, targets)
    T = len(inputs)
    names = {id(p): name for name, p in model.named_parameters().items()}
    with _untouched(model, "per_step_grads") as params, _op_level(model):
        logits, _ = model.unroll(inputs, state)
        root = cross_entropy(logits, targets)
        copies = {id(p): [_copy(p) for _ in range(T)] for p in params}
        for ctx in walk(root):
            if isinstance(ctx, Function) and any(id(p) in copies for p in ctx.inputs):  # a parameter is a leaf: linked as itself
                t = _step_of(ctx, names, T)
                ctx.inputs = tuple(copies[id(p)][t] if id(p) in copies else p for p in ctx.inputs)
        root.backward()
        return {names[id(p)]: np.stack([_grad_or_zeros(c) for c in copies[id(p)]]) for p in params}


def state_jacobians(model: Any, inputs: Any, state: Any = None) -> np.ndarray:
    """(T, N, N): entry t is ∂z_{T-1}/∂z_t, z_t the recurrent state after step t (h, or [h; s] for an
    LSTM: N = H or 2H), for one sequence (inputs (T,) or (T, 1)); entry T-1 is the identity."""
    inputs, _ = _check_sequences("state_jacobians", model, inputs)
    if inputs.ndim == 2 and inputs.shape[1] != 1:
        raise ValueError(f"state_jacobians: needs one sequence (B = 1), got inputs of shape {inputs.shape}")
    T = len(inputs)
    with _untouched(model, "state_jacobians", grads=False):
        _, (z,) = model.unroll(inputs[:1], state)
        steps = []  # (leaves z_{t-1} as independent variables, z_t flattened) for t = 1 … T-1
        for t in range(1, T):
            leaves = _leaf_copy(z)
            _, (z,) = model.unroll(inputs[t:t + 1], leaves)
            steps.append((_parts(leaves), _flat(z)))
        N = sum(part.size for part in _parts(z))
        J = np.zeros((T, N, N))
        J[T - 1] = np.eye(N)
        for t in range(T - 2, -1, -1):  # row i of J[t] = row i of J[t+1] carried back through step t+1
            leaves, z_next = steps[t]
            for i in range(N):
                for leaf in leaves:
                    leaf.grad = None
                z_next.backward(grad=J[t + 1, i].reshape(z_next.shape), retain_graph=True)
                J[t, i] = np.concatenate([_grad_or_zeros(leaf).ravel() for leaf in leaves])
    return J


def spectral_radius(W: Any) -> float:
    """The largest |eigenvalue| of a square matrix (Tensor or array)."""
    W = np.asarray(W.data if isinstance(W, Tensor) else W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.size == 0:
        raise ValueError(f"spectral_radius: needs a non-empty square matrix, got shape {W.shape}")
    return float(np.abs(np.linalg.eigvals(W)).max())


def rtrl_grads(model: Any, inputs: Any, targets: Any, state: Any = None) -> dict[str, np.ndarray]:
    """name -> dL/dθ by real-time recurrent learning (the lecture notes' forward mode): no backward pass.

    Every parameter entry is one tangent direction (P in all), so the tangent the engine carries on
    the state z_t is dz_t/dθ (P, *z.shape), and the one on L_t is dL_t/dθ, added up as the steps run.
    Nothing of step t is kept after it: memory O(P·|z|) whatever T is; time O(P) per op of a step.
    """
    inputs, targets = _check_sequences("rtrl_grads", model, inputs, targets)
    params = model.named_parameters()
    P = sum(p.size for p in params.values())
    dtype = np.result_type(*[p.dtype for p in params.values()])
    # before anything is allocated: a model of any size asks for P x P numbers (the default CLI LSTM: ~100 GB)
    _memory.check(f"rtrl_grads: forward mode with one direction per parameter entry (P = {P:,})",
                  P * P * dtype.itemsize, " for the P x P seed tangents alone")
    seeds, start = [], 0
    for p in params.values():  # direction start + i moves entry i of p alone: dθ/dθ = identity
        seed = np.zeros((P, p.size), dtype)
        seed[start + np.arange(p.size), np.arange(p.size)] = 1
        seeds.append((p, seed.reshape((P,) + p.shape)))
        start += p.size
    dL = np.zeros(P, dtype)
    with no_grad(), _forward_mode(seeds):  # no graph: step t's tensors are freed once step t+1 has run
        for t in range(len(inputs)):
            logits, states = model.unroll(inputs[t:t + 1], state)
            state = states[-1]  # carries its tangent dz_t/dθ into the next step
            dL_t = _tangent_of(cross_entropy(logits, targets[t:t + 1]))
            if dL_t is not None:
                dL += dL_t
    grads, start = {}, 0
    for name, p in params.items():
        grads[name] = dL[start:start + p.size].reshape(p.shape).astype(p.dtype, copy=True)
        start += p.size
    return grads


# ---- helpers for the graph walks --------------------------------------------------------------------------
def _copy(p: Tensor) -> Tensor:
    """A leaf sharing p's array: the copy θ_t one step's ops read."""
    c = p.detach()
    c.requires_grad = True
    return c


def _step_of(ctx: Function, names: dict, T: int) -> int:
    """The time step an op was created in, from the scope "t=k" CharRNN.unroll opened."""
    match = _STEP.search(ctx.scope or "")
    if match is None or int(match.group(1)) >= T:
        used = ", ".join(names[id(p)] for p in ctx.inputs if id(p) in names)
        raise ValueError(f"per_step_grads: {ctx.name} uses {used} outside a time step scope 't=k', "
                         "so its gradient belongs to no copy θ_t")
    return int(match.group(1))


def _parts(state: Any) -> list:
    """The tensors of a state (h, or (h, s), nested tuples allowed) in order."""
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for part in state for t in _parts(part)]
    raise TypeError(f"state_jacobians: a state must be a Tensor or a tuple of them, got {type(state).__name__}")


def _leaf_copy(state: Any) -> Any:
    """The same state (same structure, shared arrays) as leaves that require grad."""
    if isinstance(state, Tensor):
        return _copy(state)
    return type(state)(_leaf_copy(s) for s in state)


def _flat(state: Any) -> Tensor:
    """z = [h; s; …] as one vector, for B = 1."""
    parts = [p.reshape(-1) for p in _parts(state)]
    return parts[0] if len(parts) == 1 else concat(parts, axis=0)
