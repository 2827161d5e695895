"""Pictures of the computation graph with Graphviz (imported only when drawing), after micrograd's draw_dot
and PyTorchViz's make_dot: one node per op, each parameter ONE node with an edge to every op that uses it,
time steps as clusters (a nested scope "t=3/lstm" is a cluster inside "t=3"). To colour the ops too with
draw(grads=True), call retain_all_grads(root) before backward().
"""
from __future__ import annotations

import itertools
import math
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from .tensor import Tensor

__all__ = ["draw", "draw_unrolled", "save", "retain_all_grads", "GraphvizNotFound"]

_FORMATS = (".svg", ".png", ".pdf", ".dot")
_RANKDIRS = ("LR", "RL", "TB", "BT")

# Each parameter gets its own colour, on its node and on all its edges, so one weight's fan-out reads
# as one colour across the time steps: (node fill, edge colour).
_PARAM_COLOURS = [("#fde4b3", "#c98200"), ("#cfe3f7", "#2f6fb0"), ("#d6efcf", "#3a8a3a"),
                  ("#f4d3e6", "#b0407f"), ("#e3dcf5", "#6a4fb3"), ("#f9d5cc", "#c0452a"),
                  ("#d2eeee", "#2a8a8a"), ("#ece3d0", "#86692c")]
# ColorBrewer OrRd: pale for a small gradient, dark red for a large one (log scale).
_GRAD_RAMP = ["#fff7ec", "#fee8c8", "#fdd49e", "#fdbb84", "#fc8d59", "#ef6548", "#d7301f", "#990000"]
_OP_STYLE = dict(shape="box", style="rounded,filled", fillcolor="#ffffff", color="#666666",
                 fontsize="10", margin="0.08,0.03", height="0.3")
_PARAM_STYLE = dict(shape="box", style="filled,bold", fontname="Helvetica-Bold", fontsize="11",
                    penwidth="2", margin="0.1,0.05")
_CONST_STYLE = dict(shape="plaintext", fontsize="8", fontcolor="#888888", height="0.2", margin="0.02")
_STEP_STYLE = dict(shape="box3d", style="filled", fillcolor="#f4f4f4", color="#666666", fontsize="11")
_ANCHOR_STYLE = dict(shape="point", style="invis", width="0", label="")
_CLUSTER_STYLE = dict(style="rounded,filled", color="#c8c8c8", fontsize="11", fontcolor="#555555",
                      labeljust="l")
_EDGE_COLOUR = "#555555"


class GraphvizNotFound(RuntimeError):
    """Graphviz's `dot` program is missing, so save() wrote only the .dot source."""


def _graphviz() -> Any:
    try:
        import graphviz
    except ImportError:
        raise ImportError("viz: drawing needs the graphviz Python package: pip install graphviz") from None
    return graphviz


def _walk(root: Tensor) -> list:
    """Every tensor of root's graph, inputs before the ops that use them (iterative DFS, stable order)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t.grad_fn is not None:
            # reversed, so the first input is visited (and numbered) first
            stack.extend((p, False) for p in reversed(t.grad_fn.parents) if id(p) not in seen)
    return order


def retain_all_grads(root: Tensor) -> Tensor:
    """Call retain_grad() on every op output of root's graph, so draw(grads=True) can colour the ops."""
    for t in _walk(root):
        if t.grad_fn is not None:
            t.retain_grad()
    return root


def _natural(scope: str) -> list:
    """Sort key that puts "t=10" after "t=9"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", scope)]


def _top(scope: str) -> str:
    """The time step of a scope: "t=3/lstm" -> "t=3"."""
    return scope.split("/")[0]


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _grad_norm(t: Tensor) -> Optional[float]:
    return None if t.grad is None else float(np.linalg.norm(t.grad))


class _Scale:
    """Log-scale colours between the smallest and largest positive gradient norm of the picture."""

    def __init__(self, norms: list) -> None:
        positive = [n for n in norms if n is not None and n > 0]
        self.lo = min(positive, default=1.0)
        self.hi = max(positive, default=1.0)

    def fraction(self, norm: float) -> float:
        if norm <= 0:
            return 0.0
        if self.hi <= self.lo:
            return 1.0
        return (math.log10(norm) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))

    def colours(self, norm: float) -> tuple:
        """(fill, font colour) for a gradient norm."""
        x = min(max(self.fraction(norm), 0.0), 1.0)
        return _GRAD_RAMP[round(x * (len(_GRAD_RAMP) - 1))], ("#ffffff" if x > 0.75 else "#000000")

    def legend(self, missing: bool) -> str:
        """An HTML-like table: swatches from the largest norm down to the smallest."""
        rows = ['<tr><td colspan="2"><b>‖∂L/∂node‖ (log scale)</b></td></tr>']
        steps = 5 if self.hi > self.lo else 1
        for k in range(steps):
            norm = self.hi * (self.lo / self.hi) ** (k / max(steps - 1, 1))
            rows.append(f'<tr><td bgcolor="{self.colours(norm)[0]}" width="24"> </td>'
                        f'<td align="left">{norm:.1e}</td></tr>')
        if missing:
            rows.append('<tr><td bgcolor="#ffffff" width="24"> </td>'
                        '<td align="left">no .grad kept (viz.retain_all_grads before backward)</td></tr>')
        return ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="3">'
                + "".join(rows) + "</table>>")


def draw(root: Tensor, *, params: Optional[dict] = None, show_shapes: bool = True,
         group_by_scope: bool = True, grads: bool = False, rankdir: str = "LR",
         collapse_scopes: bool = False) -> Any:
    """The graph that produced root as a graphviz.Digraph: ops, shared parameters, time-step clusters."""
    graphviz = _graphviz()
    if not isinstance(root, Tensor):
        raise TypeError(f"draw: expects the Tensor at the root of a graph, got {type(root).__name__}")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"draw: rankdir must be one of {', '.join(_RANKDIRS)}, got {rankdir!r}")
    tensors = _walk(root)
    scale = None
    if grads:
        norms = [_grad_norm(t) for t in tensors]
        if all(n is None for n in norms):
            raise ValueError("draw: grads=True needs gradients: call backward() first "
                             "(and viz.retain_all_grads(root) before it to colour the ops too)")
        scale = _Scale(norms)
    names = {id(t): name for name, t in (params or {}).items()}
    home = _home_scopes(tensors, group_by_scope or collapse_scopes)
    steps = sorted({_top(scope) for scope in home.values() if scope}, key=_natural)
    # per time step: its box when collapsed, else an invisible anchor inside its cluster
    step_ids = {step: f"s{k}" for k, step in enumerate(steps)}
    ids = {id(t): f"n{i}" for i, t in enumerate(tensors)}
    # where an edge to or from each tensor is drawn: its own node, or the box of its time step
    end = {id(t): step_ids[_top(home[id(t)])] if collapse_scopes and home[id(t)] else ids[id(t)]
           for t in tensors}

    # nslimit caps dot's placement iterations: a 25-step LSTM renders in 4 s instead of 200 s, and looks
    # the same; past that, collapse_scopes=True (100 steps in 0.1 s)
    dot = graphviz.Digraph(graph_attr=dict(rankdir=rankdir, fontname="Helvetica", bgcolor="white",
                                           nodesep="0.2", ranksep="0.3", newrank="true", nslimit="1"),
                           node_attr=dict(fontname="Helvetica"),
                           edge_attr=dict(color=_EDGE_COLOUR, arrowsize="0.6"))
    colours, members = {}, {}
    for t in tensors:
        if t.grad_fn is None and t.requires_grad:
            colours[id(t)] = _PARAM_COLOURS[len(colours) % len(_PARAM_COLOURS)]
        if end[id(t)] == ids[id(t)]:
            attrs = _node_attrs(t, names.get(id(t)) or t.name, colours.get(id(t)), show_shapes, scale)
            if t is root:
                attrs["peripheries"] = "2"
            members.setdefault(home[id(t)], []).append((ids[id(t)], attrs))
    if collapse_scopes:
        members.setdefault("", []).extend(_step_boxes(steps, step_ids, tensors, home, root, scale))
    else:
        for step in steps:
            members.setdefault(step, []).append((step_ids[step], _ANCHOR_STYLE))
    _emit(dot, "", members, _scope_tree(members), itertools.count())

    drawn, hints = set(), {}
    for t in tensors:
        if t.grad_fn is None:
            continue
        step = _top(home[id(t)])
        for p in t.grad_fn.parents:
            src, dst = end[id(p)], end[id(t)]
            carried = p.grad_fn is not None and "" != _top(home[id(p)]) != step != ""
            if carried and not collapse_scopes:
                hints[(src, step_ids[step])] = None
            if src == dst or (collapse_scopes and (src, dst) in drawn):
                continue
            drawn.add((src, dst))
            colour = colours.get(id(p))
            if colour is not None:
                dot.edge(src, dst, color=colour[1], penwidth="1.3")
            elif carried:  # the state handed to the next step: bold, and heavy so that it runs straight
                dot.edge(src, dst, style="bold", weight="4")
            else:
                dot.edge(src, dst)
        if step and not collapse_scopes and all(p.grad_fn is None for p in t.grad_fn.parents):
            hints[(step_ids[step], ids[id(t)])] = None
    if collapse_scopes:
        # The boxes share one rank, chained in time order: a straight time line with short edges
        # (one rank per box made dot take a minute to place a 100-step LSTM).
        with dot.subgraph() as timeline:
            timeline.attr(rank="same")
            for box in step_ids.values():
                timeline.node(box)
            for a, b in zip(steps, steps[1:]):
                timeline.edge(step_ids[a], step_ids[b], style="invis")
    else:
        # Invisible edges keep the time steps in order along rankdir: step k's anchor comes after all
        # that earlier steps hand over and before step k's ops that read only inputs and parameters
        # (else dot pulls those ops, and with them the whole cluster, to the start of the picture).
        hints.update({(step_ids[a], step_ids[b]): None for a, b in zip(steps, steps[1:])})
        for src, dst in hints:
            dot.edge(src, dst, style="invis")
    if scale is not None:
        missing = any(t.grad is None and (t.requires_grad or t.grad_fn is not None) for t in tensors)
        dot.node("legend", label=scale.legend(missing), shape="plaintext", fontsize="9")
    return dot


def _home_scopes(tensors: list, grouped: bool) -> dict:
    """Where each node is drawn: an op in its scope, a constant in its users' scope if they share one,
    a parameter always at the top level ("")."""
    users: dict = {}
    for t in tensors:
        if t.grad_fn is not None:
            for p in t.grad_fn.parents:
                users.setdefault(id(p), set()).add(t.grad_fn.scope)
    home = {}
    for t in tensors:
        if not grouped or (t.grad_fn is None and t.requires_grad):
            home[id(t)] = ""
        elif t.grad_fn is not None:
            home[id(t)] = t.grad_fn.scope
        else:
            scopes = users.get(id(t), {""})
            home[id(t)] = next(iter(scopes)) if len(scopes) == 1 else ""
    return home


def _node_attrs(t: Tensor, name: Optional[str], colour: Optional[tuple], show_shapes: bool,
                scale: Optional[_Scale]) -> dict:
    """Op: rounded box "Op / shape"; parameter: bold box in its colour; constant: small grey text."""
    shape = _shape(t) if show_shapes else ""
    if t.grad_fn is None and not t.requires_grad:
        value = f"{t.data.item():.4g}" if t.size == 1 and np.issubdtype(t.dtype, np.number) else ""
        return dict(_CONST_STYLE, label=" ".join(s for s in (name or value or "const", shape) if s))
    if t.grad_fn is None:
        lines, attrs = [name or "param"], dict(_PARAM_STYLE, fillcolor=colour[0], color=colour[1])
    else:
        # one group for all ops: dot then keeps the chain carrying h from step to step straight
        lines = [f"{name} = {t.grad_fn.name}" if name else t.grad_fn.name]
        attrs = dict(_OP_STYLE, group="ops")
    if shape:
        lines.append(shape)
    if scale is not None:
        norm = _grad_norm(t)
        if norm is None:
            attrs["style"] += ",dashed"
        else:
            lines.append(f"‖g‖={norm:.1e}")
            attrs["fillcolor"], attrs["fontcolor"] = scale.colours(norm)
    attrs["label"] = "\\n".join(lines)
    return attrs


def _step_boxes(steps: list, step_ids: dict, tensors: list, home: dict, root: Tensor,
                scale: Optional[_Scale]) -> list:
    """One box per time step; with grads, coloured by the gradient norm of all that leaves the step
    (for an RNN: dL/dh_t and the step's outputs)."""
    ops = dict.fromkeys(steps, 0)
    leaving: dict = {step: {} for step in steps}
    for t in tensors:
        step = _top(home[id(t)])
        if t.grad_fn is None:
            continue
        ops[step] = ops.get(step, 0) + 1
        for p in t.grad_fn.parents:
            if _top(home[id(p)]) not in ("", step):
                leaving[_top(home[id(p)])][id(p)] = p
    if _top(home[id(root)]):
        leaving[_top(home[id(root)])][id(root)] = root
    boxes = []
    for step in steps:
        attrs, lines = dict(_STEP_STYLE), [step, f"{ops[step]} ops"]
        outs = [_grad_norm(t) for t in leaving[step].values() if t.grad is not None]
        if scale is not None and outs:
            norm = math.sqrt(sum(n * n for n in outs))
            lines.append(f"‖g‖={norm:.1e}")
            attrs["fillcolor"], attrs["fontcolor"] = scale.colours(norm)
        attrs["label"] = "\\n".join(lines)
        boxes.append((step_ids[step], attrs))
    return boxes


def _emit(graph: Any, scope: str, members: dict, children: dict, counter: Iterator[int]) -> None:
    """The nodes of scope, then one cluster per child scope in natural order (t=9 before t=10).
    Recursion depth is the nesting of scopes (one or two), not the depth of the graph."""
    for node_id, attrs in members.get(scope, []):
        graph.node(node_id, **attrs)
    for child in sorted(children.get(scope, ()), key=_natural):
        with graph.subgraph(name=f"cluster_{next(counter)}") as sub:
            sub.attr(label=child.rsplit("/", 1)[-1], fillcolor="#f6f6f6" if "/" not in child else "#ebebeb",
                     **_CLUSTER_STYLE)
            _emit(sub, child, members, children, counter)


def _scope_tree(scopes: Any) -> dict:
    """parent scope -> its child scopes, e.g. "" -> {"t=3"}, "t=3" -> {"t=3/lstm"}."""
    children: dict = {}
    for scope in scopes:
        parts = scope.split("/") if scope else []
        for k in range(len(parts)):
            children.setdefault("/".join(parts[:k]), set()).add("/".join(parts[:k + 1]))
    return children


def draw_unrolled(model: Any, seq_len: int, *, batch: Optional[int] = None,
                  rng: Optional[np.random.Generator] = None, folded: bool = False, **draw_kw: Any) -> Any:
    """A CharRNN unrolled over seq_len steps on random input (rng, seed 0 by default) with its
    cross-entropy as the root; folded=True draws the book's one-cell picture (fig. 10.3, left) instead."""
    from . import nn  # viz -> nn only here, so drawing a hand-built graph needs no nn

    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"draw_unrolled: seq_len must be a positive int, got {seq_len!r}")
    named = model.named_parameters() if hasattr(model, "named_parameters") else {}
    if "out.W" not in named:
        raise TypeError(f"draw_unrolled: expects an nn.CharRNN (with parameter out.W), got {type(model).__name__}")
    if folded:
        extra = set(draw_kw) - {"rankdir"}
        if extra:
            raise TypeError(f"draw_unrolled: folded=True takes only rankdir, not {', '.join(sorted(extra))}")
        return _draw_folded(named, int(seq_len), draw_kw.get("rankdir", "LR"))
    rng = np.random.default_rng(0) if rng is None else rng
    vocab = named["out.W"].shape[0]
    size = (seq_len,) if batch is None else (seq_len, batch)
    logits, _ = model(rng.integers(0, vocab, size=size))
    loss = nn.cross_entropy(logits, rng.integers(0, vocab, size=size))
    loss.name = "loss"
    if not draw_kw.get("grads"):
        return draw(loss, params=named, **draw_kw)
    # grads=True: the picture shows this dummy loss's gradients alone, and the model's own .grad
    # (say, mid-training) are put back afterwards
    kept = {name: p.grad for name, p in named.items()}
    try:
        for p in named.values():
            p.grad = None
        retain_all_grads(loss).backward()
        return draw(loss, params=named, **draw_kw)
    finally:
        for name, p in named.items():
            p.grad = kept[name]


def _draw_folded(named: dict, seq_len: int, rankdir: str) -> Any:
    """One cell with a delayed self-loop on its state: the circuit diagram of DL book fig. 10.3 (left)."""
    graphviz = _graphviz()
    if rankdir not in _RANKDIRS:
        raise ValueError(f"draw_unrolled: rankdir must be one of {', '.join(_RANKDIRS)}, got {rankdir!r}")

    def weight(book: str, name: str) -> str:
        return f"{book} = {name} {_shape(named[name])}" if book else f"{name} {_shape(named[name])}"

    dot = graphviz.Digraph(graph_attr=dict(rankdir=rankdir, fontname="Helvetica", bgcolor="white",
                                           nodesep="0.5", ranksep="0.6", fontsize="11", labelloc="b",
                                           label=f"■ = a delay of one time step; unfolded over "
                                                 f"{seq_len} steps this is draw_unrolled(model, {seq_len})"),
                           node_attr=dict(fontname="Helvetica", shape="circle", style="filled",
                                          fillcolor="#ffffff", fontsize="12", width="0.55", fixedsize="true"),
                           edge_attr=dict(fontname="Helvetica", fontsize="10", color=_EDGE_COLOUR,
                                          arrowsize="0.7"))
    var = "<{}<sup>(t)</sup>>".format
    delay = dict(shape="square", style="filled", fillcolor="#000000", label="", width="0.14")
    dot.node("x", var("x"))
    dot.node("o", var("o"))
    dot.node("L", var("L"), fillcolor="#eeeeee")
    dot.node("y", var("y"))
    if "cell.W_hh" in named:
        dot.node("h", var("h"), fillcolor=_PARAM_COLOURS[2][0])
        dot.edge("x", "h", label=weight("U", "cell.W_xh"))
        dot.edge("h", "dh", arrowhead="none")
        dot.node("dh", **delay)
        dot.edge("dh", "h", label=weight("W", "cell.W_hh"), color=_PARAM_COLOURS[2][1], penwidth="1.5")
    elif "cell.b_x" in named:  # GRU: one state h, gated by r and z, no separate internal state
        dot.node("h", var("h"), fillcolor=_PARAM_COLOURS[2][0])
        dot.edge("x", "h", label=weight("", "cell.W_x") + "\\ngates r, z, n")
        dot.edge("h", "dh", arrowhead="none")
        dot.node("dh", **delay)
        dot.edge("dh", "h", label=weight("", "cell.W_h") + "\\nh = (1 - z) · n + z · h(t-1)",
                 color=_PARAM_COLOURS[2][1], penwidth="1.5")
    elif "cell.W_h" in named:
        dot.node("s", var("s"), fillcolor=_PARAM_COLOURS[0][0])
        dot.node("h", var("h"), fillcolor=_PARAM_COLOURS[2][0])
        dot.edge("x", "s", label=weight("", "cell.W_x") + "\\ngates i, f, g, o")
        dot.edge("s", "ds", arrowhead="none")
        dot.node("ds", **delay)
        dot.edge("ds", "s", label="× f  (forget gate)", color=_PARAM_COLOURS[0][1], penwidth="1.5")
        dot.edge("s", "h", label="h = o · tanh(s)")
        dot.edge("h", "dh", arrowhead="none")
        dot.node("dh", **delay)
        dot.edge("dh", "s", label=weight("", "cell.W_h"), color=_PARAM_COLOURS[2][1], penwidth="1.5")
    else:
        raise ValueError("draw_unrolled: folded=True draws a CharRNN with cell='rnn', 'lstm' or 'gru' "
                         f"(parameter cell.W_hh or cell.W_h), got {', '.join(named) or 'no parameters'}")
    dot.edge("h", "o", label=weight("V", "out.W"))
    dot.edge("o", "L")
    dot.edge("y", "L")
    return dot


def save(digraph: Any, path: Union[str, Path]) -> Path:
    """Write digraph to path as .svg, .png, .pdf or .dot (by the suffix); returns the path written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"save: cannot write {str(path)!r}: the suffix must be one of {', '.join(_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".dot":
        path.write_text(digraph.source, encoding="utf-8")
        return path
    graphviz = _graphviz()
    if shutil.which("dot") is not None:
        try:
            path.write_bytes(digraph.pipe(format=suffix[1:]))
            return path
        except graphviz.ExecutableNotFound:
            pass
    dot_path = path.with_suffix(".dot")
    dot_path.write_text(digraph.source, encoding="utf-8")
    raise GraphvizNotFound(f"save: Graphviz's dot program was not found, so the DOT source was written to "
                           f"{dot_path} instead; install Graphviz ('apt-get install graphviz' or "
                           f"'brew install graphviz') and run: dot -T{suffix[1:]} {dot_path} -o {path}")
