"""The differential test: random graphs over every public op (tests/fuzz.py builds them), each checked in
both modes against two oracles that are not the mode itself. Reverse mode: central differences along random
directions, and PyTorch; forward mode (tr.jvp): torch.func.jvp, and v . grad from reverse mode. Seeded:
the same 1,000 graphs every run; `make fuzz` runs 20,000 new ones."""
import pytest

import fuzz

GRAPHS, CHUNKS = 1000, 10


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_graphs_agree_in_both_modes(chunk):
    size = GRAPHS // CHUNKS
    report = []
    checked, failures = fuzz.run(chunk * size, size, report=report.append)
    assert checked == size
    assert not failures, "\n\n".join(report[:3])  # each as a runnable program


def test_pytorch_oracles_run_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    assert fuzz.torch is torch  # so the chunks above compared with PyTorch too


def test_the_generator_covers_the_ops_and_the_cases():
    """1,000 seeds reach every op, 0-d values used 3+ times, islands, retained grads and every model kind."""
    ops, zero_d_reused, islands, retained, twice, ties = set(), 0, 0, 0, 0, 0
    models = set()
    for seed in range(GRAPHS):
        if seed % 10 == 0:
            case = fuzz.make_model_case(seed)
            models.add((case.cell, case.fused, case.batch is None, case.state))
            continue
        graph = fuzz.make_graph(seed)
        ops.update(line.op for line in graph.lines)
        islands += any(line.island for line in graph.lines)
        retained += any(line.retain for line in graph.lines)
        twice += graph.twice
        ties += not graph.smooth
        uses = {}
        for line in graph.lines:
            for a in line.args:
                uses[a] = uses.get(a, 0) + 1
        zero_d_reused += any(line.op == "sum" and line.kw["axis"] is None and uses.get(line.name, 0) >= 3
                             for line in graph.lines)
    assert ops == set(fuzz.OPS)
    assert min(zero_d_reused, islands, retained, twice, ties) >= 10
    assert {(c, f) for c, f, _, _ in models} == {(c, f) for c in ("rnn", "lstm", "lstm-sigmoid", "gru")
                                                  for f in (False, True)}
    assert {s for *_, s in models} == {"none", "given", "learned"}


def test_a_failing_graph_prints_as_a_program_that_runs():
    graph = fuzz.make_graph(3)
    namespace = {}
    exec(graph.source().replace("from tests.fuzz import Cube", "from fuzz import Cube").replace("print(", "(")
         , namespace)
    y, env = fuzz.run_tr(graph)
    y.backward()
    for name, _, req in graph.leaves:
        if req and env[name].grad is not None:
            assert (namespace[name].grad == env[name].grad).all()
