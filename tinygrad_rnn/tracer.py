"""tr.trace: the engine writes the code. It runs a function once, records every op (the forward ones, then
the ones the engine's own backward records under create_graph=True: ordinary ops too), and writes them out
as ONE plain NumPy function, each op by the one-line `lowering` template in its class (function.py).

As Tangent (Google, 2017) wrote readable derivative source and jax.make_jaxpr prints the derivative program:
here the names are the model's (parameters, scopes, tensor names) and the steps recorded under
tr.scope("t=k") that repeat the same ops are rolled into `for t in range(T):` loops, as min-char-rnn's lossFun.
"""
from __future__ import annotations

import ast
import functools
import inspect
import keyword
import re
import string
from typing import Any, Optional

import numpy as np

from .engine import _state
from .tensor import Tensor

__all__ = ["trace", "Program"]


class Program:
    """A traced function as NumPy code: `source` (one function importing only numpy) and
    `loss, grads = prog(*args)` (grads: parameter name -> ndarray), reading the parameters' current values;
    when fn returned (loss, more tensors...), prog returns (loss, grads, (their values...))."""

    def __init__(self, source: str, name: str, params: dict, arg_specs: list) -> None:
        self.source, self.params = source, params
        self._arg_specs = arg_specs  # (name, shape, dtype) per argument, as traced
        self._param_shapes = {name: p.data.shape for name, p in params.items()}
        namespace: dict = {"np": np}
        exec(compile(source, f"<tr.trace {name}>", "exec"), namespace)  # compiled once
        self._fn = namespace[name]

    def __call__(self, *args: Any) -> tuple:
        specs = self._arg_specs
        if len(args) != len(specs):
            raise TypeError(f"trace: the program takes {len(specs)} arguments "
                            f"({', '.join(s[0] for s in specs)}), got {len(args)}")
        arrays = []
        for (name, shape, dtype), x in zip(specs, args):
            x = np.asarray(x.data if isinstance(x, Tensor) else x)
            if x.shape != shape:
                raise ValueError(f"trace: argument {name} has shape {x.shape}, the program was traced "
                                 f"for shape {shape}; trace again for other shapes")
            if x.dtype != dtype and not (x.dtype.kind in "iu" and dtype.kind in "iu"):
                raise TypeError(f"trace: argument {name} has dtype {x.dtype}, the program was traced for {dtype}")
            arrays.append(x)
        values = {}
        for name, p in self.params.items():
            if p.data.shape != self._param_shapes[name]:
                raise ValueError(f"trace: parameter {name} has shape {p.data.shape}, the program was traced for "
                                 f"{self._param_shapes[name]}; trace again")
            values[name] = p.data
        loss, grads, *extras = self._fn(values, *arrays)
        return (loss, {k: np.asarray(g) for k, g in grads.items()}, *extras)

    def __repr__(self) -> str:
        return f"<tr.trace Program: {self.source.count(chr(10))} lines>"


# ---- recording -------------------------------------------------------------------------------------------
class _Rec:
    """One applied op: its class, node (ctx), input tensors, keywords, output, scope, and in the backward the
    forward node whose rule recorded it."""
    __slots__ = ("i", "cls", "ctx", "inputs", "kw", "out", "scope", "node", "rule", "step")

    def __init__(self, i, cls, ctx, inputs, kw, out, scope, node, rule):
        self.i, self.cls, self.ctx, self.inputs, self.kw, self.out = i, cls, ctx, inputs, kw, out
        self.scope, self.node, self.rule, self.step = scope, node, rule, None


class _Tape:
    def __init__(self) -> None:
        self.recs: list = []
        self.node = None          # the forward node whose backward ran last
        self.rule = False         # inside that backward (else: the engine summing a value's gradients)
        self.grad_of: dict = {}   # id(forward node) -> the gradient tensor its backward received

    def __call__(self, cls, ctx, inputs, kwargs, out) -> None:
        self.recs.append(_Rec(len(self.recs), cls, ctx, inputs, kwargs, out, _state.scope, self.node, self.rule))


def _key(t: Tensor) -> int:
    """A value's identity: its node for an op's output (any tensor standing for it), else the tensor."""
    return id(t._ctx) if t._ctx is not None else id(t)


def _watch_backward(tape: _Tape, classes) -> list:
    """Wrap each class's backward so the tape knows which node's rule records the ops (undone by the caller)."""
    undo = []
    for cls in classes:
        owner = next(c for c in cls.__mro__ if "backward" in c.__dict__)
        if any(o is owner for o, _ in undo):
            continue
        rule = owner.__dict__["backward"]

        def backward(ctx, g, _rule=rule.__func__):
            tape.node, tape.rule = ctx, True
            if isinstance(g, Tensor):
                tape.grad_of[id(ctx)] = g
            try:
                return _rule(ctx, g)
            finally:
                tape.rule = False
        undo.append((owner, rule))
        owner.backward = staticmethod(backward)
    return undo


def _engine_backward(loss: Tensor, leaves: list) -> list:
    """The gradients of loss by the engine's backward with create_graph=True: tensors whose ops are recorded."""
    import tinygrad_rnn
    grad = getattr(tinygrad_rnn, "grad", None)
    if grad is None or "create_graph" not in inspect.signature(grad).parameters:
        raise NotImplementedError("trace: the engine has no create_graph backward (tr.grad(..., create_graph=True)) "
                                  "to record the gradient ops from")
    return list(grad(loss, leaves, create_graph=True, allow_unused=True))


def trace(fn: Any, *example_args: Any, params: Optional[dict] = None, name: str = "step") -> Program:
    """Run fn(*example_args) once (a scalar Tensor out) and return a Program: fn's forward and the engine's
    backward for every parameter (params: name -> Tensor; default every leaf that requires a gradient)."""
    args, arg_names, int_args = [], _arg_names(fn, len(example_args)), {}
    for a, an in zip(example_args, arg_names):
        if isinstance(a, Tensor):
            args.append(a)
        else:
            x = np.asarray(a)
            if x.dtype.kind in "iub":
                int_args[an] = x
                args.append(x)
            elif x.dtype.kind == "f":
                args.append(Tensor(x))
            else:
                raise TypeError(f"trace: argument {an} has dtype {x.dtype}; give arrays of numbers or Tensors")
    tape = _Tape()
    if _state.tape is not None:
        raise RuntimeError("trace: already tracing (trace inside trace)")
    _state.tape = tape
    try:
        loss = fn(*args)
        extras: list = []
        if isinstance(loss, tuple) and loss:  # (loss, more tensors): the program returns those too (a last state)
            loss, extras = loss[0], _flat(loss[1:])
        if not isinstance(loss, Tensor) or loss.size != 1:
            raise TypeError(f"trace: fn must return a one-entry Tensor (a loss), got "
                            f"{type(loss).__name__ if not isinstance(loss, Tensor) else loss.shape}")
        n_forward = len(tape.recs)
        if params is None:
            params = _leaves_needing_grad(tape.recs, args)
        params = dict(params)
        for pn, p in params.items():
            if not isinstance(p, Tensor) or not p.requires_grad or p._ctx is not None:
                raise TypeError(f"trace: params[{pn!r}] must be a leaf Tensor with requires_grad=True")
        grads = [None] * len(params)
        if params and loss.requires_grad:
            undo = _watch_backward(tape, {r.cls for r in tape.recs})
            try:
                grads = _engine_backward(loss, list(params.values()))
            finally:
                for owner, rule in undo:
                    owner.backward = rule
    finally:
        _state.tape = None
    builder = _Builder(tape, n_forward, loss, params, grads, args, arg_names, int_args, name, extras)
    value = loss.data
    expected = {pn: (None if g is None else np.asarray(g.data)) for pn, g in zip(params, grads)}
    specs = [(an, np.shape(a.data if isinstance(a, Tensor) else a),
              np.asarray(a.data if isinstance(a, Tensor) else a).dtype) for a, an in zip(args, arg_names)]
    checks = [(args, value, expected)]
    if int_args:  # the characters may change: check the program on others too (a step number is not a character)
        checks.append(_other_characters(fn, args, arg_names, int_args, params))
    failure = None
    orders = [list(int_args), list(int_args)[::-1]] if len(int_args) > 1 else [list(int_args)]
    tries = [(rolled, rows_first, order) for rolled in (True, False) for order in orders for rows_first in (True, False)]
    for rolled, rows_first, order in tries:
        builder.int_args = {an: int_args[an] for an in order}  # which argument a value equal to two is read from
        try:  # the rolled program, checked against the engine; if it differs, the straight one
            prog = Program(builder.source(rolled, rows_first), name, params, specs)
            for check_args, check_value, check_grads in checks:
                got, got_grads = prog(*check_args)[:2]
                failure = _compare(check_value, check_grads, got, got_grads)
                if failure is not None:
                    break
        except Exception as e:  # noqa: BLE001 -- a rolling that went wrong: the straight program instead
            failure = f"{type(e).__name__}: {e}"
            continue
        if failure is None:
            return prog
    raise RuntimeError(f"trace: the generated program does not reproduce the engine ({failure})")


def _other_characters(fn, args: list, arg_names: list, int_args: dict, params: dict) -> tuple:
    """The same call with every entry of each integer argument changed (a -> a + 1, wrapping within the values
    it holds, so they stay valid), and the engine's loss and gradients there (first order: tr.grad)."""
    import tinygrad_rnn
    other = [(a + 1 + n) % (a.max() + 1) if an in int_args and a.size and a.min() >= 0 else a
             for n, (a, an) in enumerate(zip(args, arg_names))]
    loss = fn(*other)
    loss = loss[0] if isinstance(loss, tuple) else loss
    grads = tinygrad_rnn.grad(loss, list(params.values()), allow_unused=True) if params and loss.requires_grad \
        else [None] * len(params)
    return other, loss.data, {pn: (None if g is None else np.asarray(g.data)) for pn, g in zip(params, grads)}


def _flat(values) -> list:
    """The tensors of a nested tuple, in order."""
    out = []
    for v in values:
        if isinstance(v, (tuple, list)):
            out += _flat(v)
        elif isinstance(v, Tensor):
            out.append(v)
        else:
            raise TypeError(f"trace: fn may return (loss, tensors...), got a {type(v).__name__} among them")
    return out


def _compare(value, expected, got, got_grads) -> Optional[str]:
    """None if the program's loss and gradients are the engine's up to rounding (sums in another order)."""
    rtol, atol = (1e-9, 1e-12) if np.asarray(value).dtype == np.float64 else (1e-4, 1e-4)  # float32: 7 digits
    if not np.allclose(got, value, rtol=rtol, atol=atol, equal_nan=True):
        return f"loss {float(np.asarray(got))} instead of {float(value)}"
    for pn, g in expected.items():
        scale = atol * max(1.0, float(np.abs(g).max(initial=0)))
        if g is not None and not np.allclose(got_grads[pn], g, rtol=rtol, atol=scale, equal_nan=True):
            return f"gradient of {pn} differs"
    return None


def _arg_names(fn: Any, n: int) -> list:
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    names = [_ident(x) + ("_" if x in _RESERVED else "") for x in names[:n]]  # the loop's t is not an argument
    names += [f"x{i}" for i in range(len(names), n)]
    return names if len(set(names)) == n else [f"x{i}" for i in range(n)]


_RESERVED = {"t", "T", "np", "params", "len", "range", "reversed"}


def _leaves_needing_grad(recs: list, args: list) -> dict:
    found, taken, arg_ids = {}, set(), {id(a) for a in args}
    for r in recs:
        for t in r.inputs:
            if t._ctx is None and t.requires_grad and id(t) not in arg_ids and id(t) not in taken:
                taken.add(id(t))
                base = _ident(t.name) if t.name else f"p{len(found)}"
                nm, n = base, 2
                while nm in found:
                    nm, n = f"{base}_{n}", n + 1
                found[nm] = t
    return found


def _ident(s: str) -> str:
    s = str(s).replace("\u0303", "_tilde")  # the book's s̃ (the LSTM's cell input) -> s_tilde
    s = re.sub(r"\W", "_", s).strip("_") or "v"
    return s if not s[0].isdigit() else "v" + s


_STEP = re.compile(r"(?:^|/)t=(\d+)(?:/|$)")


def _step_of(scope: str) -> Optional[int]:
    m = _STEP.search(scope or "")
    return int(m.group(1)) if m else None


_VIEWS = ("GetItem", "Reshape", "Transpose", "BroadcastTo", "ColumnGather")  # outputs that may share memory

_DEFAULT_NAMES = {"Affine": "a", "MatMul": "mm", "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div",
                  "GetItem": "part", "ColumnGather": "xw", "CrossEntropy": "loss", "Stack": "stacked",
                  "Concat": "joined", "Transpose": "tr", "Reshape": "resh"}


# ---- lowering: a template's fields as parts (text, input references, slots for values that may follow t) --
class _In:
    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i


class _Slot:
    """A value in a line that may be written several ways: literally, as `t`, or as an argument's row."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


_OUT, _TMP, _LIST, _REST = object(), object(), object(), object()


def _value_parts(v: Any, index: bool = False) -> list:
    if isinstance(v, (bool, np.bool_)) or v is None or isinstance(v, str):
        return [repr(v if not isinstance(v, np.bool_) else bool(v))]
    if isinstance(v, (int, np.integer)):  # an index may follow t or an argument's row; a size or an axis may not
        return [_Slot(int(v))] if index else [str(int(v))]
    if isinstance(v, (float, np.floating)):
        return [repr(float(v))]
    if isinstance(v, np.ndarray):
        return [_Slot(v)]
    if v is Ellipsis:
        return ["..."]
    if isinstance(v, slice):
        if index:
            return [("" if v.start is None else str(v.start)) + ":" + ("" if v.stop is None else str(v.stop))
                    + ("" if v.step is None else ":" + str(v.step))]
        return [f"slice({v.start!r}, {v.stop!r}, {v.step!r})"]
    if isinstance(v, np.dtype):
        return [f"np.{v.name}"]
    if isinstance(v, (tuple, list)):
        parts: list = ["" if index else ("(" if isinstance(v, tuple) else "[")]
        for n, x in enumerate(v):
            if n:
                parts.append(", ")
            parts += _value_parts(x, index)
        if not index:
            parts.append("," if isinstance(v, tuple) and len(v) == 1 else "")
            parts.append(")" if isinstance(v, tuple) else "]")
        if index and isinstance(v, tuple) and len(v) == 0:
            parts = ["()"]
        return parts
    raise TypeError(f"trace: cannot write a value of type {type(v).__name__} into the program")


@functools.lru_cache(maxsize=None)
def _defaults(cls: type) -> dict:
    try:
        return {k: p.default for k, p in inspect.signature(cls.forward).parameters.items()
                if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):
        return {}


def _template_parts(rec: _Rec) -> list:
    """The op's lowering template as a list of lines, each a list of parts."""
    template = getattr(rec.cls, "lowering", None)
    if template is None:
        hint = "; use the op-level model (fused=False)" if rec.cls.__name__.endswith("Step") or \
            rec.cls.__name__ == "StackRows" else "; give its class a `lowering` template"
        raise TypeError(f"trace: {rec.cls.__name__} has no NumPy lowering{hint}")
    kw = {**_defaults(rec.cls), **rec.kw}
    lines = []
    for row in template.split("\n"):
        parts: list = []
        for literal, field, _spec, conv in string.Formatter().parse(row):
            if literal:
                parts.append(literal)
            if field is None:
                continue
            if field == "y":
                parts.append(_OUT)
            elif field == "tmp":
                parts.append(_TMP)
            elif field in ("a", "b", "c"):
                parts.append(_In("abc".index(field)))
            elif field == "list":
                parts.append(_LIST)
            elif field == "rest":
                parts.append(_REST)
            elif field == "dtype":
                parts.append(f"np.{rec.out.dtype.name}")
            elif field == "dot":  # a @ b; an outer product (inner size 1) by np.dot, which is 4x faster there
                a, b = rec.inputs[0], rec.inputs[1]
                outer = a.ndim == 2 and b.ndim == 2 and a.shape[1] == 1
                parts += ["np.dot(", _In(0), ", ", _In(1), ")"] if outer else [_In(0), " @ ", _In(1)]
            else:
                if field.startswith("ctx."):
                    v = getattr(rec.ctx, field[4:])
                elif field.startswith("kw[") and field.endswith("]"):
                    v = kw.get(field[3:-1])
                else:
                    raise ValueError(f"trace: {rec.cls.__name__}.lowering has an unknown field {{{field}}}")
                if conv == "i":
                    parts += _value_parts(v, index=True)
                elif conv == "T":
                    parts += [".T"] if v is None or tuple(v) == tuple(range(len(v)))[::-1] else \
                        [".transpose("] + _value_parts(tuple(v)) + [")"]
                elif conv == "k":
                    parts += [] if v is None else ["["] + _value_parts(np.asarray(v).reshape(-1)) + ["]"]
                else:
                    parts += _value_parts(v)
        lines.append(parts)
    return lines


# ---- the program ------------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, tape, n_forward, loss, params, grads, args, arg_names, int_args, fname, extras=()):
        self.tape, self.fname, self.int_args = tape, fname, int_args
        self.extra_keys = [_key(t) for t in extras]
        self.recs = tape.recs
        self.n_forward = n_forward
        self.loss_key = _key(loss)
        self.params = params
        self.grad_keys = {pn: (None if g is None else _key(g)) for pn, g in zip(params, grads)}
        self.grad_tensors = dict(zip(params, grads))
        self.args, self.arg_names = args, arg_names
        self.producer = {}
        for r in self.recs:
            self.producer[_key(r.out)] = r
        self.leaf_names = {}
        pnames = _param_names(list(params))
        for pn, p in params.items():
            self.leaf_names[id(p)] = pnames[pn]
        self.pnames = pnames
        for a, an in zip(args, arg_names):
            if isinstance(a, Tensor):
                self.leaf_names[_key(a)] = an
        self.const_tensors = {}
        for r in self.recs:  # a number from numbers alone is a number (1.0 * 1.0): written as its value
            if all(_key(t) not in self.producer and _key(t) not in self.leaf_names and t._ctx is None
                   for t in r.inputs) and r.out._ctx is None and r.out.ndim == 0 and _key(r.out) != self.loss_key:
                del self.producer[_key(r.out)]
        # the recs the outputs need
        roots = [self.loss_key] + [k for k in self.grad_keys.values() if k is not None] + self.extra_keys
        need, stack = set(), list(roots)
        while stack:
            k = stack.pop()
            r = self.producer.get(k)
            if r is None or r.i in need:
                continue
            need.add(r.i)
            stack += [_key(t) for t in r.inputs]
        self.needed = [r for r in self.recs if r.i in need]
        self.roots = set(roots)
        self.consumers: dict = {}
        for r in self.needed:
            for t in r.inputs:
                self.consumers.setdefault(_key(t), []).append(r)
        self.parts = {r.i: _template_parts(r) for r in self.needed}
        # a value's readable base name
        self.grad_names = {}
        for pn, k in self.grad_keys.items():
            if k is not None and k not in self.leaf_names:
                self.grad_names.setdefault(k, "d" + pnames[pn])
        self.node_args = {}  # id(forward node) -> the integer arguments its op took as keywords (targets)
        for r in self.recs[:n_forward]:
            k = _step_of(r.scope)
            names = [an for an, arr in int_args.items() for v in r.kw.values() if v is arr or _is_row(v, arr, k)]
            if names:
                self.node_args[r.i] = names
                if r.out._ctx is not None:
                    self.node_args[id(r.out._ctx)] = names
        self.d_of = {}  # key of a gradient tensor -> the base name of the value it is the gradient of
        for r in reversed(self.recs[:n_forward]):  # a gradient passed on unchanged is named for the later op
            g = tape.grad_of.get(id(r.out._ctx)) if r.out._ctx is not None else None
            if g is not None:
                self.d_of.setdefault(_key(g), self.base(r, forward_only=True))

    # names
    def base(self, r: _Rec, forward_only: bool = False) -> str:
        k = _key(r.out)
        if not forward_only:
            if k in self.grad_names:
                return self.grad_names[k]
            if k == self.loss_key and r.i < self.n_forward:
                return "loss"
            if k in self.d_of:
                return "d" + self.d_of[k]
            end = self.sum_end(k)  # a share of a sum of gradients: named for the sum
            if end is not None:
                return end
        name = r.out.name
        if name:
            return _ident(re.sub(r"\(\d+\)$", "", name))
        b = _DEFAULT_NAMES.get(r.cls.__name__, r.cls.__name__.lower())
        return b if r.i < self.n_forward or forward_only else "d_" + b

    def source(self, rolled: bool, rows_first: bool = True) -> str:
        return _Writer(self, rolled, rows_first).write()

    def sum_end(self, key: int) -> Optional[str]:
        """The name of the gradient a running sum of the engine ends in (dW_hh, dh), following its Adds."""
        seen = 0
        while seen < 100000:
            if key in self.grad_names:
                return self.grad_names[key]
            if key in self.d_of and seen:
                return "d" + self.d_of[key]
            cons = self.consumers.get(key, [])
            if len(cons) != 1 or cons[0].cls.__name__ != "Add" or cons[0].rule or cons[0].i < self.n_forward:
                return None
            key, seen = _key(cons[0].out), seen + 1
        return None

    def owned(self, key: int) -> bool:
        """The value is an array of its own that nothing else reads through (not a view, a leaf, a constant)."""
        r = self.producer.get(key)
        return r is not None and r.cls.__name__ not in _VIEWS

    def inplace(self, r: _Rec) -> Optional[int]:
        """The accumulated sum an engine Add may add into in place (the key), or None."""
        if r.cls.__name__ != "Add" or r.rule or r.i < self.n_forward:
            return None
        acc = _key(r.inputs[0])
        if self.owned(acc) and self.consumers.get(acc) == [r] and r.inputs[0].shape == r.out.shape \
                and r.inputs[0].dtype == r.out.dtype and acc not in self.roots:
            return acc
        return None


def _param_names(names: list) -> dict:
    """'cell.W_hh' -> 'W_hh' where the last part is unique and longer than a letter, else 'out_W'."""
    last = [n.split(".")[-1] for n in names]
    out = {}
    for n, l in zip(names, last):
        out[n] = _ident(l if last.count(l) == 1 and len(l) > 1 else n)
    return out


class _Writer:
    """Writes one program: naming, loop rolling, lines."""

    def __init__(self, b: _Builder, rolled: bool, rows_first: bool = True):
        self.b, self.rolled, self.rows_first = b, rolled, rows_first
        self.slot_value: dict = {}
        self._const_cache: dict = {}
        self.taken: set = set(["np", "t", "T", "params", "len", "range", "reversed", b.fname] + b.arg_names)
        self.names: dict = {}       # key -> source text naming the value (outside loops)
        self.lines: list = []
        self.loops: dict = {}       # phase -> loop info, for references from the other phase

    def fresh(self, base: str) -> str:
        if keyword.iskeyword(base):  # the LSTM's gate i kept per step: "is" -> "i_s"
            base = base[:-1] + "_s" if base.endswith("s") else base + "_"
        name, n = base, 2
        while name in self.taken:
            name, n = f"{base}_{n}", n + 1
        self.taken.add(name)
        return name

    # values as text
    def slot_choices(self, v: Any, k: Optional[int], in_loop: bool) -> list:
        """(policy, text) ways to write v at step k, most meaningful first."""
        out = [("whole:" + an, an) for an, arr in self.b.int_args.items() if v is arr]
        for an, arr in self.b.int_args.items():
            if isinstance(v, np.ndarray) and v.shape == arr.shape and np.array_equal(v, arr) and v is not arr:
                out.append(("whole:" + an, an))
            if k is not None and arr.ndim >= 1 and 0 <= k < len(arr) and np.shape(v) == arr[k].shape \
                    and np.array_equal(v, arr[k]):
                out.append(("row:" + an, f"{an}[t]" if in_loop else f"{an}[{k}]"))
        if isinstance(v, int) and k is not None and v == k and in_loop:
            out.append(("t", "t"))
        out.append(("lit", _literal(v)))
        return out

    def const_choices(self, t: Tensor, k: Optional[int], in_loop: bool) -> list:
        cache_key = (id(t), k, in_loop)
        out = self._const_cache.get(cache_key)
        if out is None:
            out = self._const_cache[cache_key] = self._const_choices(t, k, in_loop)
        prefer = getattr(self, "prefer", ())  # a rule's constant is read from its op's own argument (targets)
        return sorted(out, key=lambda c: 0 if c[0].split(":")[-1] in prefer else 1)

    def _const_choices(self, t: Tensor, k: Optional[int], in_loop: bool) -> list:
        x = t.data
        out = []
        if x.ndim >= 1 and x.dtype.kind == "f" and self.b.int_args:  # one-hot rows of an argument (targets)
            V = x.shape[-1]
            dt = "" if x.dtype == np.float64 else f", dtype=np.{x.dtype.name}"
            for an, arr in self.b.int_args.items():
                flat = x.shape[:-1] == (arr.size,) and arr.ndim > 1
                if (arr.shape == x.shape[:-1] or flat) and arr.size and 0 <= arr.min() and arr.max() < V and \
                        np.array_equal(x, np.eye(V, dtype=x.dtype)[arr.reshape(x.shape[:-1])]):
                    rows = f"{an}.reshape(-1)" if flat else an
                    out.append(("onehot:" + an, f"np.eye({V}{dt})[{rows}]"))
        if x.ndim >= 1 and x.dtype.kind == "f" and self.b.int_args and k is not None:
            V = x.shape[-1]
            for an, arr in self.b.int_args.items():
                if arr.ndim >= 1 and 0 <= k < len(arr) and arr[k].shape == x.shape[:-1] and \
                        0 <= arr[k].min() and arr[k].max() < V and np.array_equal(x, np.eye(V, dtype=x.dtype)[arr[k]]):
                    dt = "" if x.dtype == np.float64 else f", dtype=np.{x.dtype.name}"
                    out.append(("onehot:" + an, f"np.eye({V}{dt})[{an}[t]]" if in_loop
                                else f"np.eye({V}{dt})[{an}[{k}]]"))
        if x.ndim and x.size and not x.any():
            dt = "" if x.dtype == np.float64 else f", dtype=np.{x.dtype.name}"
            out.append(("lit", f"np.zeros({x.shape}{dt})"))
        elif out and x.size > 64:  # read from an argument: no need to spell out a large array
            pass
        elif x.ndim == 0:
            out.append(("lit", repr(x.item()) if x.dtype != np.float64 else repr(float(x))))
        else:
            out.append(("lit", _literal(x)))
        return out

    def write(self) -> str:
        b = self.b
        body = self.lines
        for pn, p in b.params.items():
            nm = b.pnames[pn]
            self.taken.add(nm)
            self.names[id(p)] = nm
            body.append(f"{nm} = params[{pn!r}]")
        for a, an in zip(b.args, b.arg_names):
            if isinstance(a, Tensor):
                self.names[_key(a)] = an
        self.tensor_of = {}
        for r in b.needed:
            for t in r.inputs:
                self.tensor_of.setdefault(_key(t), t)
        fwd = [r for r in b.needed if r.i < b.n_forward]
        bwd = [r for r in b.needed if r.i >= b.n_forward]
        steps = [_step_of(r.scope) for r in fwd]
        self.T = max([s for s in steps if s is not None], default=-1) + 1
        self.T_written = False
        body.append("# forward")
        self.phase(fwd, +1, "forward")
        if bwd:
            body.append("# backward: the engine's own rules, recorded as ops (create_graph=True)")
            self.phase(bwd, -1, "backward")
        grads = []
        for pn, k in b.grad_keys.items():
            if k is None:
                grads.append(f"{pn!r}: np.zeros_like({b.pnames[pn]})")
            else:
                grads.append(f"{pn!r}: {self.text(k, None)}")
        extras = "".join(f", {self.text(k, None)}" for k in b.extra_keys)
        body.append(f"return {self.text(b.loss_key, None)}, {{" + ", ".join(grads) + "}" +
                    (f", ({extras[2:]},)" if extras else ""))
        out, indent = [f"def {b.fname}({', '.join(['params'] + b.arg_names)}):",
                       '    """Traced by tinygrad_rnn.trace: the forward, then the backward the engine derived."""'], 1
        for line in _batch_outer_sums(_simplify(body)):
            if line == "<in>":
                indent += 1
            elif line == "<out>":
                indent -= 1
            else:
                out.append("    " * indent + line)
        return "import numpy as np\n\n\n" + "\n".join(out) + "\n"

    def text(self, key: int, k: Optional[int]) -> str:
        """A value's name outside loops."""
        if key in self.names:
            return self.names[key]
        t = self.tensor_of.get(key)
        if t is not None and t._ctx is None and key not in self.b.producer:
            return self.const_choices(t, k, False)[0][1]
        raise KeyError(f"trace: value used before it is written ({key})")

    def items(self, r: _Rec, k: Optional[int], ref) -> list:
        """The rec's lowering as a flat list of items: ("s", text), ("o",), ("tmp",), ("nl",),
        ("r", reference, key), ("slot", {policy: text}, key)."""
        # the integer arguments this op (or, in the backward, the op it differentiates) took: characters may be
        # read from those, any other number is written as it is (or as t)
        self.prefer = self.b.node_args.get(id(r.node) if r.i >= self.b.n_forward else r.i, ()) if \
            r.node is not None or r.i < self.b.n_forward else ()
        inputs = [ref(_key(t), t, k) for t in r.inputs]
        items: list = [("cls", r.cls.__name__)]
        for n, parts in enumerate(self.b.parts[r.i]):
            if n:
                items.append(("nl",))
            for m, p in enumerate(parts):
                if isinstance(p, _In) and m + 1 < len(parts) and isinstance(parts[m + 1], str) and \
                        parts[m + 1][:1] in ".[" and inputs[p.i][0] == "slot":  # a number with a method: an array
                    choices = {c: (f"np.asarray({x})" if re.fullmatch(r"-?[\d.e+-]+|nan|inf", x) else x)
                               for c, x in inputs[p.i][1].items()}
                    items.append(("slot", choices, inputs[p.i][2]))
                    continue
                if isinstance(p, str):
                    items.append(("s", p))
                elif p is _OUT:
                    items.append(("o",))
                elif p is _TMP:
                    items.append(("tmp",))
                elif isinstance(p, _In):
                    items.append(inputs[p.i])
                elif p is _LIST:
                    items.append(("s", "["))
                    for m, x in enumerate(inputs):
                        items += [("s", ", ")] if m else []
                        items.append(x)
                    items.append(("s", "]"))
                elif p is _REST:
                    for x in inputs[3:]:
                        items += [("s", " + "), x]
                elif isinstance(p, _Slot):
                    choices = dict(self.slot_choices(p.value, k, True))
                    if isinstance(p.value, int):  # a character only where this op took that argument
                        choices = {c: x for c, x in choices.items()
                                   if not c.startswith("row:") or (self.rows_first and c[4:] in self.prefer)}
                    self.slot_value[id(choices)] = p.value
                    items.append(("slot", choices, None))
        return items

    def render(self, r: _Rec, items: list, out_text: str, reftext) -> dict:
        """The op as a statement: its lines, the name it assigns, and a label for the comment."""
        lines, cur, tmp = [], "", None
        inputs_text = []
        for it in items:
            kind = it[0]
            if kind == "s":
                cur += it[1]
            elif kind == "o":
                cur += out_text
            elif kind == "tmp":
                if tmp is None:
                    tmp = self.fresh("rows")
                cur += tmp
            elif kind == "nl":
                lines.append(cur)
                cur = ""
            elif kind == "r":
                text = reftext(it[1], it[2])
                inputs_text.append(text)
                cur += text
            elif kind == "slot":
                cur += next(iter(it[1].values()))
        lines.append(cur)
        b = self.b
        label = r.cls.__name__ if r.i < b.n_forward else \
            f"{r.node.name}.backward" if r.rule and r.node is not None else "sum of uses"
        stmt = {"target": out_text, "lines": lines, "label": label, "inline": False, "scatter": None}
        key = _key(r.out)
        cons = b.consumers.get(key, [])
        if len(lines) == 1 and lines[0].startswith(out_text + " = ") and re.fullmatch(r"\w+", out_text) \
                and len(cons) == 1 and key not in b.roots and not r.out.name and key not in b.d_of \
                and [_key(t) for t in cons[0].inputs].count(key) == 1 and \
                sum(1 for line in b.parts[cons[0].i] for p in line if isinstance(p, _In) and
                    _key(cons[0].inputs[p.i]) == key) <= 1:
            stmt["inline"] = True
        if r.cls.__name__ == "ScatterAdd" and len(cons) == 1 and key not in b.roots and re.fullmatch(r"\w+", out_text):
            index = r.ctx.index if isinstance(r.ctx.index, tuple) else (r.ctx.index,)
            stmt["scatter"] = not any(isinstance(x, np.ndarray) for x in index)  # basic: `+=` adds each entry once
        if b.inplace(r) is not None and len(inputs_text) == 2 and inputs_text[0] == out_text:
            stmt["lines"] = [f"{out_text} += {inputs_text[1]}"]  # the sum is ours alone: add in place
            stmt["inplace"] = inputs_text[1]
        return stmt

    def phase(self, recs: list, d: int, label: str) -> None:
        b = self.b
        if not recs:
            return
        in_phase = {r.i for r in recs}
        for r in recs:
            scope = r.scope if d > 0 else getattr(r.node, "scope", "") if r.node is not None else ""
            r.step = _step_of(scope)
        if not self.rolled:  # straight: every op in the order it ran
            for r in recs:
                self.emit(r, r.step)
            return
        if self.rolled:  # an op outside any step whose every use lies in steps belongs to the first of them
            for r in reversed(recs):
                k = _key(r.out)
                if r.step is not None or k in b.roots:
                    continue
                cons = b.consumers.get(k, [])
                steps = {c.step for c in cons}
                if cons and all(c.i in in_phase for c in cons) and None not in steps:
                    first = min(steps) if d > 0 else max(steps)  # used there and, as a carry, by the next step
                    if steps <= {first, first + d}:
                        r.step = first
        by_step: dict = {}
        for r in recs:
            if r.step is not None:
                by_step.setdefault(r.step, []).append(r)
        dep, pre, post = set(), [], []
        for r in recs:
            if r.step is not None or any(_key(t) in dep for t in r.inputs):
                dep.add(_key(r.out))
                if r.step is None:
                    post.append(r)
            else:
                pre.append(r)
        run, init, state = self.find_run(by_step, d, label)
        for k, placement in getattr(self, "padded", {}).items():
            by_step[k] = placement  # the loop body's positions, None where the step has no such op
        for r in pre:
            self.emit(r, None)
        order = sorted(by_step, reverse=d < 0)
        if run is None:
            for k in order:
                for r in by_step[k]:
                    self.emit(r, k)
        else:
            a, z = run
            for k in order:
                if not a <= k <= z and (k < a if d > 0 else k > z):
                    for r in by_step[k]:
                        self.emit(r, k)
            self.emit_loop(by_step, run, init, state, d, label)
            for k in order:
                if not a <= k <= z and (k > z if d > 0 else k < a):
                    for r in by_step[k]:
                        self.emit(r, k)
        for r in post:
            self.emit(r, None)

    def emit(self, r: _Rec, k: Optional[int]) -> None:
        """One op outside loops: its value gets a name of its own (h_3 for step t=2, as the book's h(3))."""
        items = self.items(r, k, lambda key, t, k: self.ref_outside(key, t, k))
        for n, it in enumerate(items):  # outside loops a slot is written literally or as an argument's row
            if it[0] == "slot":
                items[n] = ("slot", {"x": self.slot_text(it, k)}, None)
        base = self.b.base(r)
        acc = self.b.inplace(r)
        if acc is not None and re.fullmatch(r"\w+", self.names.get(acc, "")):
            name = self.names[acc]  # the running sum keeps its name: dW_hh += …
        else:
            name = self.fresh(base if k is None or base in ("loss",) else f"{base}_{k + 1}")
        stmt = self.render(r, items, name, lambda ref, key: self.text(key, k))
        stmt["lines"] = [_expand_range(_compress_list(line), self.T) for line in stmt["lines"]]
        self.lines.append(stmt)
        self.names[_key(r.out)] = name

    def ref_outside(self, key: int, t: Tensor, k: Optional[int]) -> tuple:
        if key not in self.b.producer and key not in self.names and t._ctx is None:
            return ("slot", dict(self.const_choices(t, k, True)), key)
        return ("r", ("val", key), key)

    def slot_text(self, it: tuple, k: Optional[int]) -> str:
        if it[2] is not None:  # a constant tensor
            text = self.const_choices(self.tensor_of[it[2]], k, False)[0][1]
            wrap = any(x.startswith("np.asarray(") for x in it[1].values())
            return f"np.asarray({text})" if wrap and re.fullmatch(r"-?[\d.e+-]+|nan|inf", text) else text
        choices = [(p, x) for p, x in it[1].items() if p != "t"]  # outside a loop: no t
        if isinstance(self.slot_value.get(id(it[1])), int) and (not self.rows_first or not any(
                p.split(":")[-1] in self.prefer for p, _ in choices)):
            choices = [c for c in choices if c[0] == "lit"] or choices  # a step number, not a character
        policy, text = choices[0]
        return f"{policy[4:]}[{k}]" if policy.startswith("row:") else text

    def find_run(self, by_step: dict, d: int, label: str) -> tuple:
        """The longest stretch of consecutive steps with the same ops: (first, last) step, start values, body."""
        b = self.b
        steps = sorted(by_step)
        if len(steps) < 2:
            return None, {}, None
        pos = {_key(r.out): (k, j) for k in steps for j, r in enumerate(by_step[k])}
        fwd = self.loops.get("forward") if d < 0 else None

        def ref(key, t, k):
            if key in pos:
                ks, j = pos[key]
                return ("r", ("step", j, ks - k), key)
            if fwd is not None and key in fwd["pos"]:
                ks, j = fwd["pos"][key]
                return ("r", ("fwd", j, ks - k), key)
            if fwd is not None and key in fwd["init"]:
                j, idx = fwd["init"][key]
                return ("r", ("fwd", j, idx - k), key)
            if key not in b.producer and key not in self.names and t._ctx is None:
                return ("slot", dict(self.const_choices(t, k, True)), key)
            return ("r", ("val", key), key)

        sigs = {k: [it for r in by_step[k] for it in self.items(r, k, ref)] for k in steps}
        runs, start, state = [], steps[0], sigs[steps[0]]
        for prev, k in zip(steps, steps[1:]):
            new = _unify(state, sigs[k], k) if k == prev + 1 else None
            if new is None:
                runs.append((start, prev, state))
                start, state = k, sigs[k]
            else:
                state = new
        runs.append((start, steps[-1], state))
        best = None
        for a, z, state in runs:  # each stretch, with the step before it (in the loop's order) as its start
            init: dict = {}
            first = a - 1 if d > 0 else z + 1
            if first in by_step:
                run = (min(a, first), max(z, first))
                new = _unify(state, sigs[first], first, init, run)
                if new is not None:
                    a, z, state = run[0], run[1], new
                else:
                    init = {}
            if best is None or z - a > best[1] - best[0]:
                best = (a, z, state, init)
        a, z, state, init = best
        if z - a < 1:
            return None, {}, None
        self.padded = {}
        if d < 0:  # the backward's first step sums nothing yet, its last sends nothing on: loop them too (lossFun)
            a, z, state, init = self.pad_ends(by_step, sigs, a, z, state, init, d)
        return (a, z), init, state

    def pad_ends(self, by_step: dict, sigs: dict, a: int, z: int, state: list, init: dict, d: int) -> tuple:
        """Take the steps just outside the run into it where they differ only as lossFun's ends do: at the first
        step a sum that has no earlier share (the engine's Add missing: the loop adds to zeros there), at the last
        an op whose value only the next step would read (computed and not used). self.padded[k] places the
        step's ops at the loop body's positions (None where the body has an op the step has not)."""
        tmpl = _split(state)
        mid = by_step[(a + z) // 2]
        if len(mid) != len(tmpl):
            return a, z, state, init
        first, last = z + 1, a - 1  # the backward runs from high t to low t
        if first in by_step:
            got = self.align(tmpl, mid, _split(sigs[first]), by_step[first], first, (a, first), init, True)
            if got is not None:
                tmpl, placement, init = got
                z = first
                self.padded[first] = placement
        if last in by_step:
            got = self.align(tmpl, mid, _split(sigs[last]), by_step[last], last, (last, z), init, False)
            if got is not None:
                tmpl, placement, init = got
                a = last
                self.padded[last] = placement
        return a, z, [it for rec in tmpl for it in rec], init

    def align(self, tmpl: list, mid: list, cand: list, recs: list, k: int, run: tuple, init: dict,
              first_end: bool) -> Optional[tuple]:
        """Step k's ops at the body's positions, or None (see pad_ends)."""
        b = self.b
        new_init = {w: key for w, key in init.items() if w[1] != k}
        mapping, alias, placement, new_tmpl, js = {}, {}, [], [], 0

        def translate(it):
            if it[0] == "r" and it[1][0] == "step" and it[1][2] == 0:
                return ("r", ("step", mapping.get(it[1][1], -1), 0), it[2])
            return it
        for i, t_items in enumerate(tmpl):
            c = cand[js] if js < len(cand) else None
            if c is not None and c[0] == t_items[0] and len(c) == len(t_items):
                trans = [translate(it) for it in c]
                trans = [t if t[0] == "r" and t[1][0] == "step" and t[1][2] == 0 and x[0] == "r" and
                         x[1] == ("step", alias.get(t[1][1], -2), 0) else x for t, x in zip(t_items, trans)]
                u = _unify(t_items, trans, k, new_init, run)
                if u is not None:
                    mapping[js] = i
                    placement.append(recs[js])
                    new_tmpl.append(u)
                    js += 1
                    continue
            r = mid[i]
            refs = [it for it in t_items if it[0] == "r"]
            if first_end and r.cls.__name__ == "Add" and not r.rule and len(refs) == 2 and \
                    refs[0][1][0] == "step" and refs[0][1][2] == 1 and refs[1][1][0] == "step" and refs[1][1][2] == 0:
                where = (refs[0][1][1], k + 1)  # the sum's earlier share: none yet, zeros
                if new_init.setdefault(where, ("zeros", r.out.shape, r.out.dtype)) != ("zeros", r.out.shape, r.out.dtype):
                    return None
                alias[i] = refs[1][1][1]
                placement.append(None)
                new_tmpl.append(t_items)
                continue
            uses = b.consumers.get(_key(r.out), [])
            if not first_end and uses and all(c.step == r.step - 1 for c in uses) and _key(r.out) not in b.roots:
                placement.append(None)  # read by the step after only: computed at the last step, not used
                new_tmpl.append(t_items)
                continue
            return None
        if js != len(cand):
            return None
        for (j, kk), key in init.items():  # the start values the run took from step k: now its own values
            if kk == k:
                at = placement[j] if placement[j] is not None or j not in alias else placement[alias[j]]
                if at is None or _key(at.out) != key:
                    return None
        return new_tmpl, placement, new_init

    def emit_loop(self, by_step: dict, run: tuple, init: dict, state: list, d: int, label: str) -> None:
        """The run of steps as one loop: a value used only inside its step is a plain local, one read by the next
        step alone (or after the loop at its last step) one variable carried along (dh_next, dW_hh), any other is
        kept per step in a dict (hs[t]), as lossFun does."""
        b, body = self.b, self.lines
        a, z = run
        first, last = (a, z) if d > 0 else (z, a)
        padded = getattr(self, "padded", {})
        src = next(by_step[k] for k in range(a, z + 1) if k not in padded)  # a step with every op of the body
        n = len(src)
        rec_pos = {r.i: (k, j) for k in range(a, z + 1) for j, r in enumerate(by_step[k]) if r is not None}
        kind = {}
        for j in range(n):
            local = plain = True
            for k in range(a, z + 1):
                if by_step[k][j] is None:
                    continue
                key = _key(by_step[k][j].out)
                uses = [rec_pos.get(c.i) for c in b.consumers.get(key, [])] + ([None] if key in b.roots else [])
                for cp in uses:
                    if cp is not None and (cp[0] == k or k == first and k in padded):
                        continue  # (the padded first step's shares are read through the loop's zero-started sums)
                    local = False
                    if cp is not None and cp[0] == k + d and cp[1] <= j:
                        continue
                    if k == last and cp is None:
                        continue
                    plain = False
            kind[j] = "local" if local else "plain" if plain else "dict"
        for (j, idx) in init:
            if kind[j] == "plain" and idx != first - d:
                kind[j] = "dict"
        name = {}
        pos_last = {_key(r.out): j for j, r in enumerate(src)}
        # the carried and kept values first: the running sums get the plain names (dW_hh), a share of one a suffix
        for j in sorted(range(n), key=lambda j: kind[j] == "local"):
            acc = b.inplace(src[j])
            if kind[j] == "local" and acc in pos_last and kind[pos_last[acc]] == "local":
                continue
            roots = [by_step[last][j]] if by_step[last][j] is not None else []
            base = b.base(roots[0] if roots else src[j])
            if kind[j] == "dict":
                base += "s"
            elif kind[j] == "plain" and d < 0 and base not in b.grad_names.values():
                base += "_next"  # carried to the step before: lossFun's dhnext
            name[j] = self.fresh(base)
        for j in range(n):  # a sum of this step's shares, added up in one array
            acc = b.inplace(src[j])
            if j not in name:
                name[j] = name[pos_last[acc]]
        if not self.T_written:
            body.append(f"T = {self.T}  # time steps")
            self.T_written = True
        for j in range(n):
            if kind[j] == "dict":
                body.append(f"{name[j]} = {{}}")
        for (j, idx), key in init.items():
            if isinstance(key, tuple):  # a sum with no share yet: zeros, as lossFun's np.zeros_like
                dt = "" if key[2] == np.float64 else f", np.{np.dtype(key[2]).name}"
                body.append(f"{name[j]} = np.zeros({key[1]}{dt})" if kind[j] == "plain" else
                            f"{name[j]}[{idx}] = np.zeros({key[1]}{dt})")
                continue
            value = self.text(key, idx)
            if kind[j] == "plain" and not (b.owned(key) and len(b.consumers.get(key, [])) == 1):
                value += ".copy()"  # the loop adds into it in place: an array of its own
            body.append(f"{name[j]} = {value}" if kind[j] == "plain" else f"{name[j]}[{idx}] = {value}")
        rng = _range_text(a, z + 1, self.T)
        body.append(f"for t in {rng}:" if d > 0 else f"for t in reversed({rng}):")
        body.append("<in>")
        fwd = self.loops.get("forward")

        def reftext(ref, key):
            if ref[0] == "step":
                _, j, off = ref
                if kind[j] != "dict":
                    return name[j]
                return f"{name[j]}[t {'+-'[off < 0]} {abs(off)}]" if off else f"{name[j]}[t]"
            if ref[0] == "fwd":
                _, j, off = ref
                if fwd is None or fwd["kind"][j] != "dict":
                    raise KeyError("trace: a forward value the backward loop reads is not kept per step")
                return f"{fwd['name'][j]}[t {'+-'[off < 0]} {abs(off)}]" if off else f"{fwd['name'][j]}[t]"
            return self.text(key, None)

        splits, cur = [], []
        for it in state:
            if it[0] == "cls" and cur:
                splits.append(cur)
                cur = []
            cur.append(it)
        splits.append(cur)
        for j, items in enumerate(splits):
            out = f"{name[j]}[t]" if kind[j] == "dict" else name[j]
            body.append(self.render(src[j], items, out, reftext))
        body.append("<out>")
        positions = {}
        for k in range(a, z + 1):
            for j, r in enumerate(by_step[k]):
                if r is None:
                    continue
                positions[_key(r.out)] = (k, j)
                if kind[j] == "dict":
                    self.names[_key(r.out)] = f"{name[j]}[{k}]"
                elif k == last:
                    self.names[_key(r.out)] = name[j]
        for (j, idx), key in init.items():
            if kind[j] == "dict" and not isinstance(key, tuple):
                self.names.setdefault(key, f"{name[j]}[{idx}]")
        self.loops[label] = {"pos": positions, "init": {key: where for where, key in init.items()
                                                        if not isinstance(key, tuple)},
                             "kind": kind, "name": name}


def _scatter_parts(line: str) -> Optional[tuple]:
    """(index, values) of ScatterAdd's line `np.add.at(y, np.s_[index], values)`."""
    try:
        call = ast.parse(line).body[0].value
        index = call.args[1].slice
        parts = index.elts if isinstance(index, ast.Tuple) else [index]
        return ", ".join(ast.unparse(x) for x in parts), ast.unparse(call.args[2])
    except (SyntaxError, AttributeError, IndexError):
        return None


def _literal(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return repr(v.item())
        dt = "" if v.dtype in (np.float64, np.int64) else f", dtype=np.{v.dtype.name}"
        return f"np.array({v.tolist()!r}{dt})"
    return repr(v)


def _is_row(v: Any, arr: np.ndarray, k: Optional[int]) -> bool:
    """v is row k of the integer argument arr (a character id at step k, or a batch's)."""
    if k is None or arr.ndim == 0 or not 0 <= k < len(arr) or isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)) or isinstance(v, np.ndarray):
        return np.shape(v) == arr[k].shape and np.array_equal(v, arr[k])
    return False


def _range_text(lo: int, hi: int, T: int) -> str:
    """range bounds written relative to T where they sit near its end, so the text does not change with T."""
    def end(n: int) -> str:
        return "T" if n == T else f"T - {T - n}" if n > T // 2 else str(n)
    return f"range({end(hi)})" if lo == 0 else f"range({end(lo)}, {end(hi)})"


def _simplify(body: list) -> list:
    """Statements to lines: a temporary used once right after is written into its use (ast drops the spare
    parentheses), a scatter into a running sum adds in place, and each line says which op made it."""
    out: list = []
    pending: dict = {}  # name -> index in out of a statement that may be written into its one use
    scatters: dict = {}
    for st in body:
        if isinstance(st, str):
            pending.clear()
            scatters.clear()
            out.append(st)
            continue
        st = dict(st, labels=[st["label"]])
        parts = _scatter_parts(out[scatters[st["inplace"]]]["lines"][-1]) if st.get("inplace") in scatters else None
        if parts is not None:  # dW_xh += zeros with a column added -> dW_xh[:, x] += column
            j = scatters.pop(st["inplace"])
            (index, values), basic = parts, out[j]["scatter"]
            st["lines"] = [f"{st['target']}[{index}] += {values}" if basic else
                           f"np.add.at({st['target']}, np.s_[{index}], {values})"]
            st["labels"] = out[j]["labels"] + st["labels"]
            out[j] = None
        changed = False
        for name in list(pending):
            if "inplace" in st and name == st["target"]:
                continue  # the running sum added into is not an expression to write out
            uses = sum(len(re.findall(rf"(?<![\w.]){name}\b", line)) for line in st["lines"])
            if uses != 1:
                continue
            j = pending.pop(name)
            expr = out[j]["lines"][0].split(" = ", 1)[1]
            st["lines"] = [re.sub(rf"(?<![\w.]){name}\b", lambda m: f"({expr})", line) for line in st["lines"]]
            st["labels"] = out[j]["labels"] + st["labels"]
            out[j], changed = None, True
        if changed:
            st["lines"] = [_tidy(line) for line in st["lines"]]
        target = st["target"]
        for name in list(pending):  # a name assigned again: what read its old value cannot move past here
            if name == target or re.search(rf"(?<![\w.]){re.escape(target)}\b", out[pending[name]]["lines"][0]):
                del pending[name]
        scatters.pop(target, None)  # changed since: no longer the zeros with one scatter
        out.append(st)
        if st["inline"]:
            pending[target] = len(out) - 1
        if st["scatter"] is not None and re.fullmatch(r"\w+", target):
            scatters[target] = len(out) - 1
    lines = []
    for st in out:
        if st is not None and not isinstance(st, str) and st["scatter"] and "np.add.at(" in st["lines"][-1]:
            parts = _scatter_parts(st["lines"][-1])  # a basic index takes each entry once: += in place
            if parts is not None:
                st["lines"][-1] = f"{st['target']}[{parts[0]}] += {parts[1]}"
        if st is None or isinstance(st, str):
            if st is not None:
                lines.append(st)
            continue
        labels = list(dict.fromkeys(st["labels"]))
        lines.append(f"{st['lines'][0]}  # {', '.join(labels)}")
        lines += st["lines"][1:]
    return lines


_OUTER = re.compile(r"^(\w+) \+= np\.dot\((.+?)\.reshape\(\((\d+), (\d+)\)\)\.T, (.+?)\.reshape\(\((\d+), (\d+)\)\)\)"
                    r"(  # .*)?$|^(\w+) \+= (.+?)\.reshape\(\((\d+), (\d+)\)\)\.T @ (.+?)\.reshape\(\((\d+), (\d+)\)\)(  # .*)?$")


_SCATTER = re.compile(r"^np\.add\.at\((\w+), np\.s_\[:, (.+?)\], (\w+)\.T\)(  # .*)$")


def _batch_outer_sums(lines: list) -> list:
    """A weight's gradient summed in a loop one outer product per step (dW_hh += da^T h) becomes one matrix
    product after the loop over the rows of every step, as the engine's OuterGrad sums do: BLAS at its best;
    a batch's column scatter (np.add.at(dW_xh, np.s_[:, idx[t]], da.T)) likewise, as the product with the
    one-hot rows of every step (the engine's _input_grad for a batch)."""
    out, n = [], 0
    while n < len(lines):
        line = lines[n]
        if not (line.startswith("for t in ") and n + 1 < len(lines) and lines[n + 1] == "<in>"):
            out.append(line)
            n += 1
            continue
        end = lines.index("<out>", n)
        body = lines[n + 2:end]
        if "<in>" in body:  # a loop inside: left as it is
            out += lines[n:end + 1]
            n = end + 1
            continue
        rng = re.search(r"range\([^()]*\)", line)[0]
        before, after, new_body = [], [], []
        for b in body:
            m = _SCATTER.match(b)
            if m is not None and sum(len(re.findall(rf"(?<![\w.]){m[1]}\b", x)) for x in body) == 1:
                acc, index, u, label = m[1], m[2], m[3], m[4].split("#", 1)[1].split(",")[0].strip()
                rows = acc + "_rows"
                before.append(f"{rows} = {{}}")
                new_body.append(f"{rows}[t] = {u}  # {label}: {acc}[:, {index}] += {u}^T, summed after the loop")
                after.append(f"{acc} += np.dot(np.concatenate([{rows}[t] for t in {rng}]).T, np.eye({acc}.shape[1], "
                             f"dtype={acc}.dtype)[np.concatenate([{index} for t in {rng}])])"
                             "  # every step's columns as one product with the one-hot rows")
                continue
            m = _OUTER.match(b)
            g = None if m is None else (m.groups()[:8] if m[1] else m.groups()[8:])
            if g is None or sum(len(re.findall(rf"(?<![\w.]){g[0]}\b", x)) for x in body) != 1:
                new_body.append(b)
                continue
            acc, u, _, cols_u, v, _, cols_v, comment = g
            rows = acc + "_rows"
            before.append(f"{rows} = {{}}")
            label = (comment or "  # ").split("#", 1)[1].split(",")[0].strip()
            new_body.append(f"{rows}[t] = {u}  # {label}: {acc} += {u}^T {v}, summed after the loop")
            stack_v = f"np.concatenate([{v}.reshape(-1, {cols_v}) for t in {rng}])"
            after.append(f"{acc} += np.dot(np.concatenate([{rows}[t].reshape(-1, {cols_u}) for t in {rng}]).T, "
                         f"{stack_v})  # every step's outer products as one product")
        out += before + [line, "<in>"] + new_body + ["<out>"] + after
        n = end + 1
    return out


def _tidy(line: str) -> str:
    """The line with only the parentheses Python needs."""
    try:
        return ast.unparse(ast.parse(line))
    except SyntaxError:
        return line


def _compress_list(line: str) -> str:
    """[os[0], os[1], …, os[T-1]] as a comprehension, so the text does not grow with T."""
    def repl(m):
        entries = re.findall(r"(\w+)\[(\d+)\]", m.group(1))
        names = {n for n, _ in entries}
        idx = [int(i) for _, i in entries]
        if len(entries) < 3 or len(names) != 1 or idx != list(range(idx[0], idx[0] + len(idx))) or \
                ", ".join(f"{n}[{i}]" for n, i in entries) != m.group(1):
            return m.group(0)
        return f"[{names.pop()}[t] for t in {{RANGE{idx[0]},{idx[-1] + 1}}}]"
    return re.sub(r"\[((?:\w+\[\d+\], )+\w+\[\d+\])\]", repl, line)


def _expand_range(line: str, T: int) -> str:
    return re.sub(r"\{RANGE(\d+),(\d+)\}", lambda m: _range_text(int(m.group(1)), int(m.group(2)), T), line)


def _split(items: list) -> list:
    """A step's flat items as one list per op (each starts with its ("cls", name))."""
    out: list = []
    for it in items:
        if it[0] == "cls":
            out.append([])
        out[-1].append(it)
    return out


def _unify(state: list, items: list, k: int, init: Optional[dict] = None, run: tuple = ()) -> Optional[list]:
    """The items of two steps as one loop body, or None: text and references must agree, a slot keeps the
    ways of writing it that fit both; with `init`, a reference to a step outside the run is the loop's start
    value (lossFun's hs[-1] = hprev), recorded in init."""
    if len(state) != len(items):
        return None
    new = []
    for s, it in zip(state, items):
        if s[0] == "slot" and it[0] == "slot":
            allowed = {p: x for p, x in s[1].items() if it[1].get(p) == x}
            if not allowed:
                return None
            new.append(("slot", allowed, s[2]))
        elif s[0] == "r" and it[0] == "r" and s[1] == it[1]:
            new.append(s)
        elif s[0] not in ("r", "slot") and s == it:
            new.append(s)
        elif init is not None and s[0] == "r" and s[1][0] == "step" and not run[0] <= k + s[1][2] <= run[1] \
                and it[0] in ("r", "slot") and it[2] is not None:
            where = (s[1][1], k + s[1][2])
            if init.setdefault(where, it[2]) != it[2]:
                return None
            new.append(s)
        else:
            return None
    return new


