"""Graph pictures: the DOT text that viz.draw builds, parsed back into nodes, edges and clusters."""
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


def test_steps_are_kept_in_order_by_invisible_edges_between_their_anchors():
    loss, P, _, _ = _rnn(11)
    g = Parsed(viz.draw(loss, params=P))
    anchors = {a["clusters"]: n for n, a in g.nodes.items() if a.get("style") == "invis"}
    assert set(anchors) == {(f"t={t}",) for t in range(11)}
    invisible = {(a, b) for a, b, attrs in g.edges if attrs.get("style") == "invis"}
    for t in range(10):
        assert (anchors[(f"t={t}",)], anchors[(f"t={t + 1}",)]) in invisible
        # step t+1 starts after h_t is handed over ...
        assert (g.node(f"h{t} = Tanh"), anchors[(f"t={t + 1}",)]) in invisible
    # ... and its W_xh x, which reads only an input and a parameter, starts after the step's anchor
    for a, b, _ in g.visible_edges():
        if a == g.node("W_xh"):
            assert (anchors[g.nodes[b]["clusters"]], b) in invisible


def test_node_ids_are_the_same_on_every_run():
    first = viz.draw(_rnn(4)[0]).source
    second = viz.draw(_rnn(4)[0]).source
    assert first == second
    assert set(re.findall(r"^\s*(\w+) \[", first, re.M)) - {"graph", "node", "edge"} <= \
        {f"n{i}" for i in range(200)} | {f"s{i}" for i in range(4)}


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
    assert len(g.nodes) == 11 + len(P) + 2 + 1  # boxes, parameters, Stack and Sum, legend


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
    assert g.top_cluster_labels() == [f"t={t}" for t in range(4)]
    for name in ("cell.W_xh", "cell.W_hh", "cell.b_h", "out.W", "out.b"):  # U, W, b, V, c: shared by all steps
        assert g.out_degree(g.node(name)) == 4
    root = [n for n, a in g.nodes.items() if a.get("peripheries") == "2"]
    assert root == g.ids_labelled("loss = CrossEntropy")


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
    with pytest.raises(TypeError, match="folded=True takes only rankdir"):
        viz.draw_unrolled(model, 4, folded=True, grads=True)


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
