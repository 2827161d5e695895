"""Graph pictures: the DOT text that viz.draw builds, parsed back into nodes, edges and clusters."""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn, viz

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|<.*>|[^ \]]+)')


class Parsed:
    """Nodes (id -> attrs, with the labels of the clusters around them), edges and clusters of a DOT text."""

    def __init__(self, dot):
        self.nodes, self.edges, self.clusters, self.graph = {}, [], [], {}
        open_clusters = []
        for line in dot.source.splitlines()[1:]:
            s = line.strip()
            if m := re.fullmatch(r"subgraph (cluster_\w+) \{", s):
                self.clusters.append({"label": None, "depth": len(open_clusters)})
                open_clusters.append(self.clusters[-1])
            elif s == "}":
                if open_clusters:
                    open_clusters.pop()
            elif m := re.fullmatch(r"(\w+) -> (\w+)(?: \[(.*)\])?", s):
                self.edges.append((m[1], m[2], _attrs(m[3] or "")))
            elif (m := re.fullmatch(r"graph \[(.*)\]", s)) and not open_clusters:
                self.graph = _attrs(m[1])
            elif (m := re.fullmatch(r"(\w+) \[(.*)\]", s)) and m[1] not in ("graph", "node", "edge"):
                self.nodes[m[1]] = dict(_attrs(m[2]), clusters=tuple(c["label"] for c in open_clusters))
            elif open_clusters:
                open_clusters[-1]["label"] = _attrs(s).get("label")

    def visible_edges(self):
        return [(a, b, attrs) for a, b, attrs in self.edges if attrs.get("style") != "invis"]

    def ids_labelled(self, pattern):
        return [n for n, a in self.nodes.items() if re.fullmatch(pattern, a.get("label", "").split("\\n")[0])]

    def node(self, pattern):
        (found,) = self.ids_labelled(pattern)
        return found

    def out_degree(self, node_id):
        return sum(a == node_id for a, _, _ in self.visible_edges())

    def norm(self, node_id):
        return float(re.search(r"‖g‖=([-+.e\d]+)", self.nodes[node_id]["label"])[1])

    def top_cluster_labels(self):
        return [c["label"] for c in self.clusters if c["depth"] == 0]


def _attrs(text):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _ATTR.findall(text)}


def _rnn(T, *, scale=0.5, loss_every_step=True, seed=0, H=3, V=4):
    """A hand-unrolled Elman RNN from engine ops, each step under tr.scope("t=k")."""
    rng = np.random.default_rng(seed)
    P = {name: Tensor(rng.standard_normal(shape) * scale, requires_grad=True, name=name) for name, shape in
         [("W_xh", (H, V)), ("W_hh", (H, H)), ("b_h", (H,)), ("W_hy", (V, H)), ("b_y", (V,))]}
    h, hs, losses = Tensor(np.zeros(H)), [], []
    for t in range(T):
        with tr.scope(f"t={t}"):
            x = Tensor(np.eye(V)[t % V])
            h = (P["W_xh"] @ x + P["W_hh"] @ h + P["b_h"]).tanh()
            h.name = f"h{t}"
            hs.append(h)
            if loss_every_step or t == T - 1:
                losses.append(-(P["W_hy"] @ h + P["b_y"]).log_softmax()[(t + 1) % V])
    return tr.stack(losses).sum(), P, hs, losses


def _lstm(T, *, seed=0, H=3, V=4):
    """A hand-unrolled LSTM; the cell's ops sit in a nested scope "t=k/lstm"."""
    rng = np.random.default_rng(seed)
    P = {name: Tensor(rng.standard_normal(shape) * 0.5, requires_grad=True, name=name) for name, shape in
         [("W_x", (4 * H, V)), ("W_h", (4 * H, H)), ("b", (4 * H,)), ("W_hy", (V, H)), ("b_y", (V,))]}
    h, s, losses = Tensor(np.zeros(H)), Tensor(np.zeros(H)), []
    for t in range(T):
        with tr.scope(f"t={t}"):
            with tr.scope("lstm"):
                z = P["W_x"] @ Tensor(np.eye(V)[t % V]) + P["W_h"] @ h + P["b"]
                i, f, g, o = z[:H].sigmoid(), z[H:2 * H].sigmoid(), z[2 * H:3 * H].tanh(), z[3 * H:].sigmoid()
                s = f * s + i * g
                h = o * s.tanh()
            losses.append(-(P["W_hy"] @ h + P["b_y"]).log_softmax()[(t + 1) % V])
    return tr.stack(losses).sum(), P


# ---- structure ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 5])
def test_each_parameter_is_one_node_outside_every_cluster(T):
    loss, P, _, _ = _rnn(T)
    g = Parsed(viz.draw(loss, params=P))
    for name, p in P.items():
        (node,) = g.ids_labelled(name)
        assert g.nodes[node]["clusters"] == ()
        assert "filled" in g.nodes[node]["style"] and g.nodes[node]["shape"] == "box"
        assert g.nodes[node]["label"].split("\\n")[1] == str(p.shape)


@pytest.mark.parametrize("T", [1, 3, 12])
def test_a_shared_weight_has_one_edge_per_time_step(T):
    loss, P, _, _ = _rnn(T)
    g = Parsed(viz.draw(loss, params=P))
    for name in P:
        assert g.out_degree(g.node(name)) == T
    # and every one of W_hh's edges ends in a MatMul inside a different time step
    targets = [b for a, b, _ in g.visible_edges() if a == g.node("W_hh")]
    assert sorted(g.nodes[b]["clusters"] for b in targets) == sorted((f"t={t}",) for t in range(T))
    assert all(g.nodes[b]["label"].startswith("MatMul") for b in targets)


def test_lstm_W_h_has_one_edge_per_time_step():
    loss, P = _lstm(4)
    g = Parsed(viz.draw(loss, params=P))
    assert g.out_degree(g.node("W_h")) == 4
    assert g.out_degree(g.node("W_x")) == 4


def test_clusters_come_in_natural_time_order_with_the_steps_ops_inside():
    loss, P, _, _ = _rnn(12)
    g = Parsed(viz.draw(loss, params=P))
    assert g.top_cluster_labels() == [f"t={t}" for t in range(12)]  # t=10 after t=9, not after t=1
    ops = [n for n, a in g.nodes.items() if a.get("style") == "rounded,filled"]
    per_step = [sum(g.nodes[n]["clusters"] == (f"t={t}",) for n in ops) for t in range(12)]
    # MatMul x3, Add x3, Tanh, LogSoftmax, GetItem, Neg per step; Stack and Sum outside
    assert per_step == [10] * 12
    outside = sorted(g.nodes[n]["label"].split("\\n")[0] for n in ops if not g.nodes[n]["clusters"])
    assert outside == ["Stack", "Sum"]


def test_nested_scopes_are_clusters_inside_their_time_step():
    loss, P = _lstm(3)
    g = Parsed(viz.draw(loss, params=P))
    assert g.top_cluster_labels() == ["t=0", "t=1", "t=2"]
    assert [c["label"] for c in g.clusters if c["depth"] == 1] == ["lstm"] * 3
    tanhs = [n for n in g.ids_labelled("Tanh")]
    assert sorted(g.nodes[n]["clusters"] for n in tanhs) == sorted([(f"t={t}", "lstm") for t in range(3)] * 2)


def test_steps_are_kept_in_order_by_a_spine_of_invisible_edges():
    loss, P, _, _ = _rnn(11)
    g = Parsed(viz.draw(loss, params=P))
    anchors = {a["clusters"]: n for n, a in g.nodes.items() if a.get("style") == "invis" and a["clusters"]}
    assert set(anchors) == {(f"t={t}",) for t in range(11)}
    invisible = {(a, b) for a, b, attrs in g.edges if attrs.get("style") == "invis"}
    spine = [f"p{t}" for t in range(11)]
    for t in range(11):
        assert (spine[t], anchors[(f"t={t}",)]) in invisible  # one spine node above each step ...
    # ... the spine and the anchors are each one chain of invisible edges, in time order
    assert all((spine[t], spine[t + 1]) in invisible for t in range(10))
    assert all((anchors[(f"t={t}",)], anchors[(f"t={t + 1}",)]) in invisible for t in range(10))
    # the parameters: one chain too, whose middle hangs between the middle spine node and step
    params = {g.node(name) for name in P}
    chain = [(a, b) for a, b in invisible if a in params and b in params]
    assert len(chain) == len(P) - 1 and len({a for a, _ in chain} | {b for _, b in chain}) == len(P)
    (centre,) = [b for a, b in invisible if a == spine[5] and b in params]
    assert (centre, anchors[("t=5",)]) in invisible
    # the state handed to the next step leaves the ranking alone, so all steps share their rows
    carried = [attrs for a, b, attrs in g.visible_edges() if attrs.get("style") == "bold"]
    assert len(carried) == 10 and all(c["constraint"] == "false" for c in carried)


def test_node_ids_are_the_same_on_every_run():
    first = viz.draw(_rnn(4)[0]).source
    second = viz.draw(_rnn(4)[0]).source
    assert first == second
    assert set(re.findall(r"^\s*(\w+) \[", first, re.M)) - {"graph", "node", "edge"} <= \
        {f"n{i}" for i in range(200)} | {f"s{i}" for i in range(4)} | {f"p{i}" for i in range(4)}


def test_labels_name_shape_and_constants_small():
    x = Tensor(np.arange(3.0), requires_grad=True, name="x")
    W = Tensor(np.ones((2, 3)), requires_grad=True)
    y = (1 - W @ x).sum()
    g = Parsed(viz.draw(y, params={"W": W}))
    assert g.nodes[g.node("W")]["label"] == "W\\n(2, 3)"  # the params dict names it
    assert g.nodes[g.node("x")]["label"] == "x\\n(3,)"  # else the tensor's own name
    const = g.node("1 \\(\\)")
    assert g.nodes[const]["shape"] == "plaintext" and float(g.nodes[const]["fontsize"]) < 10
    assert g.nodes[g.node("Sum")]["peripheries"] == "2"  # the root
    assert len(g.nodes) == 6 and len(g.visible_edges()) == 5
    plain = Parsed(viz.draw(y, show_shapes=False))
    assert not any("(" in a["label"] for a in plain.nodes.values())


def test_a_tensor_used_twice_by_one_op_has_two_edges():
    W = Tensor(np.ones(2), requires_grad=True, name="W")
    g = Parsed(viz.draw((W * W).sum()))
    assert [(a, b) for a, b, _ in g.visible_edges()].count((g.node("W"), g.node("Mul"))) == 2


def test_group_by_scope_false_draws_no_clusters():
    loss, P, _, _ = _rnn(3)
    g = Parsed(viz.draw(loss, params=P, group_by_scope=False))
    assert g.clusters == [] and g.out_degree(g.node("W_hh")) == 3
    assert all(a.get("style") != "invis" for a in g.nodes.values())


def test_a_deep_graph_draws_without_recursion():
    x = Tensor(np.array([0.5]), requires_grad=True, name="x")
    y = x
    for _ in range(3000):
        y = y.tanh()
    g = Parsed(viz.draw(y))
    assert len(g.ids_labelled("Tanh")) == 3000 and len(g.visible_edges()) == 3000


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(TypeError, match="expects the Tensor"):
        viz.draw(np.ones(3))
    with pytest.raises(ValueError, match="rankdir must be one of LR, RL, TB, BT"):
        viz.draw(Tensor(np.ones(2), requires_grad=True).sum(), rankdir="XY")


# ---- gradients ----------------------------------------------------------------------------------------
def test_grads_labels_carry_the_gradient_norms():
    loss, P, hs, _ = _rnn(6)
    viz.retain_all_grads(loss).backward()
    g = Parsed(viz.draw(loss, params=P, grads=True))
    for name, p in P.items():
        assert g.norm(g.node(name)) == pytest.approx(np.linalg.norm(p.grad), rel=0.06)
    for t, h in enumerate(hs):
        assert g.norm(g.node(f"h{t} = Tanh")) == pytest.approx(np.linalg.norm(h.grad), rel=0.06)
    assert g.norm(g.node("Sum")) == pytest.approx(1.0)
    assert "‖∂L/∂node‖ (log scale)" in g.nodes["legend"]["label"]


def _lightness(hex_colour):
    r, gr, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * gr + 0.114 * b


def test_vanishing_gradients_fade_towards_the_first_step():
    loss, P, hs, _ = _rnn(8, scale=0.3, loss_every_step=False)
    viz.retain_all_grads(loss).backward()
    norms = [np.linalg.norm(h.grad) for h in hs]
    assert all(a < b for a, b in zip(norms, norms[1:]))  # the setup really vanishes
    g = Parsed(viz.draw(loss, params=P, grads=True))
    fills = [_lightness(g.nodes[g.node(f"h{t} = Tanh")]["fillcolor"]) for t in range(8)]
    assert fills[0] > fills[-1]
    assert all(a >= b for a, b in zip(fills, fills[1:]))


def test_grads_without_retained_op_gradients_colour_only_the_parameters():
    loss, P, _, _ = _rnn(3)
    loss.backward()
    g = Parsed(viz.draw(loss, params=P, grads=True))
    assert g.norm(g.node("W_hh")) == pytest.approx(np.linalg.norm(P["W_hh"].grad), rel=0.06)
    tanh = g.ids_labelled("h0 = Tanh")[0]
    assert "dashed" in g.nodes[tanh]["style"] and "‖g‖" not in g.nodes[tanh]["label"]
    assert "retain_all_grads" in g.nodes["legend"]["label"]


def test_grads_before_backward_is_an_error():
    loss, P, _, _ = _rnn(2)
    with pytest.raises(ValueError, match="call backward"):
        viz.draw(loss, params=P, grads=True)


# ---- collapsed time steps -----------------------------------------------------------------------------
def test_collapse_scopes_draws_one_box_per_step_with_its_parameter_edges():
    loss, P, hs, losses = _rnn(11)
    viz.retain_all_grads(loss).backward()
    g = Parsed(viz.draw(loss, params=P, collapse_scopes=True, grads=True))
    boxes = [n for n, a in g.nodes.items() if a.get("shape") == "box3d"]
    assert [g.nodes[n]["label"].split("\\n")[0] for n in boxes] == [f"t={t}" for t in range(11)]
    assert g.clusters == []
    for name in P:
        assert sorted(b for a, b, _ in g.visible_edges() if a == g.node(name)) == sorted(boxes)
    step_edges = {(a, b) for a, b, _ in g.visible_edges() if a in boxes and b in boxes}
    assert step_edges == set(zip(boxes, boxes[1:]))
    # a box's norm is that of all it hands on: h_t to the next step and its loss term to Stack
    for t in range(10):
        want = np.sqrt(np.linalg.norm(hs[t].grad) ** 2 + np.linalg.norm(losses[t].grad) ** 2)
        assert g.norm(boxes[t]) == pytest.approx(want, rel=0.06)
    assert len(g.nodes) == 11 + 11 + len(P) + 2 + 1  # boxes, spine, parameters, Stack and Sum, legend


# ---- saving -------------------------------------------------------------------------------------------
def _lstm_picture():
    model = nn.CharRNN(4, 3, cell="lstm", rng=np.random.default_rng(0))
    return viz.draw_unrolled(model, 3)


@needs_dot
def test_save_writes_a_valid_svg(tmp_path):
    path = viz.save(_lstm_picture(), tmp_path / "lstm.svg")
    assert path == tmp_path / "lstm.svg"
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    titles = [el.text for el in root.iter() if el.tag.endswith("title")]
    assert [t for t in titles if t.startswith("cluster")] == [f"cluster_{k}" for k in range(3)]


@needs_dot
def test_save_writes_png_and_pdf(tmp_path):
    picture = _lstm_picture()
    assert viz.save(picture, tmp_path / "lstm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert viz.save(picture, tmp_path / "sub" / "lstm.pdf").read_bytes()[:5] == b"%PDF-"


def test_save_dot_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    picture = _lstm_picture()
    assert viz.save(picture, tmp_path / "g.dot").read_text(encoding="utf-8") == picture.source


def test_save_without_dot_writes_the_source_and_says_how_to_install(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    picture = _lstm_picture()
    with pytest.raises(viz.GraphvizNotFound) as err:
        viz.save(picture, tmp_path / "lstm.svg")
    message = str(err.value)
    assert isinstance(err.value, RuntimeError) and "\n" not in message
    assert str(tmp_path / "lstm.dot") in message and "apt-get install graphviz" in message
    assert (tmp_path / "lstm.dot").read_text(encoding="utf-8") == picture.source
    assert not (tmp_path / "lstm.svg").exists()


def test_save_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg, \.png, \.pdf, \.dot"):
        viz.save(_lstm_picture(), tmp_path / "lstm.jpg")


# ---- draw_unrolled ------------------------------------------------------------------------------------
def test_draw_unrolled_rnn_shares_W_hh_over_the_steps():
    model = nn.CharRNN(5, 3, rng=np.random.default_rng(0))
    g = Parsed(viz.draw_unrolled(model, 4))
    assert g.top_cluster_labels() == [f"t={t}" for t in range(1, 5)]  # the book's time: t = 1 … T
    for name in ("cell.W_xh", "cell.W_hh", "cell.b_h", "out.W", "out.b"):  # U, W, b, V, c: shared by all steps
        assert g.out_degree(g.node(name)) == 4
    root = [n for n, a in g.nodes.items() if a.get("peripheries") == "2"]
    assert root == g.ids_labelled("L = CrossEntropy")


def test_draw_unrolled_lstm_batched():
    model = nn.CharRNN(5, 3, cell="lstm", rng=np.random.default_rng(0))
    g = Parsed(viz.draw_unrolled(model, 3, batch=2, rng=np.random.default_rng(1)))
    assert g.out_degree(g.node("cell.W_h")) == 3
    assert "(2, 12)" in " ".join(a["label"] for a in g.nodes.values())


def test_draw_unrolled_grads_leaves_the_models_gradients_alone():
    model = nn.CharRNN(5, 3, rng=np.random.default_rng(0))
    params = model.named_parameters()
    params["cell.W_hh"].grad = np.full((3, 3), 7.0)
    g = Parsed(viz.draw_unrolled(model, 3, grads=True))
    assert g.norm(g.node("cell.W_hh")) != pytest.approx(21.0, rel=0.06)
    assert np.array_equal(params["cell.W_hh"].grad, np.full((3, 3), 7.0))
    assert params["out.W"].grad is None
    assert all("‖g‖" in g.nodes[n]["label"] for n in g.ids_labelled("Tanh"))


def test_draw_unrolled_folded_is_one_cell_with_a_delayed_self_loop():
    model = nn.CharRNN(5, 3, rng=np.random.default_rng(0))
    g = Parsed(viz.draw_unrolled(model, 4, folded=True))
    assert g.clusters == [] and g.nodes["dh"]["shape"] == "square"
    back = [attrs["label"] for a, b, attrs in g.edges if (a, b) == ("dh", "h")]
    assert back == ["W = cell.W_hh (3, 3)"] and ("h", "dh") in [(a, b) for a, b, _ in g.edges]
    assert "delay of one time step" in g.graph["label"]
    lstm = Parsed(viz.draw_unrolled(nn.CharRNN(5, 3, cell="lstm", rng=np.random.default_rng(0)), 4, folded=True))
    assert {(a, b) for a, b, _ in lstm.edges} >= {("s", "ds"), ("ds", "s"), ("h", "dh"), ("dh", "s")}
    with pytest.raises(TypeError, match="folded=True does not take show_shapes"):
        viz.draw_unrolled(model, 4, folded=True, show_shapes=False)


def test_draw_unrolled_refuses_what_is_not_a_char_rnn():
    with pytest.raises(TypeError, match="expects an nn.CharRNN"):
        viz.draw_unrolled(nn.Linear(3, 2), 4)
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        viz.draw_unrolled(nn.CharRNN(5, 3), 0)


def test_viz_imports_without_the_graphviz_package():
    code = ("import sys; sys.modules['graphviz'] = None\n"
            "from tinygrad_rnn import viz, Tensor\n"
            "try:\n    viz.draw(Tensor([1.0], requires_grad=True).sum())\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install graphviz" in out


# ---- the layout as dot computes it (dot -Tplain) --------------------------------------------------------
def _plain(digraph):
    """Node id -> (x, y, width, height) in inches, from dot's own layout."""
    out = subprocess.run(["dot", "-Tplain"], input=digraph.source.encode(), capture_output=True, check=True)
    return {f[1]: tuple(map(float, f[2:6])) for f in (line.split() for line in out.stdout.decode().splitlines())
            if f[0] == "node"}


def _my_cell():
    """A user-written cell: h = tanh(W_in x + bias + W_rec h), nothing but the recurrent cell protocol."""
    class MyCell(nn.Module):
        def __init__(self):
            rng = np.random.default_rng(2)
            self.hidden_size = 3
            self.W_in = Tensor(rng.standard_normal((3, 4)) * 0.5, requires_grad=True)
            self.W_rec = Tensor(rng.standard_normal((3, 3)) * 0.5, requires_grad=True)
            self.bias = Tensor(np.zeros(3), requires_grad=True)

        def forward(self, x, h):
            h = Tensor(np.zeros(3)) if h is None else h
            return (self.W_in @ x + self.bias + self.W_rec @ h).tanh()
    return MyCell()


def _model(cell):
    return nn.CharRNN(4, 3, cell=_my_cell() if cell == "mine" else cell, rng=np.random.default_rng(0))


@needs_dot
@pytest.mark.parametrize("cell,T", [("rnn", 4), ("lstm", 3), ("gru", 5), ("mine", 4), ("lstm", 12)])
def test_book_picture_puts_every_h_on_one_line_in_time_order(cell, T):
    picture = viz.draw_unrolled(_model(cell), T, style="book")
    g, at = Parsed(picture), _plain(picture)
    assert [g.nodes[f"h{t}"]["label"] for t in range(T + 1)] == [f"h({t})" for t in range(T + 1)]
    xs = [at[f"h{t}"][0] for t in range(T + 1)]
    assert all(a < b for a, b in zip(xs, xs[1:]))
    assert len({at[f"h{t}"][1] for t in range(T + 1)}) == 1
    # x(t) below h(t), o(t), L(t), y(t) above it, in the same column
    for t in range(1, T + 1):
        column = [at[f"{v}{t}"] for v in "xhoLy"]
        assert [c[1] for c in column] == sorted(c[1] for c in column)
        assert max(c[0] for c in column) - min(c[0] for c in column) < 0.05


@pytest.mark.parametrize("cell, extra", [("rnn", "b = cell.b_h, c = out.b"), ("lstm", "b = cell.b, c = out.b"),
                                         ("gru", "cell.b_x, cell.b_h, c = out.b")])
def test_book_caption_gives_each_letter_one_parameter(cell, extra):
    # the GRU has two biases: the book's one letter b cannot name both, so they keep their own names
    caption = viz.draw_unrolled(_model(cell), 3, style="book").graph_attr["label"]
    assert caption.split("\\n")[0].endswith(f"; also {extra}")  # DOT's line break


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_book_picture_has_the_books_nodes_edges_and_weight_colours(cell):
    T = 4
    model = _model(cell)
    g = Parsed(viz.draw_unrolled(model, T, style="book"))
    lstm = cell == "lstm"
    want = {f"{v}{t}" for v in "xoLy" for t in range(1, T + 1)} | {f"h{t}" for t in range(T + 1)}
    want |= {f"s{t}" for t in range(T + 1)} if lstm else set()
    assert set(g.nodes) == want
    assert all(g.nodes[n]["label"] == f"{n[0]}({n[1:]})" for n in want)
    edges = {(a, b): attrs for a, b, attrs in g.visible_edges()}
    U, W = ("cell.W_xh", "cell.W_hh") if cell == "rnn" else ("cell.W_x", "cell.W_h")
    state = "s" if lstm else "h"
    ops = Parsed(viz.draw_unrolled(model, 2))  # the op-level picture: each parameter node's edge colour
    colour = {name: ops.nodes[ops.node(name)]["color"] for name in (U, W, "out.W")}
    assert len(set(colour.values())) == 3
    for t in range(1, T + 1):
        u, w, v = edges[(f"x{t}", f"{state}{t}")], edges[(f"h{t - 1}", f"{state}{t}")], edges[(f"h{t}", f"o{t}")]
        assert u["label"].split("\\n")[0] == f"U = {U}" and u["color"] == colour[U]  # an LSTM adds g(t) × tanh(…)
        assert w.get("label", w.get("xlabel")) == f"W = {W}" and w["color"] == colour[W]
        assert v["label"] == "V = out.W" and v["color"] == colour["out.W"]
        assert (f"o{t}", f"L{t}") in edges and edges[(f"L{t}", f"y{t}")]["dir"] == "back"  # y(t) -> L(t)
        if lstm:
            assert (f"s{t - 1}", f"s{t}") in edges and (f"s{t}", f"h{t}") in edges
    # the folded view draws the same weights in the same colours
    folded = Parsed(viz.draw_unrolled(model, T, folded=True))
    for a, b, attrs in folded.visible_edges():
        for name in (U, W, "out.W"):
            if attrs.get("label", "").split(" ")[2:3] == [name]:
                assert attrs["color"] == colour[name]


def test_book_picture_of_a_user_cell_reads_its_weights_from_the_graph():
    g = Parsed(viz.draw_unrolled(_model("mine"), 3, style="book"))
    edges = {(a, b): attrs for a, b, attrs in g.visible_edges()}
    assert {("h0", "h1"), ("h1", "h2"), ("x3", "h3"), ("h3", "o3")} <= set(edges)
    # W_in meets only x(t), W_rec only h(t-1); the bias (1-D) is neither
    assert edges[("x2", "h2")]["label"] == "U = cell.W_in" and edges[("h1", "h2")]["label"] == "W = cell.W_rec"
    assert "cell.bias" in g.graph["label"] and "cell.W_in" not in g.graph["label"]
    ops = Parsed(viz.draw_unrolled(_model("mine"), 2))
    assert edges[("x2", "h2")]["color"] == ops.nodes[ops.node("cell.W_in")]["color"]
    assert edges[("h1", "h2")]["color"] == ops.nodes[ops.node("cell.W_rec")]["color"] != edges[("x2", "h2")]["color"]

    class Joint(nn.Module):  # one weight on [x; h]: neither a U nor a W
        def __init__(self):
            self.hidden_size, self.W = 3, Tensor(np.full((3, 7), 0.1), requires_grad=True)

        def forward(self, x, h):
            h = Tensor(np.zeros(3)) if h is None else h
            return (self.W @ tr.concat([x, h])).tanh()
    joint = Parsed(viz.draw_unrolled(nn.CharRNN(4, 3, cell=Joint()), 3, style="book"))
    assert {attrs["label"] for a, b, attrs in joint.visible_edges() if (a, b) in {("x2", "h2"), ("h1", "h2")}} \
        == {"U", "W"}
    assert "cell.W" in joint.graph["label"]


@pytest.mark.parametrize("cell,loss", [("rnn", "last"), ("lstm", "sum"), ("gru", "last"), ("mine", "sum")])
def test_book_grads_are_the_norms_of_dL_dh(cell, loss):
    from tinygrad_rnn import analysis
    T, model = 5, _model(cell)
    before = {n: p.data.copy() for n, p in model.named_parameters().items()}
    g = Parsed(viz.draw_unrolled(model, T, style="book", grads=True, loss=loss))
    rng = np.random.default_rng(0)  # draw_unrolled's dummy input, drawn the same way
    inputs, targets = rng.integers(0, 4, size=T), rng.integers(0, 4, size=T)
    want = np.linalg.norm(analysis.hidden_grads(model, inputs, targets, loss=loss), axis=-1)
    got = [float(g.nodes[f"h{t}"]["label"].split("\\n")[1]) for t in range(1, T + 1)]
    assert got == pytest.approx(want, rel=0.06)
    assert all(g.nodes[f"h{t}"]["fillcolor"].startswith("#") for t in range(T + 1))
    assert ("L1" in g.nodes) == (loss == "sum") and f"L{T}" in g.nodes
    assert all(np.array_equal(p.data, before[n]) for n, p in model.named_parameters().items())
    assert all(p.grad is None for p in model.parameters())


def test_loss_last_on_the_ops_picture_roots_at_the_last_step():
    g = Parsed(viz.draw_unrolled(_model("rnn"), 4, loss="last"))
    root = [n for n, a in g.nodes.items() if a.get("peripheries") == "2"]
    assert root == g.ids_labelled("L\\(4\\) = CrossEntropy")
    with pytest.raises(ValueError, match="loss must be one of sum, last"):
        viz.draw_unrolled(_model("rnn"), 4, loss="mean")
    with pytest.raises(ValueError, match="style must be one of ops, book"):
        viz.draw_unrolled(_model("rnn"), 4, style="fig")


def test_ops_picture_names_the_models_tensors():
    g = Parsed(viz.draw_unrolled(_model("lstm"), 3))
    for t in (1, 2, 3):
        # the book's letters: forget f, input gate g, output gate q, cell input s̃; o(t) only the output
        for name, op in [("h", "Mul"), ("s", "Add"), ("o", "Affine"), ("g", "Sigmoid"), ("f", "Sigmoid"),
                         ("s̃", "Tanh"), ("q", "Sigmoid")]:
            (node,) = g.ids_labelled(rf"{name}\({t}\) = {op}")
            assert g.nodes[node]["clusters"] == (f"t={t}",)
    assert g.ids_labelled(r"h\(0\) \(3,\)") and g.ids_labelled(r"s\(0\) \(3,\)")
    for rows in ("0:3", "3:6", "6:9", "9:12"):  # each gate's slice of z, once per step
        assert len(g.ids_labelled(rf"GetItem \[…, {rows}\]")) == 3
    gru = Parsed(viz.draw_unrolled(_model("gru"), 2))
    assert gru.ids_labelled(r"z\(2\) = Sigmoid") and gru.ids_labelled(r"h\(2\) = Add")


@needs_dot
@pytest.mark.parametrize("cell,T", [("rnn", 4), ("lstm", 3), ("gru", 3), ("mine", 5), ("lstm", 25)])
def test_ops_picture_steps_are_columns_left_to_right(cell, T):
    picture = viz.draw_unrolled(_model(cell), T)
    g, at = Parsed(picture), _plain(picture)
    spans = []
    for t in range(1, T + 1):
        inside = [n for n, a in g.nodes.items() if a["clusters"][:1] == (f"t={t}",) and a.get("style") != "invis"]
        spans.append((min(at[n][0] - at[n][2] / 2 for n in inside), max(at[n][0] + at[n][2] / 2 for n in inside)))
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))  # in order, not overlapping
    params = [g.node(name) for name in _model(cell).named_parameters()]
    assert len({at[n][1] for n in params}) == 1  # one row ...
    tops = [at[n][1] + at[n][3] / 2 for n, a in g.nodes.items() if a["clusters"] and a.get("style") != "invis"]
    assert min(at[n][1] for n in params) > max(tops)  # ... above the steps
    hs = [at[g.node(rf"h\({t}\) = \w+")] for t in range(1, T + 1)]
    assert len({round(h[1], 3) for h in hs}) == 1  # every step has the same rows


@needs_dot
def test_a_25_step_lstm_fits_4000_pixels(tmp_path):
    path = viz.save(viz.draw_unrolled(_model("lstm"), 25), tmp_path / "lstm25.png")
    width = int.from_bytes(path.read_bytes()[16:20], "big")  # the PNG header's IHDR width
    assert 1000 < width <= 4000


# ---- names never break the DOT ------------------------------------------------------------------------
@needs_dot
def test_awkward_names_and_scopes_render():
    names = ["<b>W</b>", "back\\", 'say "hi"', "h1²", "<W>", "x\\n", "٣ digits"]
    P = {n: Tensor(np.full(2, 0.5), requires_grad=True) for n in names}
    total = None
    for k, (name, p) in enumerate(P.items()):
        with tr.scope(["h1²", "t=1", "<t>", "a\\"][k % 4]):
            y = (p * 2.0).tanh().sum()
            y.name = name
        total = y if total is None else total + y
    for kw in (dict(), dict(collapse_scopes=True), dict(group_by_scope=False)):
        picture = viz.draw(total, params=P, **kw)
        svg = picture.pipe(format="svg").decode()
        for name in ("&lt;b&gt;W&lt;/b&gt;", "back\\", "say &quot;hi&quot;", "h1²", "x\\n"):
            assert name in svg


def test_natural_order_survives_superscripts():
    assert sorted(["t=10", "h1²", "t=9", "h1"], key=viz._natural) == ["h1", "h1²", "t=9", "t=10"]


def test_a_dot_failure_is_a_one_line_error(tmp_path):
    bad = viz.draw(Tensor(np.ones(2), requires_grad=True).sum())
    bad.body.append("\tthis is { not dot\n")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    with pytest.raises(viz.GraphvizError) as err:
        viz.save(bad, tmp_path / "bad.svg")
    assert "\n" not in str(err.value) and "bad.svg" in str(err.value)


@needs_dot
def test_a_picture_of_5000_ops_renders(tmp_path):
    x = Tensor(np.array([0.5]), requires_grad=True, name="x")
    y = x
    for k in range(2500):
        y = y.tanh().exp()
    assert len(_walk_ops(y)) == 5000
    path = viz.save(viz.draw(y, show_shapes=False), tmp_path / "deep.svg")
    assert ET.parse(path).getroot().tag.endswith("svg")


def _walk_ops(root):
    return [t for t in viz._walk(root) if t.grad_fn is not None]


# ---- folded view with gradients -----------------------------------------------------------------------
def test_folded_grads_label_each_weight_with_its_summed_gradient():
    model = _model("rnn")
    g = Parsed(viz.draw_unrolled(model, 4, folded=True, grads=True))
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, 4, size=4), rng.integers(0, 4, size=4)
    logits, _ = model(inputs)
    nn.cross_entropy(logits, targets).backward()
    labels = {attrs["label"].split("\\n")[0]: attrs["label"] for _, _, attrs in g.visible_edges() if "label" in attrs}
    for letter, name in [("U", "cell.W_xh"), ("W", "cell.W_hh"), ("V", "out.W")]:
        label = labels[f"{letter} = {name} {model.named_parameters()[name].shape}"]
        got = float(label.split("= ")[-1])
        assert got == pytest.approx(np.linalg.norm(model.named_parameters()[name].grad), rel=0.01)


# ---- command line ---------------------------------------------------------------------------------------
def _graph(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tinygrad_rnn", "graph", *args], capture_output=True,
                          text=True, cwd=cwd)


@needs_dot
def test_cli_graph_200_steps_collapses_by_itself(tmp_path):
    run = _graph("--steps", "200", "-o", "g.svg", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2 and "each step is drawn as one box" in lines[0]
    root = ET.parse(tmp_path / "g.svg").getroot()
    assert sum(el.text == "t=200" for el in root.iter() if el.tag.endswith("text")) == 1


def test_cli_graph_styles_and_flags(tmp_path):
    for args in (["--style", "book", "--grads", "--loss", "last"], ["--folded", "--grads"],
                 ["--collapse", "--grads", "--cell", "lstm"]):
        run = _graph(*args, "-o", "g.dot", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    run = _graph("--folded", "--grads", "--cell", "lstm", "-o", "f.dot", cwd=tmp_path)
    assert "‖∂L/∂cell.W_h‖" in (tmp_path / "f.dot").read_text(encoding="utf-8")
    for args, says in [(["--style", "book", "--collapse"], "--collapse"), (["--steps", "5000"], "at most 500"),
                       (["--style", "book", "--steps", "301"], "--style book draws at most 300 steps"),
                       (["--style", "fig"], "invalid choice")]:
        run = _graph(*args, "-o", "g.dot", cwd=tmp_path)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr


def test_draw_unrolled_takes_your_own_sequence():
    from tinygrad_rnn import analysis
    model = _model("rnn")
    x, y = np.array([1, 0, 2, 2]), np.array([0, 2, 2, 3])  # "hell" -> "ello" over {e, h, l, o}
    g = Parsed(viz.draw_unrolled(model, 4, style="book", grads=True, inputs=x, targets=y))
    want = np.linalg.norm(analysis.hidden_grads(model, x, y), axis=-1)
    assert [float(g.nodes[f"h{t}"]["label"].split("\\n")[1]) for t in range(1, 5)] == pytest.approx(want, rel=0.06)
    ops = Parsed(viz.draw_unrolled(model, 4, grads=True, inputs=x, targets=y))
    assert [ops.norm(ops.node(rf"h\({t}\) = Tanh")) for t in range(1, 5)] == pytest.approx(want, rel=0.06)
    with pytest.raises(ValueError, match=r"inputs must have shape \(seq_len,\) or \(seq_len, B\) with seq_len 3"):
        viz.draw_unrolled(model, 3, inputs=x)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_a_weight_keeps_its_colour_fused_or_not(cell):
    colours = []
    for fused in (False, True):
        model = nn.CharRNN(4, 3, cell=cell, rng=np.random.default_rng(0), fused=fused)
        g = Parsed(viz.draw_unrolled(model, 3))
        colours.append({name: g.nodes[g.node(re.escape(name))]["color"] for name in model.named_parameters()})
        assert g.ids_labelled(r"h\(0\) \(3,\)")  # the initial state is named either way
    assert colours[0] == colours[1] and len(set(colours[0].values())) == len(colours[0])


@pytest.mark.parametrize("steps", ["4", "60"])  # 60 steps: ~90 KB of DOT, more than a pipe holds unread
def test_cli_graph_says_in_one_line_when_dot_fails(tmp_path, steps):
    """A dot that fails without reading its input (the pipe breaks under the writer) still gets its say."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dot").write_text("#!/bin/sh\necho 'Error: trouble in init_rank' >&2\necho '... more lines' >&2\nexit 1\n")
    (fake / "dot").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run([sys.executable, "-m", "tinygrad_rnn", "graph", "--steps", steps, "-o", "g.svg"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "could not draw g.svg" in line and "trouble in init_rank" in line
    assert not (tmp_path / "g.svg").exists()


# --- the book's letters, and one name per node ------------------------------------------------------------

def _variable_names(g):
    """The variable name of every node that has one: `h(2)` of "h(2) = Tanh", a parameter's own name, a
    named constant such as "h(0) (3,)"; anonymous ops ("Mul") and constants carry none."""
    names = []
    for node_id, attrs in g.nodes.items():
        first = attrs.get("label", "").split("\\n")[0]
        if attrs.get("style") == "invis" or not first or first.startswith("<") or node_id == "legend":
            continue
        if " = " in first:
            names.append(first.split(" = ")[0])
        elif re.fullmatch(r"[^\s()]+\([^()]*\)(?: \(.*\))?", first):   # h(1), [h; s](0) (6,)
            names.append(first.split(" (")[0] if first.count("(") > 1 else first)
        elif "bold" in attrs.get("style", ""):                          # a parameter node
            names.append(first)
    return names


def _pictures():
    for cell, kw in [("rnn", {}), ("lstm", {}), ("lstm", {"cell_input": "sigmoid"}), ("gru", {}), ("mine", {})]:
        for fused in ([False, True] if cell != "mine" else [False]):
            model = nn.CharRNN(4, 3, cell=_my_cell() if cell == "mine" else cell, fused=fused,
                               rng=np.random.default_rng(0), **kw)
            yield f"{cell} {kw} fused={fused} ops", viz.draw_unrolled(model, 3)
            yield f"{cell} {kw} fused={fused} ops grads", viz.draw_unrolled(model, 3, grads=True, loss="last")
            yield f"{cell} {kw} fused={fused} book", viz.draw_unrolled(model, 3, style="book")
            yield f"{cell} {kw} fused={fused} book grads", viz.draw_unrolled(model, 3, style="book", grads=True)
    trigram = nn.NeuralTrigram(4, 3, rng=np.random.default_rng(0))
    yield "neural trigram", viz.draw(nn.cross_entropy(trigram(np.array([0, 1]), np.array([1, 2])), np.array([2, 3])),
                                     params=trigram.named_parameters())


def test_no_picture_gives_two_nodes_one_name():
    for what, picture in _pictures():
        names = _variable_names(Parsed(picture))
        assert names, what
        twice = sorted({n for n in names if names.count(n) > 1})
        assert not twice, f"{what}: {twice} label more than one node"


def test_book_lstm_pictures_use_the_books_letters_and_the_two_cell_inputs_draw_differently():
    def book(cell_input):
        model = nn.CharRNN(4, 3, cell="lstm", cell_input=cell_input, rng=np.random.default_rng(0))
        return viz.draw_unrolled(model, 3, style="book")
    torch_like, books = book("tanh"), book("sigmoid")
    assert torch_like.source != books.source
    for picture, act in [(torch_like, "tanh"), (books, "σ")]:
        g = Parsed(picture)
        caption = g.graph["label"]
        assert f"s(t) = f(t) s(t−1) + g(t) {act}(b + U x(t) + W h(t−1))" in caption
        assert "h(t) = tanh(s(t)) q(t)" in caption and "i(t)" not in caption and "o(t) ×" not in caption
        edge_labels = [a.get("label", "") + a.get("xlabel", "") for _, _, a in g.visible_edges()]
        assert {f"× f({t})" for t in (1, 2, 3)} <= set(edge_labels)
        assert {f"tanh, × q({t})" for t in (1, 2, 3)} <= set(edge_labels)
        assert sum(f"g(2) × {act}(…)" in label for label in edge_labels) == 1
        assert sorted(_variable_names(g)) == sorted([f"{v}({t})" for v in "hs" for t in range(4)]
                                                    + [f"{v}({t})" for v in "xoLy" for t in (1, 2, 3)])
    assert "the book's LSTM" in Parsed(books).graph["label"] and "PyTorch's LSTM" in Parsed(torch_like).graph["label"]
    ops = Parsed(viz.draw_unrolled(nn.CharRNN(4, 3, cell="lstm", cell_input="sigmoid", rng=np.random.default_rng(0)), 2))
    assert ops.ids_labelled(r"s̃\(2\) = Sigmoid") and ops.ids_labelled(r"q\(2\) = Sigmoid")
    assert len(ops.ids_labelled(r"o\(2\) = .*")) == 1                    # the output, never the output gate


def test_the_neural_trigram_is_drawn_with_its_two_inputs_apart():
    model = nn.NeuralTrigram(4, 3, rng=np.random.default_rng(0))
    w1, w2, w3 = np.array([0, 1, 3]), np.array([1, 2, 2]), np.array([2, 3, 0])
    g = Parsed(viz.draw(nn.cross_entropy(model(w1, w2), w3), params=model.named_parameters()))
    x1, x2 = g.node(r"x\(w1\) \(3, 4\)"), g.node(r"x\(w2\) \(3, 4\)")      # two input nodes, not one [x(w1); x(w2)]
    users = {a: [b for s, b, _ in g.visible_edges() if s == a] for a in (x1, x2)}
    assert len(users[x1]) == len(users[x2]) == 1 and users[x1] != users[x2]
    assert g.out_degree(g.node("hidden.W")) == 2                           # V = [V_1 V_2]: one block for each
    assert g.node(r"h = Tanh") and g.node(r"W h \+ b = Affine")


@pytest.mark.parametrize("cell,fused", [("rnn", False), ("lstm", False), ("lstm", True), ("gru", False)])
def test_draw_of_a_charrnns_graph_counts_steps_like_the_book(cell, fused):
    model = nn.CharRNN(4, 3, cell=cell, fused=fused, rng=np.random.default_rng(0))
    logits, _ = model(np.array([0, 1, 2, 2]))
    g = Parsed(viz.draw(nn.cross_entropy(logits, np.array([1, 2, 2, 3])), params=model.named_parameters()))
    assert g.top_cluster_labels() == ["t=1", "t=2", "t=3", "t=4"]          # not t=0 around h(1)
    h1 = g.node(r"(h|\[h; s\])\(1\) = .*")
    assert g.nodes[h1]["clusters"] == ("t=1",)
