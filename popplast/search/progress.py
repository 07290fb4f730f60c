"""Progress of a running search: generation k of G, evaluations, best and median so far, time left.

On a terminal it is a live bar; elsewhere (CI logs, pipes) one line per finished generation.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from popplast.core.individual import Individual
from popplast.core.result import EvalResult


class SearchProgress:
    def __init__(
        self,
        generations: int,
        population: int = 0,
        stream: TextIO | None = None,
        total: int = 0,
        done: int = 0,
        status: Callable[[], str | None] | None = None,
        epochs: int | None = None,
        workers: int = 0,
    ) -> None:
        self.generations = generations
        self.workers = workers  # with their evaluations' start and end times: the utilisation shown
        self.busy, self.first_start = 0.0, None  # seconds the evaluations took, and when the first began
        self.virtual_end: float | None = None  # a simulated cluster's clock (its results' times are virtual)
        self.population_median: float | None = None  # the strategy's last summary (its current population)
        self.front: tuple[float, int] | None = None  # several objectives: the last row's hypervolume, front size
        self.epoch_budget = epochs  # a budget in training epochs: what the line counts and times down
        self.epochs = 0.0
        self.stopped = 0
        self.status = status  # a few words on the tracking (MLflow unreachable, events queued), or None
        self.total = total or generations * population
        # stderr as it is now (None), not as it was when this module was imported: a replaced and closed one
        # (a test's capture) would take every later search's progress down with it
        self.console = Console(file=stream if stream is not None else sys.stderr, highlight=False)
        self.start = time.perf_counter()
        self.fitness: list[float] = []
        self.done = done  # evaluations finished before this driver started (a resumed search)
        self._resumed = done
        self.failed = 0
        self.generation = 0
        self._bar: Progress | None = None
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )
            self._task = self._bar.add_task("search", total=self.total, status="")
            self._bar.start()

    def generation_started(self, generation: int, individuals: Sequence[Individual]) -> None:
        self.generation = generation
        self._refresh()

    def individual_finished(self, individual: Individual, config: dict[str, Any], result: EvalResult) -> None:
        self.done += 1
        self.epochs += result.metrics.get("epochs", result.metrics.get("steps", 0.0))
        if "started" in result.tags and "ended" in result.tags:
            started, ended = float(result.tags["started"]), float(result.tags["ended"])
            self.busy += ended - started
            self.first_start = started if self.first_start is None else min(self.first_start, started)
            if "simulated" in result.tags:
                self.virtual_end = max(self.virtual_end or ended, ended)
        self.stopped += result.stopped_at is not None
        if result.ok:
            self.fitness.append(float(result.fitness))
        else:
            self.failed += 1
        self._refresh()

    def generation_finished(self, generation: int, metrics: dict[str, float]) -> None:
        self.population_median = metrics.get("median", self.population_median)
        if "hypervolume" in metrics:  # several objectives: the front so far, not one best
            self.front = (metrics["hypervolume"], int(metrics["front_size"]))
        if self._bar is None:
            self.console.print(f"[popplast] {self.status_line()}", soft_wrap=True, markup=False)

    def status_line(self) -> str:
        elapsed = time.perf_counter() - self.start
        parts = [f"generation {self.generation + 1}", f"{self.done} evaluations"]
        if self.epoch_budget is None:
            parts = [f"generation {self.generation + 1}/{self.generations}", f"{self.done}/{self.total} evaluations"]
        else:
            parts.append(f"{self.epochs:.0f}/{self.epoch_budget} epochs")
        if self.failed or self.stopped:
            parts[1] += (
                " ("
                + ", ".join(
                    f"{n} {word}" for n, word in ((self.failed, "failed"), (self.stopped, "stopped early")) if n
                )
                + ")"
            )
        if self.front is not None:
            parts += [f"front of {self.front[1]}", f"hypervolume {self.front[0]:.6g}"]
        elif self.fitness:
            median = statistics.median(self.fitness) if self.population_median is None else self.population_median
            parts += [f"best {max(self.fitness):.4f}", f"median {median:.4f}"]
        now = time.time() if self.virtual_end is None else self.virtual_end
        if self.workers and self.first_start is not None and now > self.first_start:
            share = self.busy / (self.workers * (now - self.first_start))
            parts.append(f"workers {min(share, 1.0):.0%} busy")
        if self.virtual_end is not None:
            parts.append(f"{_clock(self.virtual_end)} simulated")
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.epoch_budget is not None:
            if 0 < self.epochs < self.epoch_budget and self.done > self._resumed:
                parts.append(f"~{_clock(elapsed / self.epochs * (self.epoch_budget - self.epochs))} left")
        elif self._resumed < self.done < self.total:
            parts.append(f"~{_clock(elapsed / (self.done - self._resumed) * (self.total - self.done))} left")
        tracking = self.status() if self.status else None
        if tracking:
            parts.append(tracking)
        return " · ".join(parts)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=self.done,
                description=f"generation {self.generation + 1}/{self.generations}",
                status=self.status_line().split(" · ", 2)[-1],
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EvolutionProgress:
    """Progress of `evolve-rules`: a live bar on a terminal, else a line at every tenth of the run."""

    def __init__(self, generations: int, stream: TextIO | None = None) -> None:
        self.generations = generations
        self.console = Console(file=stream if stream is not None else sys.stderr, highlight=False)
        self.start = time.perf_counter()
        self._bar: Progress | None = None
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("evolving rules"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )
            self._task = self._bar.add_task("rules", total=generations, status="")
            self._bar.start()

    def generation_finished(self, generation: int, metrics: dict[str, float]) -> None:
        done = generation + 1
        elapsed = time.perf_counter() - self.start
        parts = [f"best {metrics.get('best', float('nan')):.3f}", f"mean {metrics.get('mean', float('nan')):.3f}"]
        if "loss" in metrics:
            parts.append(f"loss {metrics['loss']:.3f}")
        parts.append(f"{_clock(elapsed)} elapsed")
        if done < self.generations:
            parts.append(f"~{_clock(elapsed / done * (self.generations - done))} left")
        status = " · ".join(parts)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=status)
        elif done % max(1, self.generations // 10) == 0 or done == self.generations:
            self.console.print(
                f"[popplast] generation {done}/{self.generations} · {status}", markup=False, soft_wrap=True
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
