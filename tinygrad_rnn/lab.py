"""The lab: the lecture notes' and the Deep Learning book's claims about backpropagation through time,
run as small experiments on tinygrad_rnn.analysis. Each prints a readable table and can draw a plot
(matplotlib, the optional extra `plot`). `tinygrad-rnn lab EXPERIMENT [-o FILE.png]` runs one.

An experiment is a function registered with @experiment("name") that returns a Result: the table the
command prints, the measured numbers (what the tests assert), and draw(figure) for the plot.
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from . import _blas, analysis, nn
from .data import Vocab
from .engine import no_grad

__all__ = ["Result", "EXPERIMENTS", "experiment", "run", "save_plot", "PLOT_SUFFIXES", "PlotUnavailable"]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
_COLOURS = ["#c98200", "#2f6fb0", "#3a8a3a", "#b0407f", "#6a4fb3", "#c0452a", "#2a8a8a", "#86692c"]


@dataclass
class Result:
    """What an experiment measured: `table` to print, `numbers` to check, `draw(fig)` to plot."""
    name: str
    title: str
    table: str
    numbers: dict
    draw: Callable[[Any], None] = field(repr=False)
    seconds: float = 0.0


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: the table is all there is."""


EXPERIMENTS: dict[str, Callable[..., Result]] = {}


def experiment(name: str) -> Callable:
    """Register fn(**sizes) -> Result under `name` (for `tinygrad-rnn lab name`)."""
    def register(fn: Callable[..., Result]) -> Callable[..., Result]:
        EXPERIMENTS[name] = fn
        return fn
    return register


@_blas.one_thread_call
def run(name: str, **sizes: Any) -> Result:
    """Run one experiment (sizes override its defaults, for quick tests) and time it."""
    if name not in EXPERIMENTS:
        raise ValueError(f"lab: unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    started = time.perf_counter()
    result = EXPERIMENTS[name](**sizes)
    result.seconds = time.perf_counter() - started
    return result


PLOT_INSTALL = "pip install -e '.[plot]' in the clone (or pip install matplotlib)"


def save_plot(result: Result, path: Union[str, Path]) -> Path:
    """Draw the result's plot into `path` (.png, .svg or .pdf); needs matplotlib."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"lab: cannot write {path.name}: the plot's file must end in {', '.join(PLOT_SUFFIXES)}")
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: no window, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(f"the plot needs matplotlib: {PLOT_INSTALL}; the table above is complete") from None
    except ValueError as e:  # MPLBACKEND=bogus: matplotlib refuses to import
        raise PlotUnavailable(f"matplotlib cannot start: {str(e).split(';')[0]} (MPLBACKEND?); "
                              "the table above is complete") from None
    fig = plt.figure(figsize=(11, 4.6), dpi=110, layout="constrained")
    try:
        result.draw(fig)
        fig.suptitle(result.title, fontsize=12)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# ---- shared pieces ----------------------------------------------------------------------------------------
def _weight_colours(names: list) -> dict:
    """Each parameter's colour in the graph pictures (viz: U = W_xh green, W = W_hh orange, V = out.W pink,
    b blue, c purple), so a weight looks the same in a plot as in its graph."""
    from .viz import _colours  # the pictures' rule; viz imports graphviz only when drawing
    return {name: edge for name, (_, edge) in zip(names, _colours(names))}



def _table(headers: list, rows: list, groups: Optional[list] = None) -> str:
    """Rows of strings as aligned columns under their headers (first column left, the rest right);
    groups [(label, number of columns), …] puts a label over each run of columns."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    aligns = "<" + ">" * (len(headers) - 1)
    line = lambda cells: "  ".join(f"{str(c):{a}{w}}" for c, a, w in zip(cells, aligns, widths)).rstrip()
    lines = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if groups:
        spans, start = [], 0
        for label, n in groups:
            span = sum(widths[start:start + n]) + 2 * (n - 1)
            spans.append(f"{label:-^{span}}" if n > 1 else f"{label:^{span}}")
            start += n
        lines.insert(0, "  ".join(spans))
    return "\n".join(lines)


def _rate(values: np.ndarray) -> float:
    """The per-step factor r of values ≈ c r^d, d = T-1-t the distance back (least squares on the log)."""
    d = np.arange(len(values))[::-1]
    keep = values > 0
    return float(np.exp(np.polyfit(d[keep], np.log(values[keep]), 1)[0]))


def _hello_model(cell: str = "rnn", **cell_kw: Any) -> tuple[nn.CharRNN, Vocab, np.ndarray, np.ndarray]:
    """min-char-rnn's example as `tinygrad-rnn demo` trains it: 3 hidden units read 'hell', predict 'ello'."""
    vocab = Vocab("hello")
    inputs, targets = vocab.encode("hell"), vocab.encode("ello")
    model = nn.CharRNN(vocab.size, 3, cell, rng=np.random.default_rng(0), **cell_kw)
    optimizer = nn.optim.Adagrad(model.parameters(), lr=0.1)
    for _ in range(200):
        logits, _ = model(inputs)
        loss = nn.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        nn.clip_grad_value(model.parameters(), 5.0)
        optimizer.step()
    model.zero_grad()
    return model, vocab, inputs, targets


def _hello_ids(vocab: Vocab, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """'hellohello…' as inputs and next-character targets, `steps` long."""
    ids = vocab.encode(("hello" * (steps // 5 + 2))[:steps + 1])
    return ids[:-1], ids[1:]


# ---- vanishing -------------------------------------------------------------------------------------------
def _scaled(cell: str, rho: float, gain: float, V: int, H: int, **cell_kw: Any) -> nn.CharRNN:
    """A fresh CharRNN whose recurrent weights have spectral radius rho (an LSTM: each gate's H x H block;
    a GRU: the candidate's block W_hn, the one that plays W_hh's part) and whose input weights are
    multiplied by gain (stronger input drives tanh into saturation)."""
    model = nn.CharRNN(V, H, cell, rng=np.random.default_rng(1), **cell_kw)
    if cell == "rnn":
        blocks, U = [model.cell.W_hh.data], model.cell.W_xh.data
    elif cell == "gru":
        blocks, U = [model.cell.W_h.data[2 * H:3 * H]], model.cell.W_x.data
    else:
        blocks, U = [model.cell.W_h.data[k * H:(k + 1) * H] for k in range(4)], model.cell.W_x.data
    for W in blocks:  # views: scaled in place
        W *= rho / analysis.spectral_radius(W)
    U *= gain
    return model


def _mean_derivative(model: nn.CharRNN, inputs: np.ndarray) -> float:
    """RNN: the mean tanh'(a_t) = 1 - h_t^2 of the run; LSTM: the mean forget gate f_t (the factor on s);
    GRU: the mean update gate z_t (the factor on h_t-1)."""
    with no_grad():
        _, states = model.unroll(inputs)
    if model.cell_type == "rnn":
        return float(np.mean([1 - s.data ** 2 for s in states]))
    H, c = model.hidden_size, model.cell
    if model.cell_type == "gru":
        h_prev = [np.zeros(H)] + [s.data for s in states[:-1]]
        z = [c.W_x.data[H:2 * H, x] + c.b_x.data[H:2 * H] + c.W_h.data[H:2 * H] @ h + c.b_h.data[H:2 * H]
             for x, h in zip(inputs, h_prev)]
        return float(np.mean(1 / (1 + np.exp(-np.array(z)))))
    h_prev = [np.zeros(H)] + [s[0].data for s in states[:-1]]
    z = [c.W_x.data[H:2 * H, x] + c.W_h.data[H:2 * H] @ h + c.b.data[H:2 * H] for x, h in zip(inputs, h_prev)]
    return float(np.mean(1 / (1 + np.exp(-np.array(z)))))


# what the table says of the cell beside the RNN: its name, its Jacobian's, its gate, its memory path
_GATED = {"lstm": ("LSTM", "‖J‖", "f", "each gate's H x H block of W_h",
                   "the LSTM's ‖∂[h;s]_T/∂[h;s]_1‖, its state Jacobian over T-1 steps",
                   "the same fit of\n             ‖∂h_T/∂h_t‖ and ‖∂[h;s]_T/∂[h;s]_t‖ for t = 1 … T",
                   "the LSTM's mean forget gate",
                   "its state s_t = f s_t-1 + i g carries the gradient through the forget gate, not through W_h alone."),
          "gru": ("GRU", "‖J‖", "z", "the candidate's block W_hn of W_h",
                  "the GRU's ‖∂h_T/∂h_1‖, its state Jacobian over T-1 steps",
                  "the same fit of\n             ‖∂h_T/∂h_t‖ for t = 1 … T",
                  "the GRU's mean update gate",
                  "its state h_t = (1 - z) n + z h_t-1 carries the gradient through the update gate z, "
                  "not through W_hn alone.")}


@experiment("vanishing")
def vanishing(T: int = 30, H: int = 16, radii: tuple = (0.5, 0.9, 1.0, 1.1, 1.5),
              gains: tuple = (1.0, 4.0), cell: Optional[str] = None, cell_input: str = "tanh") -> Result:
    """‖∂L_T/∂h_t‖ against T-t for W_hh scaled to several spectral radii, RNN and LSTM (or GRU)."""
    V = 4
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, V, T), rng.integers(0, V, T)
    other = "lstm" if cell is None else None if cell == "rnn" else cell  # the cell beside the RNN
    cells = ("rnn",) + ((other,) if other else ())
    runs = {}
    for cell in cells:
        for gain in gains:
            for rho in radii:
                kw = {"cell_input": cell_input} if cell == "lstm" else {}
                model = _scaled(cell, rho, gain, V, H, **kw)
                g = np.linalg.norm(analysis.hidden_grads(model, inputs, targets, loss="last"), axis=-1)
                J = analysis.state_jacobians(model, inputs)
                j = np.array([np.linalg.norm(Jt, 2) for Jt in J])
                runs[cell, gain, rho] = dict(grad=g, jac=j, rate=_rate(g), jac_rate=_rate(j),
                                             mean=_mean_derivative(model, inputs), ratio=g[0] / g[-1])
    rows = []
    for gain in gains:
        for rho in radii:
            row = [f"{gain:g}", f"{rho:.2f}", f"{rho ** (T - 1):.1e}"]
            for cell in cells:
                r = runs[cell, gain, rho]
                row += [f"{r['ratio']:.1e}", f"{r['jac'][0]:.1e}", f"{r['rate']:.3f}", f"{r['jac_rate']:.3f}",
                        f"{r['mean']:.2f}"]
            rows.append(row)
    name, jac, gate, block, jac_says, fit_says, gate_says, path_says = _GATED.get(other, ("",) * 8)
    headers = ["gain", "ρ", "ρ^(T-1)"] + ["h_1/h_T", "‖Π‖", "rate", "rate ‖Π‖", "tanh'"] + (
        ["h_1/h_T", jac, "rate", "rate " + jac, gate] if other else [])
    groups = [("input", 3), ("RNN", 5)] + ([(name, 5)] if other else [])
    rnn1 = [runs["rnn", gains[0], rho]["rate"] for rho in radii]
    big, sat = max(radii), runs["rnn", gains[-1], max(radii)]
    below = all(runs["rnn", gain, rho]["rate"] < rho for gain in gains for rho in radii)
    lines = [f"The last step's loss L_T sent back T = {T} steps (H = {H}, random input over 4 symbols). The recurrent",
             "weights are scaled to spectral radius ρ" + (f" (the {name}: {block})" if other else "")
             + ", the input weights", "multiplied by gain (a strong input drives tanh into saturation).",
             "  h_1/h_T    ‖∂L_T/∂h_1‖ / ‖∂L_T/∂h_T‖, which the lecture notes estimate as ρ^(T-1)",
             "  ‖Π‖        ‖∂h_T/∂h_1‖ = ‖Π_t diag(tanh'(a_t)) W_hh‖ over T-1 steps (analysis.state_jacobians)"]
    if other:
        lines += [f"  ‖J‖        {jac_says}",
                  f"  rate       the factor r of a fit ‖∂L_T/∂h_t‖ ≈ c r^(T-t); rate ‖Π‖, rate ‖J‖: {fit_says}",
                  f"  tanh', {gate}   the RNN's mean tanh'(a_t) = 1 - h_t^2; {gate_says}"]
    else:
        lines += ["  rate       the factor r of a fit ‖∂L_T/∂h_t‖ ≈ c r^(T-t); rate ‖Π‖: the same fit of "
                  "‖∂h_T/∂h_t‖", "  tanh'      the RNN's mean tanh'(a_t) = 1 - h_t^2"]
    lines += ["", _table(headers, rows, groups=groups), "",
             "The lecture notes: the gradient falls like ρ^(T-t), so a smaller ρ means faster decay.",
             f"So it does: the RNN's rate grows with ρ (gain {gains[0]:g}): " + " < ".join(f"{r:.2f}" for r in rnn1) + ".",
             ("Too simple: the rate stays below ρ, since tanh' < 1 multiplies every step." if below else
              "Too simple: the rate is not ρ; tanh' < 1 multiplies every step."),
             f"With input gain {gains[-1]:g} the units saturate (mean tanh' {sat['mean']:.2f}) and ρ = {big:g} "
             f"{'vanishes too' if sat['rate'] < 1 else 'still explodes'} (rate {sat['rate']:.2f})."]
    if other:
        gated1 = [runs[other, gains[0], rho]["rate"] for rho in radii]
        less = max(gated1) - min(gated1) < max(rnn1) - min(rnn1)
        lines += [f"The {name}'s rate moves {'less' if less else 'more'} with ρ ({gated1[0]:.2f} -> {gated1[-1]:.2f}; "
                  f"the RNN's {rnn1[0]:.2f} -> {rnn1[-1]:.2f}):", path_says]

    def draw(fig: Any) -> None:
        panels = [("rnn", gains[0]), ("rnn", gains[-1])] + ([(other, gains[0])] if other else [])
        axes = fig.subplots(1, len(panels), sharey=True)
        d = np.arange(T)[::-1]
        for ax, (cell, gain) in zip(axes, panels):
            for k, rho in enumerate(radii):
                r = runs[cell, gain, rho]
                ax.semilogy(d, r["grad"], "-", color=_COLOURS[k], lw=1.8, label=f"ρ = {rho:g}: rate {r['rate']:.2f}")
                if cell == "rnn":
                    ax.semilogy(d, r["grad"][-1] * rho ** d, ":", color=_COLOURS[k], lw=1.2)
            ax.set_title(f"{cell.upper()}, input gain {gain:g}" + (" (saturated)" if gain != gains[0] else ""),
                         fontsize=10)
            ax.set_xlabel("distance back in time  $T - t$  (steps)")
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, title="solid: measured" + ("   dotted: ρ^(T−t)" if cell == "rnn" else ""),
                      title_fontsize=8, loc="lower left")
        axes[0].set_ylabel(r"$\Vert\partial L_T\,/\,\partial h_t\Vert$  (log scale)")

    return Result("vanishing", "‖∂L_T/∂h_t‖ falls like ρ^(T−t) only roughly: saturated tanh makes ρ > 1 vanish too",
                  "\n".join(lines), dict(runs=runs, radii=radii, gains=gains, T=T, cells=cells), draw)


# ---- copies ----------------------------------------------------------------------------------------------
@experiment("copies")
def copies(cell: str = "rnn", cell_input: str = "tanh") -> Result:
    """The gradient of each step's copy of the hello model's shared weights, their sum, and .grad."""
    model, vocab, inputs, targets = _hello_model(cell, **({"cell_input": cell_input} if cell == "lstm" else {}))
    per_step = analysis.per_step_grads(model, inputs, targets)
    logits, _ = model(inputs)
    nn.cross_entropy(logits, targets).backward()
    params = model.named_parameters()
    names = list(params)
    T = len(inputs)
    norms = {n: np.array([np.linalg.norm(per_step[n][t]) for t in range(T)]) for n in names}
    diffs = {n: float(np.abs(per_step[n].sum(axis=0) - params[n].grad).max()) for n in names}
    full = {n: float(np.linalg.norm(params[n].grad)) for n in names}
    summed = {n: float(np.linalg.norm(per_step[n].sum(axis=0))) for n in names}
    model.zero_grad()
    # steps counted t = 1 … T as in the book and the pictures (entry t - 1 of each array)
    rows = [[f"t={t + 1} {vocab.chars[inputs[t]]!r}->{vocab.chars[targets[t]]!r}"] + [f"{norms[n][t]:.4f}" for n in names]
            for t in range(T)]
    rows.append(["‖Σ_t ∂L/∂θ_t‖"] + [f"{summed[n]:.4f}" for n in names])
    rows.append(["‖.grad‖ (backward)"] + [f"{full[n]:.4f}" for n in names])
    rows.append(["max |Σ_t - .grad|"] + [f"{diffs[n]:.1e}" for n in names])
    ok = max(diffs.values()) <= 1e-12
    text = "\n".join([
        "The trained hello model (3 hidden units, 200 Adagrad steps on 'hell' -> 'ello', as `tinygrad-rnn demo`)."
        if cell == "rnn" else f"The hello model with {'a GRU' if cell == 'gru' else 'an LSTM'} cell (3 hidden units, 200 Adagrad steps on "
        "'hell' -> 'ello').",
        "Each row: ‖∂L/∂θ_t‖, the gradient of step t's copy θ_t of each shared weight (analysis.per_step_grads).",
        "",
        _table(["step"] + names, rows), "",
        "The lecture notes: ∇θ is the sum of the gradients for each copy θ_t.",
        f"Here the sum equals .grad to {max(diffs.values()):.1e} ({'within' if ok else 'NOT within'} 1e-12).",
        f"{'cell.W_hh' if cell == 'rnn' else 'cell.W_h'} at t=1 multiplies the initial state h(0) = 0, "
        "so its first copy gets no gradient."])

    def draw(fig: Any) -> None:
        ax = fig.subplots(1, 1)
        width = 0.8 / len(names)
        colours = _weight_colours(names)  # each weight in its colour of the graph pictures
        for k, n in enumerate(names):
            ax.bar(np.arange(1, T + 1) + (k - (len(names) - 1) / 2) * width, norms[n], width, color=colours[n],
                   label=n)
        ax.set_xticks(range(1, T + 1), [f"t={t + 1}\n{vocab.chars[inputs[t]]!r} → {vocab.chars[targets[t]]!r}"
                                        for t in range(T)])
        ax.set_ylabel("‖∂L / ∂θ_t‖  (the copy at step t)")
        ax.set_xlabel("time step t")
        ax.legend(fontsize=8, title=f"max |Σ_t ∂L/∂θ_t − .grad| = {max(diffs.values()):.0e}", title_fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)

    return Result("copies", "∇θ = Σ_t ∂L/∂θ_t: the gradient of each step's copy of the shared weights (hello model"
                  + ("" if cell == "rnn" else f", {cell.upper()}") + ")",
                  text, dict(norms=norms, max_diff=diffs, grad_norm=full, ok=ok), draw)


# ---- influence -------------------------------------------------------------------------------------------
_SHADES = "@%#*+=-:. "  # darkest for the largest ‖∂L_t/∂h_k‖, one shade per decade below the row's top


def _shaded(M: np.ndarray, decades: int = 9) -> list:
    """M as text: one character per entry, shaded by log10 of M below the map's maximum; blank where k > t."""
    top = np.log10(M.max())
    lines = []
    for t, row in enumerate(M):
        cells = []
        for k, value in enumerate(row):
            if k > t:
                cells.append(" ")
            else:
                level = 0 if value <= 0 else int(np.clip(np.floor(top - np.log10(value)), 0, decades))
                cells.append(_SHADES[min(level, len(_SHADES) - 1)])
        lines.append("".join(cells))
    return lines


@experiment("influence")
def influence(T: int = 30, H: int = 16, forget_bias: float = 3.0, cell: Optional[str] = None,
              cell_input: str = "tanh") -> Result:
    """The map M[t, k] = ‖∂L_t/∂h_k‖ of an RNN, an LSTM, and an LSTM whose forget gate keeps its state.

    Same size, untrained, on 'hellohello…'; the third LSTM's forget-gate bias is raised (f near 1).
    cell="gru" shows the RNN and a GRU instead, cell="rnn" the RNN alone."""
    vocab = Vocab("hello")
    inputs, targets = _hello_ids(vocab, T)
    lstm = cell in (None, "lstm")
    models = {"RNN": nn.CharRNN(vocab.size, H, "rnn", rng=np.random.default_rng(0))}
    if cell == "gru":
        models["GRU"] = nn.CharRNN(vocab.size, H, "gru", rng=np.random.default_rng(0))
    if lstm:
        models["LSTM"] = nn.CharRNN(vocab.size, H, "lstm", rng=np.random.default_rng(0), cell_input=cell_input)
        models[f"LSTM, b_f + {forget_bias:g}"] = kept = nn.CharRNN(vocab.size, H, "lstm", cell_input=cell_input,
                                                                  rng=np.random.default_rng(0))
        kept.cell.b.data[H:2 * H] += forget_bias
    maps = {name: analysis.influence(model, inputs, targets) for name, model in models.items()}
    reach = {name: float(M[T - 1, 0] / M[T - 1, T - 1]) for name, M in maps.items()}
    shaded = {name: _shaded(M) for name, M in maps.items()}
    lines = ["M[t, k] = ‖∂L_t/∂h_k‖ (analysis.influence, entry [t-1, k-1]): how far back the loss of step t reaches.",
             f"Untrained, H = {H}, T = {T}, 'hellohello…'"
             + (f"; the third model is the LSTM with {forget_bias:g} added to its forget gate's bias." if lstm else "."),
             "Rows t = 1 … T (the loss L_t), columns k = 1 … T (the state h_k); one shade per decade below the map's largest",
             f"entry: '{_SHADES[0]}' the top decade, then {' '.join(repr(c) for c in _SHADES[1:-1])}, blank below "
             "that and where k > t.", "",
             "       " + "   ".join(f"{name:<{T}}" for name in maps).rstrip()]
    lines += [f"t={t:<3d}  " + "   ".join(rows).rstrip() for t, rows in enumerate(zip(*shaded.values()), start=1)]
    lines += ["", _table(["model", "M[T, T]", "M[T, 1]", "M[T, 1] / M[T, T]"],
                         [[name, f"{M[T - 1, T - 1]:.2e}", f"{M[T - 1, 0]:.2e}", f"{reach[name]:.1e}"]
                          for name, M in maps.items()]), ""]
    if lstm:
        lines += ["At initialisation the LSTM's forget gate is near 0.5, so s_t halves its memory (and its gradient) each",
                  "step; with f near 1 the last loss reaches h_1 with "
                  f"{reach[list(maps)[-1]]:.0e} of its weight on h_T, against {reach['RNN']:.0e} for the RNN."]
    elif cell == "gru":
        lines += ["The GRU's state h_t = (1 - z) n + z h_t-1 keeps z of h_t-1 each step, z near 0.5 untrained (as the",
                  f"LSTM's forget gate): the last loss reaches h_1 with {reach['GRU']:.0e} of its weight on h_T, against "
                  f"{reach['RNN']:.0e} for the RNN."]
    else:
        lines += [f"The RNN's last loss reaches h_1 with {reach['RNN']:.0e} of its weight on h_T."]

    def draw(fig: Any) -> None:
        from matplotlib.colors import LogNorm
        if len(maps) == 1:  # the RNN alone: a square map, not a wide page with one map at its right
            fig.set_size_inches(6.5, fig.get_size_inches()[1])
        axes = np.atleast_1d(fig.subplots(1, len(maps)))
        positive = np.concatenate([M[M > 0] for M in maps.values()])
        norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-12), vmax=positive.max())
        for ax, (name, M) in zip(axes, maps.items()):
            shown = np.ma.masked_where(np.triu(np.ones_like(M, dtype=bool), 1) | (M <= 0), M)
            image = ax.imshow(shown, norm=norm, cmap="magma", origin="upper",  # steps 1 … T on both axes
                              extent=(0.5, T + 0.5, T + 0.5, 0.5))
            ax.set_title(f"{name}: M[T, 1] / M[T, T] = {reach[name]:.0e}", fontsize=9)
            ax.set_xlabel("k  (the state h_k)")
        axes[0].set_ylabel("t  (the loss L_t)")
        fig.colorbar(image, ax=axes, label="M[t, k] = ‖∂L_t / ∂h_k‖", shrink=0.85)

    return Result("influence", "How far back each step's loss reaches: M[t, k] = ‖∂L_t/∂h_k‖ (untrained, H = "
                  f"{H})", "\n".join(lines), dict(maps=maps, reach=reach), draw)


# ---- truncation ------------------------------------------------------------------------------------------
def _truncated_grad(model: nn.CharRNN, inputs: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """All parameters' gradient, flattened, of truncated BPTT in chunks of k (state detached in between)."""
    model.zero_grad()
    state = None
    for start in range(0, len(inputs), k):
        logits, state = model(inputs[start:start + k], state)
        nn.cross_entropy(logits, targets[start:start + k]).backward()
        state = nn.detach_state(state)
    grad = np.concatenate([p.grad.ravel() for p in model.parameters()])
    model.zero_grad()
    return grad


@experiment("truncation")
def truncation(long: int = 100, ks: tuple = (1, 2, 5, 10, 25), cell: str = "rnn", cell_input: str = "tanh") -> Result:
    """Truncated-BPTT gradients against the full one as the chunk length k grows (hello model)."""
    model, vocab, inputs, targets = _hello_model(cell, **({"cell_input": cell_input} if cell == "lstm" else {}))
    cases = {"'hell' (T=4)": (inputs, targets), f"'hellohello…' (T={long})": _hello_ids(vocab, long)}
    ks = tuple(sorted(set(ks) | {len(x) for x, _ in cases.values()}))  # every curve reaches its k = T
    scores = {}
    for case, (x, y) in cases.items():
        full = _truncated_grad(model, x, y, len(x))
        for k in ks:
            g = _truncated_grad(model, x, y, k)
            scores[case, k] = dict(cos=float(g @ full / (np.linalg.norm(g) * np.linalg.norm(full))),
                                   rel=float(np.linalg.norm(g - full) / np.linalg.norm(full)))
    rows = [[f"k = {k}"] + [f"{scores[c, k]['cos']:.6f}  {scores[c, k]['rel']:.1e}" for c in cases] for k in ks]
    text = "\n".join([
        "Truncated BPTT (the state carried but detached every k steps, as `tinygrad-rnn train` does) against",
        "the full gradient, on the trained hello model" + ("." if cell == "rnn" else f" ({cell.upper()} cell)."),
        "Each cell: cosine similarity   relative error ‖g_k - g‖/‖g‖ (all parameters together).", "",
        _table(["chunk"] + list(cases), rows), "",
        f"k >= T is full BPTT (error 0: k = 4 for 'hell', k = {long} for the long case); the smaller k,",
        "the more of each loss's reach into the past is cut off."])

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 2)
        floor = 1e-16  # an exact 0 (k >= T) is drawn here and said so
        for j, case in enumerate(cases):
            T = len(cases[case][0])
            for ax, key in zip(axes, [lambda k: 1 - scores[case, k]["cos"], lambda k: scores[case, k]["rel"]]):
                values = np.array([key(k) for k in ks])
                ax.plot(ks, np.maximum(values, floor), "o-", color=_COLOURS[j], label=case)
                ax.axvline(T, color=_COLOURS[j], lw=0.8, ls=":")
                ax.text(T, 0.5, f"k = T = {T}  ", transform=ax.get_xaxis_transform(), rotation=90, fontsize=8,
                        color=_COLOURS[j], ha="right", va="center")
        for ax, what in zip(axes, ["1 − cos(g_k, g)", "‖g_k − g‖ / ‖g‖"]):
            ax.axhline(floor, color="#999999", lw=0.8, ls="--")
            ax.text(ks[0], floor * 3, "exact: 0 error (drawn at 1e-16)", fontsize=8, color="#666666")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.set_xlabel("truncation length k (steps; the sequence has T)")
            ax.set_ylabel(what)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)

    return Result("truncation", "Truncated BPTT in chunks of k steps against full BPTT: exact once k ≥ T, biased below",
                  text, dict(scores=scores, cases=list(cases), ks=ks), draw)


# ---- rtrl ------------------------------------------------------------------------------------------------
def _bptt_grads(model: nn.CharRNN, inputs: np.ndarray, targets: np.ndarray) -> dict:
    """The reverse-mode gradient: the forward pass over all T steps, then one backward."""
    logits, _ = model(inputs)
    nn.cross_entropy(logits, targets).backward()
    grads = {name: p.grad for name, p in model.named_parameters().items()}
    model.zero_grad()
    return grads


def _cost(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """fn()'s result, its best wall time of up to 3 runs (time.perf_counter; repeated only while quick)
    and, from one more run, its peak of memory allocated (tracemalloc: every array and object it makes)."""
    times: list = []
    while len(times) < 3 and sum(times) < 0.2:  # the fastest run is the least disturbed, as timeit says
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    seconds = min(times)
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, seconds, peak


@experiment("rtrl")
def rtrl(Ts: tuple = (10, 100, 300), Hs: tuple = (4, 8, 12), H: int = 8, T: int = 50, V: int = 10,
         cells: tuple = ("rnn", "lstm"), cell_input: str = "tanh") -> Result:
    """Forward-mode RTRL against BPTT: equal gradients; time and memory as T and H grow."""
    rng = np.random.default_rng(0)
    sizes = [(H, t) for t in Ts]
    sizes += [(h, T) for h in sorted(set(Hs) | {H}) if (h, T) not in sizes]  # T fixed, H growing
    runs = {}
    for cell in cells:
        for h, t in sizes:
            model = nn.CharRNN(V, h, cell, rng=np.random.default_rng(1),
                               **({"cell_input": cell_input} if cell == "lstm" else {}))
            inputs, targets = rng.integers(0, V, t), rng.integers(0, V, t)
            forward, f_s, f_mem = _cost(lambda: analysis.rtrl_grads(model, inputs, targets))
            reverse, r_s, r_mem = _cost(lambda: _bptt_grads(model, inputs, targets))
            runs[cell, h, t] = dict(P=sum(p.size for p in model.parameters()),
                                    err=max(float(np.abs(forward[k] - reverse[k]).max()) for k in reverse),
                                    rtrl_s=f_s, bptt_s=r_s, rtrl_mem=f_mem, bptt_mem=r_mem)
    rows = [[cell, str(h), str(t), str(r["P"]), f"{r['err']:.0e}", f"{r['rtrl_s'] * 1e3:.0f}", f"{r['bptt_s'] * 1e3:.0f}",
             f"{r['rtrl_s'] / r['bptt_s']:.1f}", f"{r['rtrl_mem'] / 1e6:.2f}", f"{r['bptt_mem'] / 1e6:.2f}"]
            for (cell, h, t), r in runs.items()]
    headers = ["cell", "H", "T", "P", "max |Δ|", "RTRL", "BPTT", "ratio", "RTRL", "BPTT"]
    groups = [("model", 4), ("grads", 1), ("time (ms)", 3), ("peak memory (MB)", 2)]
    worst = max(r["err"] for r in runs.values())
    T0, T1 = min(Ts), max(Ts)
    grow = {(cell, mode): runs[cell, H, T1][f"{mode}_mem"] / runs[cell, H, T0][f"{mode}_mem"]
            for cell in cells for mode in ("rtrl", "bptt")}
    lines = [f"The same CharRNN's gradient (V = {V} symbols, random input) by the engine's two modes on one graph:",
             "  RTRL  analysis.rtrl_grads: forward mode, one tangent direction per parameter entry (P of them),",
             "        dz_t/dθ carried from step to step, nothing of step t kept after it; no backward",
             "  BPTT  the forward pass over all T steps kept as a graph, then one backward",
             "time: time.perf_counter, one run; memory: tracemalloc's peak during a second run.", "",
             _table(headers, rows, groups=groups), "",
             f"The gradients agree to {worst:.0e} (max |Δ| over every parameter entry).",
             f"From T = {T0} to {T1} at H = {H}, RTRL's peak memory changes x"
             + ", x".join(f"{grow[c, 'rtrl']:.1f} ({c})" for c in cells) + ";",
             "BPTT's grows x" + ", x".join(f"{grow[c, 'bptt']:.0f} ({c})" for c in cells)
             + ": it keeps every step's arrays for its backward.",
             "RTRL keeps dz_t/dθ (P x |z|) and the parameters' own tangents, the P x P identity, which is most",
             "of its memory at larger H.",
             "RTRL pays in time instead: every op of every step works on P directions, so its cost per step grows",
             "with P (P = H^2 + 2HV + H + V for an RNN, 4H^2 + 5HV + 4H + V for an LSTM"
             + (",\n3H^2 + 4HV + 6H + V for a GRU" if "gru" in cells else "") + "), BPTT's with H^2 + HV:",
             "forward mode is cheap for few inputs (directions), reverse mode for few outputs (here one loss)."]

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 3)
        # colour: the mode (RTRL orange, BPTT blue); line and marker: the cell (RNN solid with filled circles,
        # LSTM dashed with open squares, GRU dotted with open triangles), so the legend tells all four apart
        styles = {"rnn": ("-", "o", None), "lstm": ("--", "s", "white"), "gru": (":", "^", "white")}
        for cell in cells:
            ls, marker, face = styles.get(cell, ("-.", "D", "white"))
            for k, mode in enumerate(("rtrl", "bptt")):
                kw = dict(ls=ls, marker=marker, color=_COLOURS[k], label=f"{mode.upper()}, {cell.upper()}", ms=6,
                          **({"mfc": face} if face else {}))
                by_T = [runs[cell, H, t] for t in Ts]
                axes[0].loglog(Ts, [r[f"{mode}_s"] for r in by_T], **kw)
                axes[1].loglog(Ts, [r[f"{mode}_mem"] / 1e6 for r in by_T], **kw)
                by_H = sorted((runs[cell, h, T] for h in sorted(set(Hs) | {H})), key=lambda r: r["P"])
                axes[2].loglog([r["P"] for r in by_H], [r[f"{mode}_s"] / T * 1e3 for r in by_H], **kw)
        for ax, title, xlabel, ylabel in [
                (axes[0], f"time against T (H = {H})", "sequence length T (steps)", "time (s)"),
                (axes[1], f"peak memory against T (H = {H})", "sequence length T (steps)", "peak memory (MB)"),
                (axes[2], f"time per step against P (T = {T})",
                 f"parameter entries P (H = {', '.join(map(str, sorted(set(Hs) | {H})))})", "time per step (ms)")]:
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, handlelength=4)

    return Result("rtrl", "RTRL (forward mode) and BPTT (reverse mode): the same gradient; RTRL's memory is flat "
                  "in T, its time grows with P", "\n".join(lines),
                  dict(runs=runs, Ts=Ts, Hs=Hs, H=H, T=T, cells=cells, worst=worst), draw)


@experiment("memory")
def memory(Ts: tuple = (100, 1000, 10000), H: int = 16, V: int = 4, k: int = 10,
           budgets: tuple = (64, 8), rtrl_up_to: int = 1000, cell: str = "rnn", cell_input: str = "tanh") -> Result:
    """Memory against time: BPTT storing every step, every k, sqrt(T), memory budgets (Gruslys et al.), RTRL."""
    rng = np.random.default_rng(0)
    modes = {"all stored": None, f"every {k}": k, "sqrt(T)": "sqrt",
             **{f"{m} slots": nn.MemoryBudget(slots=m) for m in budgets}, "RTRL": "rtrl"}
    kw = {"cell_input": cell_input} if cell == "lstm" else {}
    runs = {}
    for T in Ts:
        inputs, targets = rng.integers(0, V, T), rng.integers(0, V, T)
        for name, mode in modes.items():
            if mode == "rtrl" and T > rtrl_up_to:  # its time is P-fold: the longest runs would take minutes
                continue
            model = nn.CharRNN(V, H, cell, rng=np.random.default_rng(1),
                               checkpoint=None if mode == "rtrl" else mode, **kw)
            if mode == "rtrl":
                fn, steps = (lambda: analysis.rtrl_grads(model, inputs, targets)), T
            else:
                def fn():
                    model.loss(inputs, targets)[0].backward()
                    model.zero_grad()
                steps = (T if mode is None else 2 * T) if not isinstance(mode, nn.MemoryBudget) else mode.plan(T)[0]
            _, seconds, peak = _cost(fn)
            runs[name, T] = dict(steps=steps, s=seconds, mem=peak)
    rows = [[name, f"{T:,}", f"{r['steps']:,}", f"{r['steps'] / T:.2f}", f"{r['s'] * 1e3:,.0f}",
             f"{r['s'] / r['steps'] * 1e6:.0f}", f"{r['mem'] / 1e6:.3f}"] for (name, T), r in runs.items()]
    rows.sort(key=lambda row: list(modes).index(row[0]))
    headers = ["schedule", "T", "forward steps", "per step", "time (ms)", "us/fwd step", "peak (MB)"]
    T1 = max(Ts)
    full = runs["all stored", T1]
    lines = [f"One gradient of a CharRNN ({cell}, op-level, H = {H}, V = {V}, float64) over T steps, summed "
             "cross-entropy (model.loss), by schedule:",
             "  all stored  every step's arrays kept for backward (checkpoint=None): T forward steps",
             f"  every {k:<5} the state every {k} steps kept, each segment run again in backward: 2T",
             "  sqrt(T)     every ceil(sqrt(T)) steps (Chen et al. 2016): 2T",
             "  m slots     at most m states (nn.MemoryBudget, Gruslys et al. 2016's schedule): C(T, m) by their",
             "              dynamic program (each step is run again from a stored state to be differentiated)",
             f"  RTRL        forward mode, nothing kept across steps, P tangent directions per step (T <= {rtrl_up_to:,})",
             "time: best of up to 3 runs (time.perf_counter); peak: tracemalloc during one more run.", "",
             _table(headers, rows), "",
             f"At T = {T1:,}, against storing every step:",
             *[f"  {name:<11} {runs[name, T1]['mem'] / full['mem']:.3f}x the memory, {runs[name, T1]['s'] / full['s']:.1f}x "
               "the time" for name in modes if (name, T1) in runs and name != "all stored"],
             "Storing every step grows linearly with T; the checkpointed schedules grow with the states they keep",
             "(sqrt(T) ones, or at most m), and pay in forward steps. A budget's steps are not all alike: those",
             "run inside an advance build no graph, while each of its T differentiated steps is a small graph and",
             "a backward of its own, so its time follows T more than C(T, m). RTRL needs no stored steps but",
             "carries P tangents through every op."]

    def draw(fig: Any) -> None:
        left, right = fig.subplots(1, 2)
        for j, name in enumerate(modes):
            colour, marker = _COLOURS[j % len(_COLOURS)], "os^vDx"[j % 6]
            ts = [T for T in Ts if (name, T) in runs]
            left.loglog(ts, [runs[name, T]["mem"] / 1e6 for T in ts], marker + "-", color=colour, label=name)
            right.loglog([runs[name, T]["mem"] / 1e6 for T in ts], [runs[name, T]["s"] for T in ts], marker + "-",
                         color=colour, alpha=0.35)
            r, T = runs[name, ts[-1]], ts[-1]
            right.loglog([r["mem"] / 1e6], [r["s"]], marker, color=colour, markersize=9,
                         label=f"{name}: {r['steps'] / T:.3g} forward steps per step" + (f" (T = {T:,})" if T != T1 else ""))
        left.set_title("peak memory against T", fontsize=10)
        left.set_xlabel("sequence length T (steps)")
        left.set_ylabel("peak memory (MB, tracemalloc)")
        right.set_title(f"time against memory (T = {min(Ts):,} … {T1:,}; large marker: the longest)", fontsize=10)
        right.set_xlabel("peak memory (MB, tracemalloc)")
        right.set_ylabel("time of one gradient (s)")
        for ax in (left, right):
            ax.grid(True, which="major", alpha=0.3)
        left.legend(fontsize=8)
        right.legend(fontsize=7, loc="lower right")

    return Result("memory", "BPTT trades memory for time: the fewer states stored, the more forward steps run again", "\n".join(lines), dict(runs=runs, Ts=Ts, modes=list(modes)), draw)
