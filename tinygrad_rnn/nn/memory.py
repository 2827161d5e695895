"""Memory budgets for BPTT: Gruslys et al. 2016, "Memory-Efficient Backpropagation Through Time" (NeurIPS),
BPTT-HSM (hidden state memorization): with m stored states, the schedule that re-runs the fewest cell
forward steps, by their dynamic program; and _Schedule, the one graph node that runs it (CharRNN).

The paper's recurrence (Sec. 3, BPTT-HSM; docs/EQUATIONS.md), C(t, m) = forward steps to backpropagate t steps
holding at most m states (the segment's first included):
    C(t, m) = min_{1 <= y < t} [ y + C(t - y, m - 1) + C(y, m) ],   C(0, m) = 0,  C(1, m) = 1,  C(t, 1) = t(t + 1)/2
run y steps and store the state there, backpropagate the right part with one slot less, then the left part.
"""
from __future__ import annotations

from functools import lru_cache
from math import comb
from typing import Any, Iterator

import numpy as np

from ..engine import Function, _backward_from, no_grad
from ..tensor import Tensor

__all__ = ["MemoryBudget"]


class MemoryBudget:
    """At most `slots` stored states (CharRNN(checkpoint=MemoryBudget(slots=m))), Gruslys et al.'s schedule."""

    def __init__(self, slots: int) -> None:
        if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or slots < 1:
            raise ValueError(f"MemoryBudget: slots must be an int >= 1, got {slots!r}")
        self.slots = int(slots)

    def __repr__(self) -> str:
        return f"MemoryBudget(slots={self.slots})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, MemoryBudget) and other.slots == self.slots

    def plan(self, T: int) -> tuple[int, list]:
        """(forward_steps, schedule) for T steps: C(T, m), and the actions in order, each
        ("advance", a, b): run steps a … b-1 from the stored state a without a graph and store state b, or
        ("step", a): run step a with a graph from state a and backpropagate it (then state a is dropped)."""
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
            raise ValueError(f"MemoryBudget.plan: T must be an int >= 1, got {T!r}")
        return cost(int(T), self.slots), list(actions(int(T), self.slots))


def increment(t: int, m: int) -> int:
    """C(t, m) - C(t - 1, m) for t >= 2: k for the binom(m + k - 2, m - 1) values of t that come k-th
    (C is piecewise linear in t, its slopes 2, 3, 4, … each held that many steps; checked against the DP)."""
    left, k = t - 1, 2
    while True:
        n = comb(m + k - 2, m - 1)
        if left <= n:
            return k
        left, k = left - n, k + 1


@lru_cache(maxsize=None)
def cost(t: int, m: int) -> int:
    """C(t, m) in closed form: 1 + the increments up to t (equal to the recurrence, see cost_table)."""
    if t <= 0:
        return 0
    total, left, k = 1, t - 1, 2
    while left > 0:
        n = min(comb(m + k - 2, m - 1), left)
        total, left, k = total + n * k, left - n, k + 1
    return total


def cost_table(T: int, m: int) -> np.ndarray:
    """C(t, j) for t = 0 … T, j = 1 … m by the recurrence itself (O(T^2 m), for checks): array (T + 1, m + 1)."""
    C = np.zeros((T + 1, m + 1), dtype=np.int64)
    t = np.arange(T + 1)
    C[:, 1] = t * (t + 1) // 2
    for j in range(2, m + 1):
        C[1, j] = 1
        for n in range(2, T + 1):
            y = np.arange(1, n)
            C[n, j] = (y + C[n - y, j - 1] + C[y, j]).min()
    return C


def split(t: int, m: int) -> int:
    """The y of the recurrence for (t, m), t >= 2: the smallest minimiser. The sum y + C(t-y, m-1) + C(y, m) is
    convex in y (C is convex in t), so y is where its slope 1 - increment(t-y, m-1) + increment(y+1, m) turns >= 0."""
    if m == 1:
        return t - 1  # one slot: only the start is kept, each step is reached again from it
    lo, hi = 1, t - 1
    while lo < hi:
        y = (lo + hi) // 2
        if 1 - increment(t - y, m - 1) + increment(y + 1, m) >= 0:
            hi = y
        else:
            lo = y + 1
    return lo


def actions(T: int, m: int) -> Iterator[tuple]:
    """The schedule for T steps with m slots, as plan describes; its forward steps add up to C(T, m).
    The recurrence unrolled with a stack of (first step, length, slots) parts: the right part of each
    split runs before its left part, as in C(t, m) = y + C(t - y, m - 1) + C(y, m)."""
    parts = [(0, T, m)]
    while parts:
        a, t, m = parts.pop()
        if t == 1:
            yield ("step", a)
            continue
        y = split(t, m)
        yield ("advance", a, a + y)
        parts.append((a, y, m))              # the left part, after
        parts.append((a + y, t - y, m - 1))  # the right part, first


class _Schedule(Function):
    """The steps a … of a sequence as ONE node that keeps only the states a MemoryBudget's schedule stores.

    forward: the schedule's first advances (the forward pass, no graph), storing states; the last step with a
    graph, kept. backward: that step, then the rest of the schedule, each step run again from its stored state with
    a graph and backpropagated with dL/d(its state and outputs); parameters receive their shares directly, as in
    checkpoint. Output: the outputs of every step (logits (T, …, V) or the summed loss) and the last state, flat.
    """

    @staticmethod
    def forward(ctx, *arrays, run, T, m, n_state, loss):
        # run(a, b, state arrays or tensors) -> [*state tensors, out]: steps a … b-1
        ctx.run, ctx.n_state, ctx.loss = run, n_state, loss
        ctx.actions = actions(T, m)
        ctx.stack = [(0, arrays[:n_state])]
        outs = []
        for action in ctx.actions:
            if action[0] == "advance":
                state = _advance(run, action[1], action[2], ctx.stack[-1][1], outs)
                ctx.stack.append((action[2], state))
            else:  # the last step: its graph stays until backward
                leaves = _leaves(ctx.stack[-1][1])
                ctx.tail = (leaves, run(action[1], action[1] + 1, leaves))
                outs.append(ctx.tail[1][-1].data)
                last = [s.data for s in ctx.tail[1][:-1]]
                break
        out = np.sum(outs) if loss else np.concatenate(outs)
        ctx.layout = [out.shape] + [s.shape for s in last]
        return np.concatenate([np.ravel(out)] + [s.ravel() for s in last])

    @staticmethod
    def backward(ctx, grad):
        sizes = np.cumsum([0] + [int(np.prod(s)) for s in ctx.layout])
        g_out, *g_state = [grad[a:b].reshape(shape) for a, b, shape in zip(sizes, sizes[1:], ctx.layout)]
        run, stack = ctx.run, ctx.stack
        if ctx.tail is None:
            raise RuntimeError("backward: a MemoryBudget schedule runs once; its stored states were used up by the "
                               "first backward (retain_graph does not keep them): run the forward pass again")
        leaves, outs = ctx.tail
        ctx.tail = None
        g_state = _step_back(leaves, outs, g_state, g_out, -1, ctx.loss)
        stack.pop()
        for action in ctx.actions:
            if action[0] == "advance":
                stack.append((action[2], _advance(run, action[1], action[2], stack[-1][1], None)))
            else:
                a = action[1]
                leaves = _leaves(stack.pop()[1])
                g_state = _step_back(leaves, run(a, a + 1, leaves), g_state, g_out, a, ctx.loss)
        return tuple(g_state) + (None,) * (len(ctx.needs_input_grad) - ctx.n_state)


def _advance(run: Any, a: int, b: int, state: tuple, outs: Any) -> tuple:
    """The state after steps a … b-1 from `state`, without a graph, _CHUNK steps at a time (so what a run makes
    for all its steps, its logits say, stays small); their outputs appended to outs unless it is None."""
    with no_grad():
        for start in range(a, b, _CHUNK):
            *state, out = run(start, min(start + _CHUNK, b), state, outs is not None)
            state = tuple(s.data for s in state)
            if outs is not None:
                outs.append(out.data)
    return state


_CHUNK = 64  # steps an advance runs at once


def _leaves(arrays: tuple) -> list:
    """A stored state as fresh leaves that collect its gradient."""
    return [Tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating)) for a in arrays]


def _step_back(leaves: list, outs: list, g_state: list, g_out: np.ndarray, t: int, loss: bool) -> list:
    """Backpropagate one step's graph (new state tensors and its output) from dL/d(new state) and its share of
    dL/d(outputs); return dL/d(the state it started from), zeros where the state does not reach."""
    _backward_from(outs, list(g_state) + [g_out if loss else g_out[t:t + 1 if t != -1 else None]])
    return [np.zeros_like(x.data) if x._grad is None else x._grad for x in leaves]
