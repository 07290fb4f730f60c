"""A warm start resolved before the search starts (spec/warm_start.py): the configurations its first
generation or first trials begin with, what each came from, and, for a strategy that inherits, the trained
states the source search still holds for them, keyed by the warm individual's id (generation 0, slot k)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from popplast.core.individual import individual_id
from popplast.spec.search import SearchSpec
from popplast.strategies.method import SAMPLER, Method


@dataclass(frozen=True)
class Warm:
    genomes: tuple[tuple[float, ...], ...]
    sources: tuple[str, ...]  # per slot: SEARCH_RUN/INDIVIDUAL, or configs[i]
    states: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, str]:
        """What the search run records of it (a param)."""
        return {"warm_start": ",".join(self.sources)}


def warm_start_for(spec: SearchSpec, tracking_uri: str, entry: Method) -> Warm | None:
    """The warm start `spec` asks for, or None. A genetic strategy's first generation takes a population's
    worth at most; a sampler enqueues them all as its first trials."""
    warm = spec.warm_start
    if warm is None:
        return None
    limit = spec.strategy.population if entry.family != SAMPLER else None
    if warm.run is None:
        configs = list(warm.configs)[:limit]
        sources = tuple(f"configs[{i}]" for i in range(len(configs)))
        return Warm(tuple(tuple(map(float, spec.space.encode(c))) for c in configs), sources)
    from popplast.reports.warm_source import best_individuals, checkpointed_states

    k = warm.how_many(spec.strategy.population)
    chosen = best_individuals(tracking_uri, warm.run, spec.space, min(k, limit or k), spec.source)
    states: dict[str, Any] = {}
    if entry.inherits:
        held = checkpointed_states(tracking_uri, warm.run, [c.id for c in chosen])
        states = {individual_id(0, slot): held[c.id] for slot, c in enumerate(chosen) if c.id in held}
    return Warm(
        tuple(tuple(map(float, spec.space.encode(c.config))) for c in chosen),
        tuple(f"{warm.run}/{c.id}" for c in chosen),
        states,
    )
