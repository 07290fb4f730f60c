"""`warm_start:` in a search file (`--warm-start RUN_ID` on the command line): start the first generation, or
the first trials, from a previous search's best configurations, or from configurations written out.

```yaml
warm_start:
  run: 9cf0a1...        # a finished (or running) search run in this search's tracking store
  best: 5               # how many of its best individuals (default: half the population, at least 1)
# or
warm_start:
  configs:              # configurations of this space, each gene given
    - {lr: 0.01, width: 64}
```

A run's individuals that trained states (Gen-Soup, PBT) hand them on too, where its last checkpoint still
holds them and the search warm-started inherits (search/warm_start.py reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from popplast.errors import SpecError
from popplast.spec.fields import Section, check_json, describe
from popplast.spec.space import SearchSpace


@dataclass(frozen=True)
class WarmStartSpec:
    run: str | None = None
    best: int | None = None  # None: half the population
    configs: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.run is not None:
            return {"run": self.run, **({"best": self.best} if self.best is not None else {})}
        return {"configs": [dict(c) for c in self.configs]}

    def how_many(self, population: int) -> int:
        return self.best if self.best is not None else max(1, population // 2)


def warm_start_from(section: Section, space: SearchSpace) -> WarmStartSpec | None:
    """The file's `warm_start` section (checked whole against `space`), or None without one."""
    if not section.data:
        return None
    run = section.take("run", "str", None)
    best = section.take("best", "int", None)
    configs = section.take("configs", "list", None)
    if (run is None) == (configs is None):
        raise SpecError(
            section.source, section.path, "expected either run: SEARCH_RUN_ID or configs: [{gene: value, ...}, ...]."
        )
    if best is not None and (run is None or best < 1):
        raise section.error("best", f"expected a number >= 1 of a run's best individuals, got {describe(best)}.")
    if configs is not None:
        if not configs:
            raise section.error("configs", "expected at least one configuration, got an empty list.")
        for i, config in enumerate(configs):
            check_config(config, space, section, f"configs[{i}]")
    section.finish()
    return WarmStartSpec(run, best, tuple(dict(c) for c in configs or ()))


def check_config(config: Any, space: SearchSpace, section: Section, key: str) -> None:
    """Every gene of `space` has a value it can take; nothing else is given."""
    if not isinstance(config, dict):
        raise section.error(key, f"expected a mapping of gene to value, got {describe(config)}.")
    check_json(config, section.source, section.key(key))
    for name in config:
        if name not in space.names:
            raise section.error(f"{key}.{name}", f"not a gene of the space; its genes: {', '.join(space.names)}.")
    for gene in space.genes:
        if gene.name not in config:
            raise section.error(key, f"no value for the gene {gene.name!r}.")
        value = config[gene.name]
        if gene.type == "categorical":
            ok = value in gene.choices
            expected = f"one of {list(gene.choices)}"
        else:
            low, high = gene.bounds()
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = number and low <= value <= high and (gene.type == "float" or float(value).is_integer())
            expected = f"{'an integer' if gene.type == 'int' else 'a number'} from {low:g} to {high:g}"
        if not ok:
            raise section.error(f"{key}.{gene.name}", f"expected {expected}, got {describe(value)}.")
