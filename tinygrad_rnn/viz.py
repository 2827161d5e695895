"""Pictures of the computation graph with Graphviz (imported only when drawing), after micrograd's draw_dot
and PyTorchViz's make_dot: one node per op, each parameter ONE node with an edge to every op that uses it,
time steps as clusters side by side in time order; and the Deep Learning book's unfolded graph (Fig. 10.3)
of a CharRNN. To colour the ops too with draw(grads=True), call retain_all_grads(root) before backward().
"""
from __future__ import annotations

import itertools
import math
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from .engine import Function, walk
from .tensor import Tensor

__all__ = ["draw", "draw_unrolled", "save", "retain_all_grads", "GraphvizNotFound", "GraphvizError"]

_FORMATS = (".svg", ".png", ".pdf", ".dot")
_RANKDIRS = ("LR", "RL", "TB", "BT")

# One colour per weight, the same in every picture (ops, book, folded): the book's letter decides it, so
# U = W_xh is green and W = W_hh orange wherever they appear; other parameters take the extra colours in
# drawing order. (node fill, edge colour)
_ROLE_COLOURS = {"U": ("#d6efcf", "#3a8a3a"), "W": ("#fde4b3", "#c98200"), "V": ("#f4d3e6", "#b0407f"),
                 "b": ("#cfe3f7", "#2f6fb0"), "c": ("#e3dcf5", "#6a4fb3")}
_EXTRA_COLOURS = [("#f9d5cc", "#c0452a"), ("#d2eeee", "#2a8a8a"), ("#ece3d0", "#86692c"),
                  ("#e0e0e0", "#555555"), ("#fbe0f0", "#a03070"), ("#dde8c8", "#5f7f1f")]
# the book's letter of a parameter, by its full name or its last part: U = W_xh, W = W_hh, V = out.W, ...
_BOOK_LETTERS = {"out.W": "V", "out.b": "c", "W_xh": "U", "W_x": "U", "W_hh": "W", "W_h": "W", "W_hy": "V",
                 "b_h": "b", "b": "b", "b_x": "b", "b_y": "c"}
# ColorBrewer OrRd: pale for a small gradient, dark red for a large one (log scale).
_GRAD_RAMP = ["#fff7ec", "#fee8c8", "#fdd49e", "#fdbb84", "#fc8d59", "#ef6548", "#d7301f", "#990000"]
_OP_STYLE = dict(shape="box", style="rounded,filled", fillcolor="#ffffff", color="#666666",
                 fontsize="10", margin="0.08,0.03", height="0.3")
_PARAM_STYLE = dict(shape="box", style="filled,bold", fontname="Helvetica-Bold", fontsize="11",
                    penwidth="2", margin="0.1,0.05")
_CONST_STYLE = dict(shape="plaintext", fontsize="8", fontcolor="#888888", height="0.2", margin="0.02")
_NAMED_CONST_STYLE = dict(fontsize="10", fontcolor="#000000")
_STEP_STYLE = dict(shape="box3d", style="filled", fillcolor="#f4f4f4", color="#666666", fontsize="11")
_ANCHOR_STYLE = dict(shape="point", style="invis", width="0", label="")
_CLUSTER_STYLE = dict(style="rounded,filled", color="#c8c8c8", fontsize="11", fontcolor="#555555",
                      labeljust="l")
_EDGE_COLOUR = "#555555"


class GraphvizNotFound(RuntimeError):
    """Graphviz's `dot` program is missing, so save() wrote only the .dot source."""


class GraphvizError(RuntimeError):
    """Graphviz's `dot` failed on a picture (its first complaint is the message)."""


def _graphviz() -> Any:
    try:
        import graphviz
    except ImportError:
        raise ImportError("viz: drawing needs the graphviz Python package: pip install graphviz") from None
    return graphviz


def _walk(root: Tensor) -> list:
    """Every tensor of root's graph, inputs before the ops that use them (the engine's walk, stable order);
    an op's output as the graph's stand-in for it (its name, shape and retained grad)."""
    return [root if v is root._ctx else v.output() if isinstance(v, Function) else v for v in walk(root)]


def retain_all_grads(root: Tensor) -> Tensor:
    """Call retain_grad() on every op output of root's graph, so draw(grads=True) can colour the ops."""
    for t in _walk(root):
        if t.grad_fn is not None:
            t.retain_grad()
    return root


def _natural(scope: str) -> list:
    """Sort key that puts "t=10" after "t=9"."""
    # re.split with a group alternates text and decimal runs, so ints and strs never meet in a comparison
    # ("h1²": "²" is a digit to str.isdigit but not a decimal, and stays text)
    return [int(part) if k % 2 else part for k, part in enumerate(re.split(r"(\d+)", scope))]


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


def _colours(names: list) -> list:
    """(fill, edge colour) for each parameter name (None for unnamed), in drawing order: the book's letter
    picks the colour; a second weight with the same letter, or one without, takes the next extra colour."""
    taken, extra, out = set(), itertools.cycle(_EXTRA_COLOURS), []
    for name in names:
        letter = _letter(name)
        if letter is not None and letter not in taken:
            taken.add(letter)
            out.append(_ROLE_COLOURS[letter])
        else:
            out.append(next(extra))
    return out


def _letter(name: Optional[str]) -> Optional[str]:
    """The Deep Learning book's letter for a parameter name: "cell.W_hh" -> "W", "out.W" -> "V"."""
    if not name:
        return None
    return _BOOK_LETTERS.get(name) or (None if name.startswith("out.") else
                                       _BOOK_LETTERS.get(name.rsplit(".", 1)[-1]))


def _weight_colour(name: str) -> str:
    """The edge colour of a parameter in every picture (and in the analysis plots): "cell.W_hh" -> orange."""
    letter = _letter(name)
    return _ROLE_COLOURS[letter][1] if letter else _EDGE_COLOUR


def _text(s: str) -> str:
    """User text for a DOT label: backslashes doubled (a trailing one would swallow the closing quote);
    quotes are escaped by the graphviz package, and the label is marked not-HTML by _label."""
    return str(s).replace("\\", "\\\\")


def _label(*lines: str) -> str:
    """Lines of (unescaped) text as one plain DOT label, never read as HTML even if it looks like <b>."""
    return _graphviz().nohtml("\\n".join(_text(line) for line in lines))


def draw(root: Tensor, *, params: Optional[dict] = None, show_shapes: bool = True,
         group_by_scope: bool = True, grads: bool = False, rankdir: str = "LR",
         collapse_scopes: bool = False) -> Any:
    """The graph that produced root as a graphviz.Digraph: ops, shared parameters, time-step clusters.

    Data flows along rankdir inside a step; the time steps sit side by side across it, in time order
    (rankdir="TB": steps are columns left to right, parameters in one row above them). Clusters carry the
    scope's own label, except in a CharRNN's graph: its scopes count from "t=0" while its tensors are named
    as the book counts (h(1) made in scope "t=0"), so its steps are labelled t = 1 … T as in the book.
    """
    return _draw(root, params=params, show_shapes=show_shapes, group_by_scope=group_by_scope, grads=grads,
                 rankdir=rankdir, collapse_scopes=collapse_scopes, book_time=None)


def _draw(root: Tensor, *, params: Optional[dict], show_shapes: bool, group_by_scope: bool, grads: bool,
          rankdir: str, collapse_scopes: bool, book_time: Optional[bool] = False,
          narrow: Optional[bool] = None) -> Any:
    """draw(), plus: book_time counts steps from 1 as the book does (cluster "t=0" is labelled t=1 and a
    gate named "f" there reads f(1)); narrow stacks each step's ops in one line in the order they ran
    (None: when the steps side by side would be wider than _MAX_ACROSS nodes)."""
    graphviz = _graphviz()
    if not isinstance(root, Tensor):
        raise TypeError(f"draw: expects the Tensor at the root of a graph, got {type(root).__name__}")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"draw: rankdir must be one of {', '.join(_RANKDIRS)}, got {rankdir!r}")
    tensors = _walk(root)
    if book_time is None:  # a CharRNN's graph: h(k + 1) made in scope "t=k"
        book_time = any(t.grad_fn is not None and t.name in (f"h({_book_step(_top(t.grad_fn.scope))})",
                                                             f"[h; s]({_book_step(_top(t.grad_fn.scope))})")
                        and _top(t.grad_fn.scope)[2:].isdecimal() for t in tensors)
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

    # nslimit caps dot's placement iterations: big pictures take seconds instead of minutes and look the same
    dot = graphviz.Digraph(graph_attr=dict(rankdir=rankdir, fontname="Helvetica", bgcolor="white",
                                           nodesep="0.2", ranksep="0.3", newrank="true", nslimit="1"),
                           node_attr=dict(fontname="Helvetica"),
                           edge_attr=dict(color=_EDGE_COLOUR, arrowsize="0.6"))
    params_in_order = [t for t in tensors if t.grad_fn is None and t.requires_grad]
    # colours over the params dict's order first (a model's named_parameters), then the rest as drawn, so
    # a weight keeps its colour in every picture of the model, fused or not, book or ops
    ranked = sorted(params_in_order, key=lambda t: (id(t) not in names, list(names).index(id(t))
                                                     if id(t) in names else 0))
    colours = dict(zip((id(t) for t in ranked), _colours([names.get(id(t)) or t.name for t in ranked])))
    step_of = {step: k for k, step in enumerate(steps)}
    if narrow is None:
        narrow = bool(steps) and not collapse_scopes and _across(tensors, home, steps) > _MAX_ACROSS
    members = {}
    for t in tensors:
        if end[id(t)] == ids[id(t)]:
            name = names.get(id(t)) or t.name
            if book_time and name and _BARE.fullmatch(name) and _top(home[id(t)]) in step_of:
                name = f"{name}({_book_step(_top(home[id(t)]))})"
            attrs = _node_attrs(t, name, colours.get(id(t)), show_shapes, scale)
            if t is root:
                attrs["peripheries"] = "2"
            if t.grad_fn is not None and home[id(t)]:
                attrs["group"] = step_ids[_top(home[id(t)])]  # straight edges down a step's column
                if narrow:
                    attrs.update(fontsize="9", margin="0.04,0.02")
            members.setdefault(home[id(t)], []).append((ids[id(t)], attrs))
    label = _book_scope if book_time else str
    if collapse_scopes:
        members.setdefault("", []).extend(_step_boxes(steps, step_ids, tensors, home, root, scale, label))
    else:
        for step in steps:
            members.setdefault(step, []).append((step_ids[step], _ANCHOR_STYLE))
    _emit(dot, "", members, _scope_tree(members), itertools.count(), label)

    drawn, starts = set(), {}
    # with time steps, a parameter's edges leave the ranking alone: the parameters stay in the top row
    free = dict(constraint="false") if steps and group_by_scope else {}
    for t in tensors:
        if t.grad_fn is None:
            continue
        step = _top(home[id(t)])
        for p in t.grad_fn.parents:
            src, dst = end[id(p)], end[id(t)]
            carried = p.grad_fn is not None and "" != _top(home[id(p)]) != step != ""
            if src == dst or (collapse_scopes and (src, dst) in drawn):
                continue
            drawn.add((src, dst))
            colour = colours.get(id(p))
            if colour is not None:
                dot.edge(src, dst, color=colour[1], penwidth="1.3", **free)
            elif carried and not collapse_scopes:
                # the state handed to the next step: bold, and free of ranking, so that every step
                # keeps the same rows and the steps stand side by side instead of in a staircase
                dot.edge(src, dst, style="bold", constraint="false")
            elif carried:
                dot.edge(src, dst, style="bold")
            else:
                dot.edge(src, dst)
        if step and not collapse_scopes and not any(p.grad_fn is not None and _top(home[id(p)]) == step
                                                    for p in t.grad_fn.parents):
            starts.setdefault(step, []).append(t)  # the step's first ops: they hang from its anchor
    if steps:
        # The steps side by side across the flow, in time order. dot orders clusters by its crossing
        # minimisation, which ignores flat edges between clusters, so an invisible spine of top-level
        # nodes, ordered by flat edges (which dot keeps), holds one edge to each step's anchor: any other
        # order of the steps would cross those edges. Anchors (or boxes) share one rank; the parameters
        # take the row between the spine and the steps.
        spine = [f"p{k}" for k in range(len(steps))]
        top = [ids[id(t)] for t in params_in_order] if group_by_scope else []
        with dot.subgraph() as row:
            row.attr(rank="min")
            for k, node_id in enumerate(spine):
                row.node(node_id, **_ANCHOR_STYLE)
                if k:
                    row.edge(spine[k - 1], node_id, style="invis")
        with dot.subgraph() as row:
            row.attr(rank="same")
            for k, step in enumerate(steps):
                row.node(step_ids[step])
                if k:
                    row.edge(step_ids[steps[k - 1]], step_ids[step], style="invis")
        for node_id, step in zip(spine, steps):
            dot.edge(node_id, step_ids[step], style="invis", weight="10", minlen="2")
        if top:
            # the parameters: one row between the spine and the steps, above the middle of the picture
            middle = spine[(len(spine) - 1) // 2], step_ids[steps[(len(steps) - 1) // 2]]
            with dot.subgraph() as row:
                row.attr(rank="same")
                for k, node_id in enumerate(top):
                    row.node(node_id)
                    if k:  # side by side, in a block
                        row.edge(top[k - 1], node_id, style="invis", weight="5")
            centre = top[len(top) // 2]
            dot.edge(middle[0], centre, style="invis")
            dot.edge(centre, middle[1], style="invis")
        if top and not collapse_scopes:
            # a parameter's edges take no part in the ranking and run straight: else dot routes each
            # of its T edges through every rank in between, and the picture grows wide. Drawn first,
            # they pass under the nodes they cross instead of through their labels.
            dot.attr(splines="line", outputorder="edgesfirst")
    if steps and not collapse_scopes:
        for step in steps:
            for t in starts.get(step, []):
                dot.edge(step_ids[step], ids[id(t)], style="invis")
        if narrow:
            # one line per step: each op one rank below the op that ran before it; the long edges
            # inside a step then run beside it, so keep them close
            dot.attr(nodesep="0.06", size=_MAX_SIZE)
            ops: dict = {}
            for t in tensors:
                if t.grad_fn is not None and _top(home[id(t)]) in step_of:
                    ops.setdefault(_top(home[id(t)]), []).append(t)
            for line in ops.values():
                line.sort(key=lambda t: t.grad_fn.seq)
                for a, b in zip(line, line[1:]):
                    dot.edge(ids[id(a)], ids[id(b)], style="invis")
    if scale is not None:
        missing = any(t.grad is None and (t.requires_grad or t.grad_fn is not None) for t in tensors)
        dot.node("legend", label=scale.legend(missing), shape="plaintext", fontsize="9")
    return dot


# a name that pictures of an unrolled model complete with the step: the gates "f", "g", "q", "s̃" -> f(2)
_BARE = re.compile("[A-Za-z]\u0303?")
# widest row of ops (all steps side by side) before each step is drawn as one line: ~4,000 px
_MAX_ACROSS = 28
# and a picture that is still wider is scaled to 4,000 px (41.6 in at 96 dpi)
_MAX_SIZE = "41.6,1000"


def _book_step(step: str) -> str:
    """The book's time of a scope "t=k": k + 1 (the book's h(0) is the initial state)."""
    k = step.partition("=")[2]
    return str(int(k) + 1) if step.startswith("t=") and k.isdecimal() else step


def _book_scope(scope: str) -> str:
    return f"t={_book_step(scope)}" if scope.startswith("t=") and scope[2:].isdecimal() else scope


def _across(tensors: list, home: dict, steps: list) -> int:
    """How many ops the steps put side by side: per step the most ops at one depth, summed over steps."""
    depth, widest = {}, dict.fromkeys(steps, 0)
    for t in tensors:  # inputs come before their users
        if t.grad_fn is None or not home[id(t)]:
            continue
        step = _top(home[id(t)])
        depth[id(t)] = 1 + max((depth.get(id(p), 0) for p in t.grad_fn.parents
                                if _top(home.get(id(p), "")) == step), default=0)
    rows: dict = {}
    for t in tensors:
        if id(t) in depth:
            key = (_top(home[id(t)]), depth[id(t)])
            rows[key] = rows.get(key, 0) + 1
    for (step, _), n in rows.items():
        widest[step] = max(widest.get(step, 0), n)
    return sum(widest.values())


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
    """Op: rounded box "name = Op / shape"; parameter: bold box in its colour; constant: small grey text
    (a named one, such as the initial state h(0), in full size)."""
    shape = _shape(t) if show_shapes else ""
    if t.grad_fn is None and not t.requires_grad:
        value = f"{t.data.item():.4g}" if t.size == 1 and np.issubdtype(t.dtype, np.number) else ""
        attrs = dict(_CONST_STYLE, **(_NAMED_CONST_STYLE if name else {}))
        return dict(attrs, label=_label(" ".join(s for s in (name or value or "const", shape) if s)))
    if t.grad_fn is None:
        lines, attrs = [name or "param"], dict(_PARAM_STYLE, fillcolor=colour[0], color=colour[1])
    else:
        op = t.grad_fn.name + _index_text(getattr(t.grad_fn, "index", None))
        lines = [f"{name} = {op}" if name else op]
        attrs = dict(_OP_STYLE)
    if shape:
        lines.append(shape)
    if scale is not None:
        norm = _grad_norm(t)
        if norm is None:
            attrs["style"] += ",dashed"
        else:
            lines.append(f"‖g‖={norm:.1e}")
            attrs["fillcolor"], attrs["fontcolor"] = scale.colours(norm)
    attrs["label"] = _label(*lines)
    return attrs


def _index_text(index: Any) -> str:
    """An indexing op's basic index as Python writes it, " […, 3:6]", so a gate's slice reads as such;
    "" for none, and " [array]" for integer arrays."""
    if index is None:
        return ""
    parts = []
    for part in index if isinstance(index, tuple) else (index,):
        if part is Ellipsis:
            parts.append("…")
        elif isinstance(part, slice):
            text = ("" if part.start is None else str(part.start)) + ":" + ("" if part.stop is None else str(part.stop))
            parts.append(text + ("" if part.step is None else f":{part.step}"))
        elif isinstance(part, (int, np.integer)):
            parts.append(str(int(part)))
        else:
            parts.append("array")
    return f" [{', '.join(parts)}]"


def _step_boxes(steps: list, step_ids: dict, tensors: list, home: dict, root: Tensor,
                scale: Optional[_Scale], label: Any = str) -> list:
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
        attrs, lines = dict(_STEP_STYLE), [label(step), f"{ops[step]} ops"]
        outs = [_grad_norm(t) for t in leaving[step].values() if t.grad is not None]
        if scale is not None and outs:
            norm = math.sqrt(sum(n * n for n in outs))
            lines.append(f"‖g‖={norm:.1e}")
            attrs["fillcolor"], attrs["fontcolor"] = scale.colours(norm)
        attrs["label"] = _label(*lines)
        boxes.append((step_ids[step], attrs))
    return boxes


def _emit(graph: Any, scope: str, members: dict, children: dict, counter: Iterator[int],
          label: Any = str) -> None:
    """The nodes of scope, then one cluster per child scope in natural order (t=9 before t=10).
    Recursion depth is the nesting of scopes (one or two), not the depth of the graph."""
    for node_id, attrs in members.get(scope, []):
        graph.node(node_id, **attrs)
    for child in sorted(children.get(scope, ()), key=_natural):
        with graph.subgraph(name=f"cluster_{next(counter)}") as sub:
            sub.attr(label=_label(label(child).rsplit("/", 1)[-1]),
                     fillcolor="#f6f6f6" if "/" not in child else "#ebebeb", **_CLUSTER_STYLE)
            _emit(sub, child, members, children, counter, label)


def _scope_tree(scopes: Any) -> dict:
    """parent scope -> its child scopes, e.g. "" -> {"t=3"}, "t=3" -> {"t=3/lstm"}."""
    children: dict = {}
    for scope in scopes:
        parts = scope.split("/") if scope else []
        for k in range(len(parts)):
            children.setdefault("/".join(parts[:k]), set()).add("/".join(parts[:k + 1]))
    return children


def draw_unrolled(model: Any, seq_len: int, *, style: str = "ops", grads: bool = False, loss: str = "sum",
                  batch: Optional[int] = None, rng: Optional[np.random.Generator] = None, folded: bool = False,
                  inputs: Any = None, targets: Any = None, **draw_kw: Any) -> Any:
    """A CharRNN unrolled over seq_len steps on random input (rng, np.random.default_rng(0) if not given) with its
    cross-entropy as the root, time running left to right and counted as in the book (t = 1 … seq_len).

    style="ops": the op graph as draw() makes it (rankdir "TB": steps as columns). style="book": the Deep
    Learning book's Fig. 10.3, one node per variable and step. folded=True: the one-cell circuit (Fig. 10.3,
    left). grads=True: ‖∂L/∂·‖ on the ops, on h(t) (book) or on the weights (folded); loss="last" uses only
    the last step's loss L(T). inputs and targets (int arrays (seq_len,) or (seq_len, B)) replace the
    random ones, so the picture's numbers are those of your own sequence.
    """
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"draw_unrolled: seq_len must be a positive int, got {seq_len!r}")
    if style not in _STYLES:
        raise ValueError(f"draw_unrolled: style must be one of {', '.join(_STYLES)}, got {style!r}")
    if loss not in _LOSSES:
        raise ValueError(f"draw_unrolled: loss must be one of {', '.join(_LOSSES)}, got {loss!r}")
    named = model.named_parameters() if hasattr(model, "named_parameters") else {}
    if "out.W" not in named or not hasattr(model, "unroll"):
        raise TypeError(f"draw_unrolled: expects an nn.CharRNN (with parameter out.W), got {type(model).__name__}")
    extra = set(draw_kw) - ({"rankdir"} if folded else set() if style == "book" else set(_DRAW_KW))
    if extra:
        what = "folded=True" if folded else f"style={style!r}"
        raise TypeError(f"draw_unrolled: {what} does not take {', '.join(sorted(extra))}")
    rng = np.random.default_rng(0) if rng is None else rng
    vocab = named["out.W"].shape[0]
    size = (int(seq_len),) if batch is None else (int(seq_len), batch)
    inputs = rng.integers(0, vocab, size=size) if inputs is None else _given("inputs", inputs, seq_len)
    targets = rng.integers(0, vocab, size=size) if targets is None else _given("targets", targets, seq_len)
    # grads: the picture shows this dummy loss's gradients alone, and the model's own .grad (say,
    # mid-training) are put back afterwards
    kept = {name: p.grad for name, p in named.items()}
    try:
        for p in named.values():
            p.grad = None
        if folded:
            return _draw_folded(model, named, inputs, targets, grads, loss, draw_kw.get("rankdir", "LR"))
        if style == "book":
            return _draw_book(model, named, inputs, targets, grads, loss)
        root = _unrolled_loss(model, inputs, targets, None, loss)[0]
        if grads:
            retain_all_grads(root).backward()
        return _draw(root, params=named, grads=grads, book_time=True,
                     **{k: draw_kw.get(k, v) for k, v in _DRAW_KW.items()})
    finally:
        for name, p in named.items():
            p.grad = kept[name]


def _given(what: str, idx: Any, seq_len: int) -> np.ndarray:
    """A given input or target sequence, checked against seq_len."""
    idx = np.asarray(idx)
    if idx.ndim not in (1, 2) or len(idx) != seq_len:
        raise ValueError(f"draw_unrolled: {what} must have shape (seq_len,) or (seq_len, B) with seq_len "
                         f"{seq_len}, got {idx.shape}")
    return idx


_STYLES = ("ops", "book")
_LOSSES = ("sum", "last")
_DRAW_KW = dict(show_shapes=True, group_by_scope=True, rankdir="TB", collapse_scopes=False)


def _unrolled_loss(model: Any, inputs: np.ndarray, targets: np.ndarray, state: Any, loss: str) -> tuple:
    """(loss, states, per-step losses or None): L = Σ_t L(t), or L(T) alone for loss="last"."""
    from . import nn  # viz -> nn only here, so drawing a hand-built graph needs no nn

    logits, states = model.unroll(inputs, state)
    if loss == "last":
        root = nn.cross_entropy(logits[-1], targets[-1])
    else:
        root = nn.cross_entropy(logits, targets)
    root.name = "L" if loss == "sum" else f"L({len(inputs)})"
    return root, states


def _zero_state(state: Any, requires_grad: bool) -> Any:
    """A zero state of the same structure as state (a Tensor or a tuple of them)."""
    if isinstance(state, Tensor):
        return Tensor(np.zeros(state.shape, dtype=state.dtype), requires_grad=requires_grad)
    return type(state)(_zero_state(s, requires_grad) for s in state)


def _book_weights(model: Any, named: dict, inputs: np.ndarray) -> tuple:
    """The book's letters on the cell's weights: (U names, W names, other cell parameter names). The
    built-in cells' names say it; a user-written cell's second step is read instead."""
    cell = [n for n in named if n.startswith("cell.")]
    U = [n for n in cell if _letter(n) == "U"]
    W = [n for n in cell if _letter(n) == "W"]
    if not U and not W:
        U, W = _read_weights(model, named, inputs)
    return U, W, [n for n in cell if n not in U and n not in W]


def _read_weights(model: Any, named: dict, inputs: np.ndarray) -> tuple:
    """(U names, W names) of a cell from its graph: a weight that meets only the input x(t) (through
    ops of its own) is a U, one that meets only h(t-1) is a W, one that meets both (a bias, or a weight
    on [x; h]) is neither."""
    idx = np.concatenate([inputs[:1], inputs[:1]]) if len(inputs) < 2 else inputs[:2]
    _, states = model.unroll(idx, None)
    vocab, names = named["out.W"].shape[0], {id(p): n for n, p in named.items() if n.startswith("cell.")}
    kinds: dict = {}  # tensor -> ("x" / "h" data it carries, parameter names that reached it without data)
    found: dict = {"x": [], "h": []}
    for t in _walk(model.hidden(states[1])):
        if t.grad_fn is None:
            onehot = (not t.requires_grad and t.ndim and t.shape[-1] == vocab and np.isin(t.data, (0, 1)).all()
                      and np.all(t.data.sum(axis=-1) == 1))
            kinds[id(t)] = (frozenset("x" if onehot else ""), frozenset([names[id(t)]] if id(t) in names else []))
        elif t.grad_fn.scope.split("/")[0] != "t=1":
            kinds[id(t)] = (frozenset("h"), frozenset())  # made by the first step: h(1) and what led to it
        else:
            data = frozenset().union(*(kinds[id(p)][0] for p in t.grad_fn.parents))
            weights = frozenset().union(*(kinds[id(p)][1] for p in t.grad_fn.parents))
            if data and len(data) == 1:
                for name in weights:
                    if named[name].ndim == 2:  # a bias added to W x alone is still a bias
                        found[next(iter(data))].append(name)
            kinds[id(t)] = (data, frozenset() if data else weights)
    x, h = set(found["x"]), set(found["h"])
    return [n for n in named if n in x - h], [n for n in named if n in h - x]


def _draw_book(model: Any, named: dict, inputs: np.ndarray, targets: np.ndarray, grads: bool, loss: str) -> Any:
    """The Deep Learning book's Fig. 10.3 (right), unfolded: x(t) at the bottom, h(t) on one row joined
    by W, o(t), L(t) and y(t) above, t = 1 … T left to right; an LSTM adds its internal state s(t)."""
    from . import no_grad

    graphviz = _graphviz()
    T = len(inputs)
    with no_grad():  # the shape of the model's state, to start from an explicit zero state h(0)
        probe = model.unroll(inputs[:1], None)[1][0]
    state0 = _zero_state(probe, grads)
    hidden = model.cell.hidden if hasattr(model.cell, "hidden") else (lambda s: s)
    lstm = isinstance(state0, tuple) and len(state0) == 2 and state0[0] is hidden(state0)
    root, states = _unrolled_loss(model, inputs, targets, state0, loss)
    hs = [hidden(state0)] + [hidden(s) for s in states]
    scale = None
    if grads:
        for h in hs[1:]:
            h.retain_grad()
        root.backward()
        scale = _Scale([_grad_norm(h) for h in hs])

    U, W, other = _book_weights(model, named, inputs)
    letters = {"U": U, "W": W, "V": ["out.W"]}
    # the LSTM's cell input: the book's σ (cell_input="sigmoid", eq. 10.41) or PyTorch's tanh
    act = "σ" if getattr(model.cell, "cell_input", "tanh") == "sigmoid" else "tanh"
    # the colours the op-level picture gives these weights: the same rule over the same order
    palette = dict(zip(named, (edge for _, edge in _colours(list(named)))))
    colour = {k: palette.get(v[0], _EDGE_COLOUR) if v else _EDGE_COLOUR for k, v in letters.items()}

    def weight(letter: str) -> dict:
        names = letters[letter]
        text = f"{letter} = {', '.join(names)}" if names else letter
        return dict(label=_label(text), color=colour[letter], fontcolor=colour[letter], penwidth="1.6")

    dot = graphviz.Digraph(graph_attr=dict(rankdir="BT", newrank="true", fontname="Helvetica", bgcolor="white",
                                           nodesep="0.5", ranksep="0.45", fontsize="11", labelloc="t",
                                           splines="line",
                                           label=_label(*_book_caption(named, other, lstm, loss, T, act))),
                           node_attr=dict(fontname="Helvetica", shape="circle", style="filled",
                                          fillcolor="#ffffff", fontsize="12", fixedsize="true",
                                          width=str(0.6 + 0.1 * max(len(str(T)) - 2, 0))),  # h(100) fits
                           edge_attr=dict(fontname="Helvetica", fontsize="10", color=_EDGE_COLOUR,
                                          arrowsize="0.7"))
    losses = range(1, T + 1) if loss == "sum" else [T]
    rows: dict = {key: [] for key in ("x", "s", "h", "o", "L", "y")}

    def node(kind: str, t: int, **attrs: Any) -> str:
        node_id = f"{kind}{t}"
        dot.node(node_id, **dict(dict(label=_label(f"{kind}({t})"), group=f"c{t}"), **attrs))
        rows[kind].append(node_id)
        return node_id

    for t in range(T + 1):
        h_attrs = {}
        if scale is not None and hs[t].grad is not None:
            norm = _grad_norm(hs[t])
            fill, font = scale.colours(norm)
            h_attrs = dict(label=_label(f"h({t})", f"{norm:.1e}"), fillcolor=fill, fontcolor=font,
                           width="0.75", fontsize="11")
        node("h", t, **h_attrs)
        if lstm:
            node("s", t, fillcolor="#f2f2f2")
        if t == 0:
            continue
        node("x", t, fillcolor="#f2f2f2")
        node("o", t)
        if t in losses:
            node("L", t, fillcolor="#eeeeee")
            node("y", t, shape="plaintext")
            dot.edge(f"o{t}", f"L{t}")
            dot.edge(f"L{t}", f"y{t}", dir="back")  # y(t) above L(t), its arrow pointing down into L(t)
        dot.edge(f"h{t}", f"o{t}", **weight("V"))
        if lstm:
            u = weight("U")
            u["label"] = _label(*([f"U = {', '.join(letters['U'])}"] if letters["U"] else ["U"]),
                                f"+ g({t}) × {act}(…)")
            dot.edge(f"x{t}", f"s{t}", **u)
            # h(t-1) -> s(t) runs against the rows, so it takes no part in the ranking; its label sits
            # beside it (xlabel) instead of in a rank of its own, where dot stacks them over each other
            w = weight("W")
            dot.edge(f"h{t - 1}", f"s{t}", constraint="false", xlabel=w.pop("label"), **w)
            dot.edge(f"s{t - 1}", f"s{t}", label=_label(f"× f({t})"), style="bold")
            dot.edge(f"s{t}", f"h{t}", label=_label(f"tanh, × q({t})"))
        else:
            dot.edge(f"x{t}", f"h{t}", **weight("U"))
            dot.edge(f"h{t - 1}", f"h{t}", **weight("W"))
    for kind, ids in rows.items():
        if not ids:
            continue
        with dot.subgraph() as row:  # one row per variable, its nodes in time order: by construction
            row.attr(rank="same")
            for a, b in zip(ids, ids[1:]):
                row.edge(a, b, style="invis")
    if scale is not None:
        dot.node("legend", label=scale.legend(False).replace("‖∂L/∂node‖", "‖∂L/∂h(t)‖"), shape="plaintext",
                 fontsize="9", fixedsize="false", style="")
    return dot


def _book_caption(named: dict, other: list, lstm: bool, loss: str, T: int, act: str = "tanh") -> list:
    """The picture's title lines: what is shared, what the loss is, where the other parameters act."""
    total = "the loss L = Σ L(t)" if loss == "sum" else f"the loss L = L({T}) only"
    names = [n for n in other + ["out.b"] if n in named]
    letters = [_letter(n) for n in names]
    # the book's letter where it names one parameter; two biases (a GRU's b_x and b_h) keep their own names
    rest = [f"{k} = {n}" if k in ("b", "c") and letters.count(k) == 1 else n for n, k in zip(names, letters)]
    lines = [f"the same U, W, V at every step; {total}; also {', '.join(rest)}"]
    if lstm:  # the book's letters, eq. 10.40-10.44: f forget, g external input, q output gate, s the state
        lines += [f"s(t) = f(t) s(t−1) + g(t) {act}(b + U x(t) + W h(t−1)),   h(t) = tanh(s(t)) q(t)",
                  "gates f(t), g(t), q(t) = σ(b' + U' x(t) + W' h(t−1)), each with its own rows of U, W, b",
                  "cell input σ: the book's LSTM (eq. 10.41)" if act == "σ" else
                  "cell input tanh: PyTorch's LSTM (the book's eq. 10.41 has σ: cell_input=\"sigmoid\")"]
    return lines


def _draw_folded(model: Any, named: dict, inputs: np.ndarray, targets: np.ndarray, grads: bool, loss: str,
                 rankdir: str) -> Any:
    """One cell with a delayed self-loop on its state: the circuit diagram of DL book fig. 10.3 (left).
    grads=True puts ‖∂L/∂θ‖ on each weight: the sum over all steps of the unrolled graph."""
    graphviz = _graphviz()
    if rankdir not in _RANKDIRS:
        raise ValueError(f"draw_unrolled: rankdir must be one of {', '.join(_RANKDIRS)}, got {rankdir!r}")
    seq_len = len(inputs)
    if grads:
        _unrolled_loss(model, inputs, targets, None, loss)[0].backward()
    U, W, _ = _book_weights(model, named, inputs)
    letters = {"U": U, "W": W, "V": ["out.W"]}

    def weight(letter: str, extra: str = "") -> dict:
        names = letters[letter]
        if not names:  # a user-written cell: its weights have no book letter
            return dict(label=_label(letter, *extra.split("\n")[1:]), penwidth="1.5")
        lines = [f"{letter} = {name} {_shape(named[name])}" for name in names]
        if grads:
            lines += [f"‖∂L/∂{name}‖ = {np.linalg.norm(named[name].grad):.2e}" for name in names]
        c = _colours(names[:1])[0][1]
        return dict(label=_label(*lines, *extra.split("\n")[1:]), color=c, fontcolor=c, penwidth="1.5")

    caption = (f"■ = a delay of one time step; unfolded over {seq_len} steps this is "
               f"draw_unrolled(model, {seq_len})")
    if grads:
        caption += f"; each ‖∂L/∂θ‖ sums the gradient of all {seq_len} steps' copies of θ"
    dot = graphviz.Digraph(graph_attr=dict(rankdir=rankdir, fontname="Helvetica", bgcolor="white",
                                           nodesep="0.5", ranksep="0.6", fontsize="11", labelloc="b",
                                           label=_label(caption)),
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
    h_fill = _ROLE_COLOURS["W"][0]
    lstm = getattr(model, "cell_type", None) == "lstm"
    if not lstm:
        dot.node("h", var("h"), fillcolor=h_fill)
        dot.edge("x", "h", **weight("U", "\ngates r, z, n" if getattr(model, "cell_type", None) == "gru" else ""))
        dot.edge("h", "dh", arrowhead="none")
        dot.node("dh", **delay)
        gru = getattr(model, "cell_type", None) == "gru"  # one state h, gated by r and z
        dot.edge("dh", "h", **weight("W", "\nh = (1 - z) · n + z · h(t-1)" if gru else ""))
    else:
        dot.node("s", var("s"), fillcolor="#f2f2f2")
        dot.node("h", var("h"), fillcolor=h_fill)
        act = "σ" if getattr(model.cell, "cell_input", "tanh") == "sigmoid" else "tanh"
        dot.edge("x", "s", **weight("U", f"\ngates f, g, q; cell input {act}"))
        dot.edge("s", "ds", arrowhead="none")
        dot.node("ds", **delay)
        dot.edge("ds", "s", label="× f  (forget gate)", style="bold", penwidth="1.5")
        dot.edge("s", "h", label="h = tanh(s) · q")
        dot.edge("h", "dh", arrowhead="none")
        dot.node("dh", **delay)
        dot.edge("dh", "s", **weight("W"))
    dot.edge("h", "o", **weight("V"))
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
            # the whole source as one input, not line by line as digraph.pipe() writes it: a dot that fails
            # before reading it all breaks that pipe, and its own error message was lost to BrokenPipeError
            source = digraph.source.encode("utf-8")
            path.write_bytes(graphviz.pipe(getattr(digraph, "engine", "dot"), suffix[1:], source, quiet=True))
            return path
        except graphviz.ExecutableNotFound:
            pass
        except graphviz.CalledProcessError as e:
            said = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
            raise GraphvizError(f"save: Graphviz's dot could not draw {path.name}: "
                                f"{said[0] if said else f'exit code {e.returncode}'}") from None
    dot_path = path.with_suffix(".dot")
    dot_path.write_text(digraph.source, encoding="utf-8")
    raise GraphvizNotFound(f"save: Graphviz's dot program was not found, so the DOT source was written to "
                           f"{dot_path} instead; install Graphviz ('apt-get install graphviz' or "
                           f"'brew install graphviz') and run: dot -T{suffix[1:]} {dot_path} -o {path}")
