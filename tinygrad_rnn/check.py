"""Gradient checks: `gradcheck` (PyTorch's torch.autograd.gradcheck: every Jacobian entry against central
differences, in float64), `compare` (two gradient dicts side by side) and `compare_cell` (a CharRNN's
autodiff gradients vs the hand-derived BPTT of `manual` vs finite differences, on the same weights; a
user-written cell, which has no hand derivation, gets autodiff vs finite differences).
"""
from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from . import manual
from .engine import Function, no_grad, walk
from .nn import GRUCell, LSTMCell, Module, RNNCell, cross_entropy
from .tensor import Tensor

__all__ = ["gradcheck", "GradcheckError", "compare", "Report", "Row", "compare_cell", "CellReport"]


class GradcheckError(RuntimeError):
    """Raised by gradcheck when an analytic Jacobian entry disagrees with its central difference."""

    def __init__(self, message: str, *, input_position: int, input_name: Optional[str],
                 output_index: tuple, input_index: tuple, analytic: float, numerical: float):
        super().__init__(message)
        self.input_position, self.input_name = input_position, input_name
        self.output_index, self.input_index = output_index, input_index
        self.analytic, self.numerical = analytic, numerical


# ---- gradcheck ----------------------------------------------------------------------------------------
def gradcheck(fn: Callable[..., Tensor], inputs: Union[Tensor, Sequence[Tensor]], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3) -> bool:
    """True if d fn(*inputs)[j] / d inputs[k][i] matches central differences for every j, k, i; else raises.

    Entry (j, i) passes when |analytic - numerical| <= atol + rtol * |numerical| (torch.allclose).
    Row j of the analytic Jacobian is what backward(grad=onehot(j)) leaves in each input's .grad; an input
    that requires grad but receives none has analytic gradient 0. Inputs that require grad are checked;
    float32 ones are checked in a float64 copy (PyTorch only warns, but float32 cannot resolve eps=1e-6).
    The inputs' .data and .grad, and the .grad of any other leaf fn uses, are as before on return.
    Raises GradcheckError naming the worst entry: input position and name, output and input index.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: inputs must be Tensors, but input {k} is a {type(t).__name__}")
        if t.requires_grad and not t.is_leaf:
            raise ValueError(f"gradcheck: input {k}{_named(t)} is the output of an op, not a leaf; "
                             "pass Tensor(x.data, requires_grad=True) instead")
    checked = [t for t in inputs if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is no gradient to check")

    with _float64_data(checked):
        out = _call(fn, inputs)
        with _grads_kept([*checked, *_graph_leaves(out)]):
            analytic = _analytic_jacobians(out, checked)
        numerical = _numerical_jacobians(lambda: _call(fn, inputs), checked, eps)

    # excess > 0 fails allclose's test |a - n| <= atol + rtol |n|; NaN counts as the worst mismatch
    excess = [np.abs(a - n) - (atol + rtol * np.abs(n)) for a, n in zip(analytic, numerical)]
    excess = [np.where(np.isnan(e), np.inf, e) for e in excess]
    n_bad, n_all = sum(int((e > 0).sum()) for e in excess), sum(e.size for e in excess)
    if n_bad == 0:
        return True
    m = max(range(len(checked)), key=lambda m: excess[m].max(initial=-np.inf))
    t, a, n = checked[m], analytic[m], numerical[m]
    j, i = np.unravel_index(np.argmax(excess[m]), excess[m].shape)
    k = next(p for p, s in enumerate(inputs) if s is t)
    out_index = tuple(int(x) for x in np.unravel_index(j, out.shape))
    in_index = tuple(int(x) for x in np.unravel_index(i, t.shape))
    raise GradcheckError(
        f"gradcheck: Jacobian mismatch for input {k}{_named(t)}: d output{list(out_index) if out_index else ''} / "
        f"d input{list(in_index)} is {a[j, i]:.10g} by backward but {n[j, i]:.10g} by central differences "
        f"(|difference| {abs(a[j, i] - n[j, i]):.3g} > atol + rtol*|numerical| = "
        f"{atol + rtol * abs(n[j, i]):.3g}); {n_bad} of {n_all} Jacobian entries fail",
        input_position=k, input_name=t.name, output_index=out_index, input_index=in_index,
        analytic=float(a[j, i]), numerical=float(n[j, i]))


def _named(t: Tensor) -> str:
    return f" ({t.name!r})" if t.name else ""


def _call(fn: Callable[..., Tensor], inputs: Sequence[Tensor]) -> Tensor:
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    return out


@contextlib.contextmanager
def _float64_data(tensors: Sequence[Tensor]) -> Iterator[None]:
    """Swap each tensor's data for a float64 copy while inside; the original arrays come back after."""
    saved = [(t, t.data) for t in tensors]
    try:
        for t in tensors:
            # a copy even when already float64: perturbing must never write into the caller's array
            t.data = np.array(t.data, dtype=np.float64)
        yield
    finally:
        for t, data in reversed(saved):  # reversed: a tensor listed twice ends with its first saved array
            t.data = data


@contextlib.contextmanager
def _grads_kept(tensors: Sequence[Tensor]) -> Iterator[None]:
    """Inside, the tensors' .grad start empty; on exit each gets back the grad it had before."""
    saved = [(t, t.grad) for t in tensors]
    try:
        for t in tensors:
            t.grad = None
        yield
    finally:
        for t, grad in reversed(saved):
            t.grad = grad


def _graph_leaves(root: Tensor) -> list:
    """The tensors in root's graph whose .grad backward writes (leaves that require grad, and
    intermediates with retain_grad()), so that it is saved and restored around it."""
    return [v.output() if isinstance(v, Function) else v for v in walk(root)
            if v.requires_grad and (not isinstance(v, Function) or v._retain)]


def _analytic_jacobians(out: Tensor, wrt: Sequence[Tensor]) -> list:
    """One (out.size, t.size) Jacobian per tensor in wrt, row j from backward(grad=onehot(j))."""
    jacobians = [np.zeros((out.size, t.size)) for t in wrt]
    if not out.requires_grad:  # fn's output does not depend on the graph: every gradient is 0
        return jacobians
    for j in range(out.size):
        seed = np.zeros(out.shape)
        seed.flat[j] = 1.0
        for t in wrt:
            t.grad = None
        out.backward(grad=seed, retain_graph=True)
        for jac, t in zip(jacobians, wrt):
            if t.grad is not None:
                jac[j] = t.grad.ravel()
    return jacobians


def _numerical_jacobians(evaluate: Callable[[], Tensor], wrt: Sequence[Tensor], eps: float) -> list:
    """One (out.size, t.size) Jacobian per tensor: column i is (f(x + eps e_i) - f(x - eps e_i)) / 2 eps."""
    jacobians = []
    with no_grad():
        size = evaluate().size
        for t in wrt:
            jac = np.zeros((size, t.size))
            for i in range(t.size):
                original = t.data.flat[i]
                t.data.flat[i] = original + eps
                plus = np.array(evaluate().data, dtype=np.float64)  # a copy: fn may return its input
                t.data.flat[i] = original - eps
                minus = np.array(evaluate().data, dtype=np.float64)
                t.data.flat[i] = original  # the saved value, not x + eps - eps, which can round
                jac[:, i] = ((plus - minus) / (2 * eps)).ravel()
            jacobians.append(jac)
    return jacobians


# ---- compare --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One parameter of a comparison: max |a - b|, max |a - b| / max(|a|, |b|), and whether all entries pass."""
    name: str
    max_abs: float
    max_rel: float
    passed: bool
    note: str = ""  # why there are no numbers: a missing key or a shape mismatch


class Report:
    """compare's result: `rows` (one Row per parameter), `ok`, a text table by str() and HTML for Jupyter."""

    def __init__(self, rows: Sequence[Row], names: tuple, atol: float, rtol: float):
        self.rows, self.names, self.atol, self.rtol = list(rows), tuple(names), atol, rtol

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    def __bool__(self) -> bool:
        return self.ok

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"Report: no parameter {name!r}; it has {[r.name for r in self.rows]}")

    def _title(self) -> str:
        a, b = self.names
        passed = sum(r.passed for r in self.rows)
        return (f"{a} vs {b}: {passed} of {len(self.rows)} parameters pass "
                f"(|{a} - {b}| <= {self.atol:g} + {self.rtol:g} * max(|{a}|, |{b}|) entrywise)")

    def __str__(self) -> str:
        header = ["parameter", "max abs err", "max rel err", "pass"]
        body = [[r.name, *_numbers(r), _verdict(r)] for r in self.rows]
        return self._title() + "\n" + _text_table([header], body, right={1, 2})

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "<tr><th>parameter</th><th>max abs err</th><th>max rel err</th><th>pass</th></tr>"
        body = "".join(f"<tr><td>{html.escape(r.name)}</td>{_html_cells(r)}</tr>" for r in self.rows)
        return f"<table><caption>{html.escape(self._title())}</caption>{head}{body}</table>"


def compare(grads_a: Mapping[str, Any], grads_b: Mapping[str, Any], names: tuple = ("autodiff", "manual"),
            atol: float = 1e-8, rtol: float = 1e-6) -> Report:
    """Per key of either dict: max abs and max relative error of a vs b (arrays; a Tensor counts as its .data).

    An entry passes when |a - b| <= atol + rtol * max(|a|, |b|); a row passes when all its entries do.
    A key found in only one dict, or arrays of different shapes, make a failing row with a note.
    To compare gradients held by Tensors, pass {name: t.grad}.
    """
    keys = list(grads_a) + [k for k in grads_b if k not in grads_a]
    rows = []
    for key in keys:
        if key not in grads_a or key not in grads_b:
            absent = names[0] if key not in grads_a else names[1]
            rows.append(Row(key, np.nan, np.nan, False, f"missing from {absent}"))
            continue
        a, b = _as_float64(grads_a[key]), _as_float64(grads_b[key])
        if a.shape != b.shape:
            rows.append(Row(key, np.nan, np.nan, False, f"shapes {a.shape} and {b.shape} differ"))
            continue
        diff, scale = np.abs(a - b), np.maximum(np.abs(a), np.abs(b))
        if diff.size == 0:
            rows.append(Row(key, 0.0, 0.0, True))
            continue
        rel = diff / np.maximum(scale, np.finfo(np.float64).tiny)  # tiny: 0 vs 0 is error 0, not NaN
        passed = bool(np.all(diff <= atol + rtol * scale))  # NaN compares False, so it fails
        rows.append(Row(key, float(diff.max()), float(rel.max()), passed))
    return Report(rows, names, atol, rtol)


def _as_float64(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x, dtype=np.float64)


def _numbers(row: Row) -> list:
    """max abs and max rel as table cells; "-" when the row has no numbers (a NaN gradient shows nan)."""
    return ["-", "-"] if row.note else [f"{row.max_abs:.2e}", f"{row.max_rel:.2e}"]


def _verdict(row: Row) -> str:
    return ("ok" if row.passed else "FAIL") + (f"  {row.note}" if row.note else "")


def _html_cells(row: Row) -> str:
    colour = "#d4edda" if row.passed else "#f8d7da"
    max_abs, max_rel = _numbers(row)
    return (f"<td>{max_abs}</td><td>{max_rel}</td>"
            f'<td style="background:{colour}">{html.escape(_verdict(row))}</td>')


def _text_table(header: Sequence[Sequence[str]], body: Sequence[Sequence[str]], right: set,
                widths: Optional[list] = None) -> str:
    """Columns padded to `widths` (default: the widest cell); columns in `right` right-aligned."""
    lines = [*header, *body]
    widths = widths or _widths(lines)
    return "\n".join("  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                               for c, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines)


def _widths(lines: Sequence[Sequence[str]]) -> list:
    return [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]


# ---- compare_cell ---------------------------------------------------------------------------------------
# model parameter -> (manual's name, the Deep Learning book's name or ""). The book's LSTM (eqs. 10.40–10.44)
# is cell_input="sigmoid", with blocks i, f, g, o called g, f, (cell input, no superscript), q with
# superscript o; the tanh variant and PyTorch's GRU (reset gate after W_hn) are not the book's, so no symbols.
_OUT_NAMES = {"out.W": ("W_hy", "V"), "out.b": ("b_y", "c")}  # o_t = c + V h_t holds for every cell
_NAMES = {
    "rnn": {"cell.W_xh": ("W_xh", "U"), "cell.W_hh": ("W_hh", "W"), "cell.b_h": ("b_h", "b"), **_OUT_NAMES},
    "lstm_sigmoid": {"cell.W_x": ("W_x", "U^g|U^f|U|U^o"), "cell.W_h": ("W_h", "W^g|W^f|W|W^o"),
                     "cell.b": ("b", "b^g|b^f|b|b^o"), **_OUT_NAMES},
    "lstm_tanh": {"cell.W_x": ("W_x", ""), "cell.W_h": ("W_h", ""), "cell.b": ("b", ""), **_OUT_NAMES},
    "gru": {"cell.W_x": ("W_x", ""), "cell.W_h": ("W_h", ""), "cell.b_x": ("b_x", ""), "cell.b_h": ("b_h", ""),
            **_OUT_NAMES},
}
_PAIRS = (("autodiff", "manual"), ("autodiff", "numeric"), ("manual", "numeric"))
_AUTODIFF_ONLY = (("autodiff", "numeric"),)  # a user-written cell: no hand derivation to compare with


class CellReport:
    """compare_cell's result: `losses`, `reports` (one Report per pair of methods), `labels`, `ok`, a table.

    `pairs` lists the compared pairs: all three for the built-in cells, autodiff vs numeric for any other."""

    def __init__(self, cell: str, losses: Mapping[str, float], reports: Mapping[tuple, Report],
                 labels: Mapping[str, str], shape: tuple, eps: float, notes: Sequence[str] = ()):
        self.cell, self.losses, self.reports = cell, dict(losses), dict(reports)
        self.labels, self.shape, self.eps, self.notes = dict(labels), shape, eps, list(notes)
        self.pairs = tuple(self.reports)

    @property
    def loss_ok(self) -> bool:
        """The model's and manual's forward give the same loss (else the gradients are of two functions)."""
        if "manual" not in self.losses:
            return True
        a, m = self.losses["autodiff"], self.losses["manual"]
        return abs(a - m) <= 1e-8 + 1e-6 * max(abs(a), abs(m))

    @property
    def ok(self) -> bool:
        return self.loss_ok and all(r.ok for r in self.reports.values())

    def __bool__(self) -> bool:
        return self.ok

    def _summary(self) -> list:
        steps = f"T={self.shape[0]}" + (f", B={self.shape[1]}" if len(self.shape) > 1 else "")
        numeric = self.reports[("autodiff", "numeric")]
        lines = [f"gradient check, {self.cell} cell: loss = summed cross-entropy over {steps}"]
        tolerances = (f"(central differences, eps {self.eps:g}) within atol {numeric.atol:g} + "
                      f"rtol {numeric.rtol:g}")
        if "manual" in self.losses:
            a, m = self.losses["autodiff"], self.losses["manual"]
            exact = self.reports[("autodiff", "manual")]
            verdict = ("all three agree" if self.ok else "DISAGREEMENT: see the FAIL rows"
                       if self.loss_ok else "DISAGREEMENT: the two forward passes give different losses")
            lines += [f"loss by autodiff {a:.12g}, by manual {m:.12g} ({'same' if self.loss_ok else 'DIFFERENT'})",
                      f"{verdict}; autodiff vs manual within atol {exact.atol:g} + rtol {exact.rtol:g}, "
                      f"vs numeric {tolerances}"]
        else:
            verdict = "autodiff and numeric agree" if self.ok else "DISAGREEMENT: see the FAIL rows"
            lines += [f"loss by autodiff {self.losses['autodiff']:.12g}; no hand derivation exists for this cell, "
                      f"so autodiff is compared with finite differences only",
                      f"{verdict}; autodiff vs numeric {tolerances}"]
        return lines + self.notes

    def __str__(self) -> str:
        groups = [f"{a} vs {b}" for a, b in self.pairs]
        header = ["parameter", *["max abs", "max rel", "pass"] * len(self.pairs)]
        body = []
        for name, label in self.labels.items():
            line = [label]
            for pair in self.pairs:
                r = self.reports[pair][name]
                line += [*_numbers(r), "ok" if r.passed else "FAIL"]
            body.append(line)
        widths = _widths([header, *body])
        for k, group in enumerate(groups):  # widen a group's last column until its title fits above it
            span = sum(widths[1 + 3 * k:4 + 3 * k]) + 4
            widths[3 + 3 * k] += max(0, len(group) - span)
        titles = [g.ljust(sum(widths[1 + 3 * k:4 + 3 * k]) + 4) for k, g in enumerate(groups)]
        title_line = " " * (widths[0] + 2) + "  ".join(titles).rstrip()
        right = {c for k in range(len(self.pairs)) for c in (1 + 3 * k, 2 + 3 * k)}
        table = _text_table([header], body, right=right, widths=widths)
        return "\n".join(self._summary() + ["", title_line, table])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        groups = "".join(f'<th colspan="3">{a} vs {b}</th>' for a, b in self.pairs)
        head = (f"<tr><th></th>{groups}</tr><tr><th>parameter</th>"
                + "<th>max abs</th><th>max rel</th><th>pass</th>" * len(self.pairs) + "</tr>")
        body = "".join(f"<tr><td>{html.escape(label)}</td>"
                       + "".join(_html_cells(self.reports[pair][name]) for pair in self.pairs) + "</tr>"
                       for name, label in self.labels.items())
        caption = "<br>".join(html.escape(line) for line in self._summary())
        return f"<table><caption>{caption}</caption>{head}{body}</table>"


def compare_cell(model: Any, inputs: Any, targets: Any, state: Any = None, eps: float = 1e-6) -> CellReport:
    """A CharRNN's gradients three ways on its current weights; inputs/targets int arrays (T,) or (T, B).

    autodiff: the model's forward, nn.cross_entropy(reduction="sum") and backward; manual: manual.rnn_bptt,
    manual.lstm_bptt (with model.cell.cell_input) or manual.gru_bptt for the built-in cells; numeric: central
    differences of the model's loss, every entry of every parameter. A user-written cell has no hand
    derivation: its table compares autodiff with numeric only, and says so. `state` is h0 (rnn, gru),
    (h0, s0) (lstm) or whatever the cell takes; zeros when None.
    Pairs compare to atol 1e-8 / rtol 1e-6 (autodiff vs manual) and 1e-5 / 1e-3 (vs numeric).
    The model's weights and .grad are as before on return.
    """
    cell = getattr(model, "cell_type", None)
    if not isinstance(getattr(model, "cell", None), Module) or not isinstance(cell, str):
        raise ValueError(f"compare_cell: model must be an nn.CharRNN, got {type(model).__name__}")
    kind = _builtin_kind(model)
    params = model.named_parameters()
    if kind is not None and set(params) != set(_NAMES[kind]):
        raise ValueError(f"compare_cell: a {cell} CharRNN has parameters {sorted(_NAMES[kind])}, "
                         f"this model has {sorted(params)}")
    names = _NAMES[kind] if kind is not None else {k: ("", _OUT_NAMES.get(k, ("", ""))[1]) for k in params}
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    zeros = np.zeros(inputs.shape[1:] + (model.hidden_size,))  # (H,) or (B, H), as the model starts
    if kind is None:
        model_state = None if state is None else _as_tensors(state)
    elif kind == "rnn" or kind == "gru":
        h0 = zeros if state is None else _as_float64(state)
        model_state = None if state is None else Tensor(h0)
    else:
        h0, s0 = (zeros, zeros) if state is None else map(_as_float64, state)
        model_state = None if state is None else (Tensor(h0), Tensor(s0))
    tensors = [params[k] for k in names]

    def loss() -> Tensor:
        logits, _ = model(inputs, state=model_state)
        return cross_entropy(logits, targets, reduction="sum")

    with _float64_data(tensors):
        out = loss()
        with _grads_kept([*tensors, *_graph_leaves(out)]):
            autodiff = _analytic_jacobians(out, tensors)
        numeric = _numerical_jacobians(loss, tensors, eps)
        weights = {names[k][0]: params[k].data for k in names}
        if kind == "rnn":
            manual_loss, manual_grads, _ = manual.rnn_bptt(weights, inputs, targets, h0)
        elif kind == "gru":
            manual_loss, manual_grads, _ = manual.gru_bptt(weights, inputs, targets, h0)
        elif kind is not None:
            manual_loss, manual_grads, _ = manual.lstm_bptt(weights, inputs, targets, (h0, s0),
                                                            cell_input=model.cell.cell_input)
    grads = {"autodiff": {k: j.reshape(t.shape) for k, j, t in zip(names, autodiff, tensors)},
             "numeric": {k: j.reshape(t.shape) for k, j, t in zip(names, numeric, tensors)}}
    losses = {"autodiff": float(out.data)}
    if kind is not None:
        grads["manual"] = {k: manual_grads[names[k][0]] for k in names}
        losses["manual"] = float(manual_loss)
    reports = {}
    for a, b in (_PAIRS if kind is not None else _AUTODIFF_ONLY):
        tol = {} if b == "manual" else {"atol": 1e-5, "rtol": 1e-3}
        reports[(a, b)] = compare(grads[a], grads[b], names=(a, b), **tol)
    labels = {k: k + (f" ({', '.join(filter(None, (book, m)))})" if book or m else "")
              for k, (m, book) in names.items()}
    notes = []
    if kind == "lstm_sigmoid":
        notes.append("LSTM gate blocks are stacked i|f|g|o; the book (eqs. 10.40-10.44, cell_input='sigmoid') "
                     "calls them g|f|(cell input)|q")
    elif kind == "lstm_tanh":
        notes.append("LSTM gate blocks are stacked i|f|g|o (PyTorch's order) with a tanh cell input; the book's "
                     "eqs. 10.40-10.44 and their symbols hold for cell_input='sigmoid'")
    elif kind == "gru":
        notes.append("GRU gate blocks are stacked r|z|n (PyTorch's nn.GRUCell); the book's GRU (eqs. 10.45-10.47) "
                     "applies the reset gate before W_hn, so its symbols are not used")
    return CellReport(cell, losses, reports, labels, inputs.shape, eps, notes)


def _builtin_kind(model: Any) -> Optional[str]:
    """Which hand derivation fits the model's cell: "rnn", "lstm_tanh", "lstm_sigmoid", "gru", or None."""
    c = model.cell
    if type(c) is RNNCell:
        return "rnn"
    if type(c) is LSTMCell:
        return f"lstm_{c.cell_input}"
    if type(c) is GRUCell:
        return "gru"
    return None


def _as_tensors(state: Any) -> Any:
    """A state given as arrays (or nested tuples of them) as Tensors of float64."""
    if isinstance(state, (tuple, list)):
        return tuple(_as_tensors(s) for s in state)
    return Tensor(_as_float64(state))
