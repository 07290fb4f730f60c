"""Search quality of the asynchronous GA at equal evaluations: aging against worst replacement against the
generational GA, on a user objective, 10 seeds, paired tests (issue 17; the default replacement's evidence).

    .venv/bin/python benchmarks/async_quality.py [--seeds 10] [--evaluations 120]

The objective: a Rastrigin function of 4 genes in [−5.12, 5.12] (minimised; many local optima, the global
one at 0) that sleeps 0.004 s × (1 + arch) (arch ∈ 0..7, a fifth gene that does not change the score), so
that on the 2 Ray workers the asynchronous schedule's arrival order is a real one. Population 12, 10
generations' worth of evaluations; the score is the best fitness found (−Rastrigin, higher better).
Mean differences first, then the table.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import textwrap

OBJECTIVE = """
import math
import time


def fit(config, trial):
    time.sleep(0.004 * (1 + int(config["arch"])))
    x = [config[f"x{i}"] for i in range(4)]
    return {"rastrigin": 10 * len(x) + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in x)}
"""

SPEC = """
objective: rastrigin:fit
fitness: {{metric: rastrigin, mode: minimize}}
strategy: {{method: ga, population: 12, generations: {generations}, seed: {seed}, {schedule}}}
space:
  x0: {{type: float, low: -5.12, high: 5.12}}
  x1: {{type: float, low: -5.12, high: 5.12}}
  x2: {{type: float, low: -5.12, high: 5.12}}
  x3: {{type: float, low: -5.12, high: 5.12}}
  arch: {{type: int, low: 0, high: 7}}
"""

VARIANTS = {
    "generational": "schedule: generational",
    "async, aging": "schedule: async, replacement: aging",
    "async, worst": "schedule: async, replacement: worst",
}


def main() -> None:
    import popplast
    from popplast.execution.ray_session import ray_session
    from popplast.reports.stats import mean_std, wilcoxon

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=120)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="popplast-async-quality-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["POPPLAST_JOURNAL_DIR"] = os.path.join(folder, "journal")
    with open(os.path.join(folder, "rastrigin.py"), "w") as f:
        f.write(textwrap.dedent(OBJECTIVE))
    best: dict[str, list[float]] = {v: [] for v in VARIANTS}
    utilisation: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with ray_session(None):
        for seed in range(args.seeds):
            for variant, schedule in VARIANTS.items():
                spec = os.path.join(folder, f"s{seed}-{variant.replace(', ', '-')}.yaml")
                with open(spec, "w") as f:
                    f.write(SPEC.format(generations=args.evaluations // 12, seed=seed, schedule=schedule))
                result = popplast.run(spec, workers=2, tracking_uri=f"sqlite:///{folder}/mlflow.db", progress=False)
                best[variant].append(result.best_fitness)
                utilisation[variant].append(result.worker_utilisation or float("nan"))
    names = list(VARIANTS)
    tests = [wilcoxon(a, best[a], b, best[b]) for i, a in enumerate(names) for b in names[i + 1 :]]
    print(
        "mean differences of the best fitness (−Rastrigin): "
        + ", ".join(f"{t.a} − {t.b} {t.mean_difference:+.3f} (p {t.p_value:.3f})" for t in tests)
    )
    print(f"\n{args.seeds} seeds, {args.evaluations} evaluations each, 2 Ray workers\n")
    print("| variant | best fitness (−Rastrigin), mean ± std | worker utilisation |")
    print("|---|---|---|")
    for v in names:
        m, s = mean_std(best[v])
        u, _ = mean_std(utilisation[v])
        print(f"| {v} | {m:.3f} ± {s:.3f} | {u:.3f} |")
    print("\n| A | B | mean A − B | p (Wilcoxon) | r |")
    print("|---|---|---|---|---|")
    for t in tests:
        print(f"| {t.a} | {t.b} | {t.mean_difference:+.3f} | {t.p_value:.4f} | {t.rank_biserial:+.2f} |")


if __name__ == "__main__":
    main()
