"""report.md and the anytime curves of a comparison, built from MLflow alone (`popplast report`).

The same comparison run gives the same files: nothing here reads clocks or popplast's memory.
"""

from __future__ import annotations

import math
import os

import numpy as np
from mlflow import MlflowClient

from popplast.reports.comparison import Cell, Comparison, read_comparison
from popplast.reports.stats import band, best_so_far, holm, mean_std, reach, wilcoxon

REPORT_FILES = ("report.md", "anytime_evaluations.png", "anytime_seconds.png", "anytime_epochs.png")
_VIRTUAL = (
    " Seconds are virtual: the searches ran on a simulated cluster (`--executor simulated`), and a "
    "search's wall seconds run from its first evaluation's start to its last one's end."
)


def build_report(tracking_uri: str, comparison_run_id: str, out: str, log: bool = False) -> list[str]:
    """Write report.md and the three PNGs into `out`; with `log`, attach them to the comparison run."""
    client = MlflowClient(tracking_uri)
    comparison = read_comparison(client, comparison_run_id)
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, name) for name in REPORT_FILES]
    with open(paths[0], "w") as f:
        f.write(report_markdown(comparison))
    plot_anytime(comparison, paths[1], by="evaluations")
    plot_anytime(comparison, paths[2], by="seconds")
    plot_anytime(comparison, paths[3], by="epochs")
    if comparison.several is not None:
        paths.append(os.path.join(out, "fronts.png"))
        plot_fronts(comparison, paths[-1])
    if log:
        for path in paths:
            client.log_artifact(comparison_run_id, path, "report")
    return paths


def target_method(comparison: Comparison) -> str:
    """Whose median final score the others race to: TPE's, else the first method's."""
    from popplast.strategies.catalogue import CATALOGUE

    reference = [m for m in comparison.methods if m in CATALOGUE and CATALOGUE[m].reference]
    return reference[0] if reference else comparison.methods[0]


def report_markdown(c: Comparison) -> str:
    methods = [m for m in c.methods if any(k[0] == m for k in c.cells)]
    target_of = target_method(c)
    target_scores = [c.cells[k].best_fitness for k in c.cells if k[0] == target_of]
    target = float(np.median(target_scores)) if target_scores else math.nan
    s = c.settings
    fitness, test = c.fitness_name, c.test_name
    best = f"final {fitness}" if c.several is not None else f"best {fitness}"  # a hypervolume only grows
    stopped = (
        "objectives what they returned when stopped."
        if c.several is not None
        else f"fitness is their last reported {fitness}."
    )
    # columns only for what the evaluations measured: a user's objective may train no images, count no passes
    backward = any("backward_passes" in x.counted for x in c.cells.values())
    sizes = any("image_size" in x.counted for x in c.cells.values())
    columns = [
        "method",
        "seeds",
        best,
        *([test] if test else []),
        "evaluations",
        "reached",
        "evaluations to target",
        "epochs to target",
        "seconds to target",
        "wall seconds",
        "training epochs",
        *(["backward passes"] if backward else []),
        *(["image sizes"] if sizes else []),
    ]
    lines = [
        f"# Comparison {c.run_id}",
        "",
        f"Search space `{s.get('space_file', '?')}`; budget {_budget(s)} per search; "
        f"{s.get('workers', '?')} workers; seeds {', '.join(map(str, c.seeds))} (paired: within a seed every "
        f"method has the same data split). {_what_is_measured(c)}",
        "",
        "## Per method (mean ± std over seeds)",
        "",
        f"Target: the median {'' if c.several is not None else 'final '}{best} of {target_of}, {target:.4f}. "
        '"Reached" counts the seeds '
        "whose search got there; evaluations, epochs and seconds to the target are means over those seeds. A "
        "method with a stopper (METHOD+RULE, tpe-hyperband) stops individuals early: they count the epochs they "
        f"trained, and their {stopped} {_training(c, backward, sizes)}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for m in methods:
        cells = _cells(c, m)
        reached = [r for r in (reach(cell, target) for cell in cells) if r is not None]
        evals_to = _pm(*mean_std([float(r[0]) for r in reached]), digits=1) if reached else "–"
        secs_to = _pm(*mean_std([r[1] for r in reached]), digits=1) if reached else "–"
        epochs_to = _pm(*mean_std([r[2] for r in reached]), digits=1) if reached else "–"
        row = [
            m,
            str(len(cells)),
            _pm(*mean_std([x.best_fitness for x in cells])),
            *([_pm(*mean_std([x.test for x in cells]))] if test else []),
            _pm(*mean_std([len(x.fitness) for x in cells]), 1),
            f"{len(reached)}/{len(cells)}",
            evals_to,
            epochs_to,
            secs_to,
            _pm(*mean_std([x.wall_seconds for x in cells]), digits=1),
            _pm(*mean_std([x.epochs for x in cells]), digits=1),
            *([_pm(*mean_std([x.backward_passes for x in cells]), digits=0)] if backward else []),
            *([_sizes(cells)] if sizes else []),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Paired tests",
        "",
        "Two-sided Wilcoxon signed-rank tests over the seeds both methods finished; effect size: matched-pairs "
        "rank-biserial correlation r (positive: the first method scored higher; ±1: on every seed). With few "
        "seeds the smallest possible p-value is large (0.0625 with 5 seeds): read r and the differences too. "
        "p (Holm): the p-values of each table adjusted together for multiple comparisons (Holm's step-down).",
        "",
    ]
    for label, attr in ([(test, "test")] if test else []) + [(best, "best_fitness")]:
        lines += [
            f"### {label}",
            "",
            "| A | B | pairs | mean A − B | p | p (Holm) | r |",
            "|---|---|---|---|---|---|---|",
        ]
        tests = []
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                seeds = [sd for sd in c.seeds if (a, sd) in c.cells and (b, sd) in c.cells]
                tests.append(
                    wilcoxon(
                        a,
                        [getattr(c.cells[(a, sd)], attr) for sd in seeds],
                        b,
                        [getattr(c.cells[(b, sd)], attr) for sd in seeds],
                    )
                )
        for t, adjusted in zip(tests, holm([t.p_value for t in tests])):
            p = "n/a (all tied)" if math.isnan(t.p_value) else f"{t.p_value:.4f}"
            q = "n/a" if math.isnan(adjusted) else f"{adjusted:.4f}"
            lines.append(f"| {t.a} | {t.b} | {t.n} | {t.mean_difference:+.4f} | {p} | {q} | {t.rank_biserial:+.2f} |")
        lines.append("")
    lines += _fusions(c, methods)
    lines += _fronts(c, methods)
    so_far = f"The {fitness}" if c.several is not None else f"Best {fitness}"
    lines += [
        "## Anytime curves",
        "",
        f"{so_far} so far, mean over seeds with a 95% band (Student's t):",
        "",
        "![against evaluations](anytime_evaluations.png)",
        "",
        f"![against {'virtual' if c.simulated else 'wall'} time](anytime_seconds.png)",
        "",
        "![against training epochs](anytime_epochs.png)",
        "",
        "## Searches",
        "",
        f"| method | seed | search run | {best} |" + (f" {test} |" if test else ""),
        "|---|---|---|---|" + ("---|" if test else ""),
    ]
    for m in methods:
        for cell in _cells(c, m):
            lines.append(
                f"| {m} | {cell.seed} | {cell.search_run_id} | {cell.best_fitness:.4f} |"
                + (f" {cell.test:.4f} |" if test else "")
            )
    return "\n".join(lines) + "\n"


def _fusions(c: Comparison, methods: list[str]) -> list[str]:
    """What fusion cost the children of the methods that fuse, per generation over every seed (ALGORITHMS.md
    §12): the better parent's fitness minus the fused child's before training, and the parents' weighted
    mean's minus the child's; positive: the fusion lost something."""
    rows = []
    for m in methods:
        by_generation: dict[int, list[tuple[float, float]]] = {}
        for cell in _cells(c, m):
            for generation, best, mean in cell.barriers:
                by_generation.setdefault(generation, []).append((best, mean))
        for generation, values in sorted(by_generation.items()):
            best = np.array([b for b, _ in values])
            mean = np.array([w for _, w in values])
            q1, median, q3 = np.percentile(best, [25, 50, 75])
            rows.append(
                f"| {m} | {generation} | {len(values)} | {median:+.4f} ({q1:+.4f} to {q3:+.4f}) | "
                f"{np.median(mean):+.4f} | {int((best < 0).sum())} |"
            )
    if not rows:
        return []
    return [
        "## Fusions",
        "",
        f"Every fused child's {c.fitness_name} right after fusion, before training, against its parents' "
        "(over every seed, per generation): the barrier is the better parent's minus the child's (positive: the "
        "fusion lost something), and the parents' fitness-weighted mean's minus the child's; gained: fusions "
        "that began above the better parent.",
        "",
        "| method | generation | fusions | barrier vs better parent: median (quartiles) | vs weighted mean: median | "
        "gained |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _fronts(c: Comparison, methods: list[str]) -> list[str]:
    """Several objectives: each method's final front size and the fronts of the first seed side by side."""
    if c.several is None:
        return []
    from popplast.core import pareto

    lines = [
        "## Pareto fronts",
        "",
        "Feasible evaluations on each search's final front (mean ± std over seeds); the fronts of seed "
        f"{c.seeds[0]} side by side in fronts.png.",
        "",
        "| method | front size | feasible evaluations |",
        "|---|---|---|",
    ]
    for m in methods:
        cells = _cells(c, m)
        sizes = [float(len(pareto.first_front([v for v in x.vectors if v is not None]))) for x in cells]
        feasible = [float(sum(v is not None and v[-1] == 0 for v in x.vectors)) for x in cells]
        lines.append(f"| {m} | {_pm(*mean_std(sizes), digits=1)} | {_pm(*mean_std(feasible), digits=1)} |")
    return [*lines, "", "![fronts of one seed](fronts.png)", ""]


def plot_fronts(c: Comparison, path: str) -> None:
    """Each method's front in its first two objectives for the first seed, one panel per method, on shared axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from popplast.core import pareto

    methods = [m for m in c.methods if (m, c.seeds[0]) in c.cells]
    names = [m for m, _ in c.several.objectives]
    signs = [1.0 if d == "maximize" else -1.0 for _, d in c.several.objectives]
    x, y = (0, 1) if len(names) > 1 else (0, 0)
    columns = min(4, max(1, len(methods)))
    rows = -(-len(methods) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.4 * columns, 3.0 * rows), sharex=True, sharey=True, squeeze=False
    )
    for ax, m in zip(axes.flat, methods):
        vectors = [v for v in c.cells[(m, c.seeds[0])].vectors if v is not None]
        feasible = np.array([v[:-1] for v in vectors if v[-1] == 0]).reshape(-1, len(names)) * signs
        front = np.array([vectors[i][:-1] for i in pareto.first_front(vectors)]).reshape(-1, len(names)) * signs
        ax.scatter(feasible[:, x], feasible[:, y], s=8, c="#9aa7b4", alpha=0.6)
        order = np.argsort(front[:, x])
        ax.plot(front[order, x], front[order, y], "o-", ms=4, lw=1, c="#1f77b4")
        ax.set_title(f"{m}: {len(front)} on the front", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    for ax in axes.flat[: len(methods)]:  # a panel above a hidden one is the bottom of its column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel(names[x])
    for ax in axes[:, 0]:
        ax.set_ylabel(names[y])
    reference = ", ".join(f"{m} {v:.4g}" for m, v in c.reference.items())
    fig.suptitle(
        f"seed {c.seeds[0]}: feasible evaluations (grey) and the front; reference point ({reference})", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _what_is_measured(c: Comparison) -> str:
    """What the fitness and the test column are, and what the seconds are on a simulated cluster."""
    if c.several is not None:
        objectives = ", ".join(
            f"{m} ({'maximised' if d == 'maximize' else 'minimised'})" for m, d in c.several.objectives
        )
        constraints = "; ".join(str(k) for k in c.several.constraints)
        reference = ", ".join(f"{m} {v:.6g}" for m, v in c.reference.items())
        text = (
            f"Several objectives: {objectives}"
            + (f", under the constraints {constraints} (an infeasible evaluation adds nothing)" if constraints else "")
            + ". A search's score is the hypervolume of every feasible evaluation it made, against one reference "
            f"point for every search ({reference}; from {c.reference_from}); its anytime curve is that "
            "hypervolume after each evaluation."
        )
        return text + (_VIRTUAL if c.simulated else "")
    if c.mcc:
        text = "Fitness is the validation MCC; the test MCC is the best individual's."
    else:
        metric = c.fitness_name.lstrip("−")
        text = f"Fitness is the objective's {metric} (the file's `fitness.metric`"
        text += ")" if metric == c.fitness_name else ", minimised: popplast maximises its negative)"
        if c.test_name:
            text += f"; {c.test_name} (the file's `fitness.test`) is the best individual's held-out metric."
        else:
            text += "; the file names no held-out metric (`fitness.test`), so there is no test column."
    return text + (_VIRTUAL if c.simulated else "")


def _training(c: Comparison, backward: bool, sizes: bool) -> str:
    """How training is counted, naming only the columns the report has."""
    text = "Training is counted as epochs"
    if not c.mcc:
        text += " (an evaluation's `epochs` metric, else the last step it reported)"
    if backward:
        text += (
            " and as backward passes through the whole model (a position-wise optimizer's step through K blocks "
            "costs (K+1)/2 of them)"
        )
    if sizes:
        text += (
            "; \"image sizes\" is what each method's evaluations trained on (Gen-Soup's schedule grows them; the "
            "others train at the file's `fidelity.image_size`)"
        )
    return text + "."


def plot_anytime(c: Comparison, path: str, by: str) -> None:
    """Two panels: the whole search, and its last 80% zoomed to the scores there (where methods differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    zoom_low, zoom_high = np.inf, -np.inf
    for m in [m for m in c.methods if any(k[0] == m for k in c.cells)]:
        cells = _cells(c, m)
        if by == "evaluations":
            n = max(len(x.fitness) for x in cells)
            grid = np.arange(1, n + 1)
            curves = np.array([_pad(best_so_far(x.fitness), n) for x in cells])
        elif by == "epochs":
            end = max(float(np.sum(x.costs)) for x in c.cells.values())
            grid = np.linspace(0.0, end, 200)
            curves = np.array([_at(x, np.cumsum(x.costs), grid) for x in cells])
        else:
            end = max(max(x.seconds, default=0.0) for x in c.cells.values())
            grid = np.linspace(0.0, end, 200)
            curves = np.array([_at(x, np.asarray(x.seconds), grid) for x in cells])
        mean, low, high = band(curves) if c.mcc else band(curves, -np.inf, np.inf)  # MCC's range, or none
        for ax in axes:
            (line,) = ax.plot(grid, mean, label=f"{m} ({len(cells)} seeds)", linewidth=1.6)
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        tail = grid >= grid[0] + 0.2 * (grid[-1] - grid[0])
        if np.any(~np.isnan(mean[tail])):
            zoom_low = min(zoom_low, float(np.nanmin(mean[tail])))
            zoom_high = max(zoom_high, float(np.nanmax(mean[tail])))
    end = axes[0].get_xlim()[1]
    if zoom_high >= zoom_low:
        margin = max(0.005, 0.25 * (zoom_high - zoom_low))
        axes[1].set_ylim(zoom_low - margin, min(1.0, zoom_high + margin) if c.mcc else zoom_high + margin)
        axes[1].set_xlim(0.2 * end, end)
    axes[0].set_title("whole search", fontsize=10)
    axes[1].set_title("last 80%, zoomed", fontsize=10)
    for ax in axes:
        seconds = "virtual time (s)" if c.simulated else "wall time (s)"
        ax.set_xlabel({"evaluations": "evaluations", "epochs": "training epochs"}.get(by, seconds))
        ax.set_ylabel(f"{'' if c.several is not None else 'best '}{c.fitness_name} so far")
    if c.several is not None:  # a hypervolume means nothing without its reference point
        reference = ", ".join(f"{m} {v:.4g}" for m, v in c.reference.items())
        fig.suptitle(f"hypervolume against the reference point ({reference})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _cells(c: Comparison, method: str) -> list[Cell]:
    return [c.cells[(method, sd)] for sd in c.seeds if (method, sd) in c.cells]


def _pad(curve: np.ndarray, n: int) -> np.ndarray:
    """A search that ran fewer evaluations keeps its last best value (it has nothing more to add)."""
    if len(curve) >= n:
        return curve[:n]
    last = curve[-1] if len(curve) else np.nan
    return np.concatenate([curve, np.full(n - len(curve), last)])


def _at(cell: Cell, spent: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The best so far when `spent` (seconds or epochs, per evaluation in finishing order) reached each grid
    point."""
    curve = best_so_far(cell.fitness)
    order = np.argsort(spent, kind="stable")
    times, values = spent[order], curve[order]
    index = np.searchsorted(times, grid, side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], np.nan)


def _budget(settings: dict[str, str]) -> str:
    if settings.get("budget_epochs") not in (None, "None"):
        return f"{settings['budget_epochs']} training epochs"
    return f"{settings.get('budget_evals', '?')} evaluations"


def _sizes(cells: list[Cell]) -> str:
    sizes = sorted(set().union(*(c.image_sizes for c in cells)))
    if not sizes:
        return "–"
    return f"{sizes[0]} px" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]} px"


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
