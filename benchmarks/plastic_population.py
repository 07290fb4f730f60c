"""Vectorised population evaluation of plasticity rules against a loop over individuals (issue 6).

    .venv/bin/python benchmarks/plastic_population.py [--population 64] [--repeats 5] [--device cpu|cuda]

Both compute the fitness of paper 004 (plastic pass over a batch of 100 samples from reset weights, then
frozen accuracy on it) for the same rule vectors; the loop calls the per-individual reference
implementation once per individual. Prints individuals × samples per second (median, min–max over
repeats) and the ratio, first.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from popplast.plasticity.plastic_rnn import PlasticNet, genome_size, population_accuracy, single_accuracy


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--loop-individuals",
        type=int,
        default=16,
        help="individuals the loop times (its cost is linear in them; scaled to the population)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    net = PlasticNet.random(10, 20, 4, 10, 3, 0.5, g, dtype=torch.float32).to(args.device)  # paper: 20 hidden, cap 10
    genomes = torch.randn(args.population, genome_size(3), generator=g).to(args.device)
    x = torch.randn(100, 10, generator=g).to(args.device)
    y = torch.randint(0, 4, (100,), generator=g).to(args.device)
    work = args.population * len(y)  # individual-samples per evaluation of the population

    vectorised = timed(lambda: population_accuracy(genomes, net, x, y, x, y), args.repeats)
    k = min(args.loop_individuals, args.population)
    with torch.no_grad():
        loop = [
            t * args.population / k
            for t in timed(lambda: [single_accuracy(genomes[i], net, x, y, x, y) for i in range(k)], args.repeats)
        ]
    v_rate = [work / t for t in vectorised]
    l_rate = [work / t for t in loop]
    ratio = statistics.median(v_rate) / statistics.median(l_rate)
    device = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {args.threads} thread)"
    )
    print(f"ratio vectorised / loop: {ratio:.1f}x  (population {args.population}, {device})")
    for name, rates in (("vectorised", v_rate), ("loop", l_rate)):
        print(
            f"{name:>10}: {statistics.median(rates):,.0f} individual-samples/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.repeats} repeats)"
        )


if __name__ == "__main__":
    main()
