"""Evolution strategies over real vectors, as ask/tell with plain-data state (numpy only).

- ElitistES: the (1+λ) ES of Joosten 2021 (paper 004): σ = 0.01, population 10, initial genes N(0, 1).
  The paper leaves selection unspecified; here the parent is re-evaluated beside its λ = population − 1
  children on each generation's batch, and a child replaces it only when strictly better.
- OpenAIES: Salimans et al. 2017: antithetic sampling, centred-rank fitness shaping, Adam on the mean.
- SNES: separable natural evolution strategy (Schaul et al. 2011): a mean and one σ per gene.

ask(state, rng) → (population (P, D) array, state); tell(state, fitness (P,)) → (state, metrics).
NaN fitness (a failed evaluation) ranks worst. `state.mean` is the search's current answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ESState:
    """Everything an ES changes; arrays are numpy, `to_dict` gives JSON-ready lists."""

    generation: int
    mean: np.ndarray  # (D,) current centre / parent
    sigma: np.ndarray  # (D,) step sizes (one value repeated for isotropic strategies)
    population: np.ndarray | None = None  # (P, D) last asked
    noise: np.ndarray | None = None  # (P, D) the standard-normal draws behind `population`
    adam_m: np.ndarray | None = None
    adam_v: np.ndarray | None = None
    best: np.ndarray | None = None  # best vector ever evaluated, and its fitness
    best_fitness: float = -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ESState":
        arrays = ("mean", "sigma", "population", "noise", "adam_m", "adam_v", "best")
        values: dict[str, Any] = {
            k: (np.asarray(v, dtype=float) if k in arrays and v is not None else v) for k, v in data.items()
        }
        return cls(**values)


def _asked(array: np.ndarray | None) -> np.ndarray:
    """A state array that `ask` (or `init`) sets: None means `tell` came before them."""
    if array is None:
        raise ValueError("tell() needs the state that ask() returned")
    return array


def centred_ranks(fitness: np.ndarray) -> np.ndarray:
    """Ranks scaled to [−0.5, 0.5] (Salimans et al. 2017); NaN ranks lowest; ties get distinct ranks by order."""
    f = np.where(np.isfinite(fitness), fitness, -np.inf)
    ranks = np.empty(len(f))
    ranks[np.argsort(f, kind="stable")] = np.arange(len(f))
    return ranks / max(len(f) - 1, 1) - 0.5


def _track_best(state: ESState, population: np.ndarray, fitness: np.ndarray) -> ESState:
    f = np.where(np.isfinite(fitness), fitness, -np.inf)
    i = int(np.argmax(f))
    if f[i] > state.best_fitness:
        return replace(state, best=population[i].copy(), best_fitness=float(f[i]))
    return state


def _metrics(state: ESState, fitness: np.ndarray) -> dict[str, float]:
    ok = fitness[np.isfinite(fitness)]
    out = {
        "generation": float(state.generation),
        "failed": float(len(fitness) - len(ok)),
        "sigma": float(np.mean(state.sigma)),
        "best_ever": state.best_fitness,
    }
    if len(ok):
        out.update(best=float(ok.max()), mean=float(ok.mean()), spread=float(ok.max() - ok.min()))
    return out


@dataclass(frozen=True)
class ElitistES:
    """(1+λ) ES; population counts the parent, so λ = population − 1."""

    dim: int
    population: int = 10
    sigma: float = 0.01
    name = "elitist"

    def init(self, rng: np.random.Generator) -> ESState:
        return ESState(-1, rng.standard_normal(self.dim), np.full(self.dim, self.sigma))

    def ask(self, state: ESState, rng: np.random.Generator) -> tuple[np.ndarray, ESState]:
        if state.generation < 0:  # generation 0: a whole population from N(0, 1), the best becomes the parent
            pop = np.vstack([state.mean, rng.standard_normal((self.population - 1, self.dim))])
            noise = np.zeros_like(pop)
        else:
            noise = np.vstack([np.zeros(self.dim), rng.standard_normal((self.population - 1, self.dim))])
            pop = state.mean + self.sigma * noise
        return pop, replace(state, generation=state.generation + 1, population=pop, noise=noise)

    def tell(self, state: ESState, fitness: np.ndarray) -> tuple[ESState, dict[str, float]]:
        fitness = np.asarray(fitness, dtype=float)
        f = np.where(np.isfinite(fitness), fitness, -np.inf)
        winner = int(np.argmax(f))  # index 0 (the parent) wins ties: argmax returns the first maximum
        state = replace(state, mean=_asked(state.population)[winner].copy())
        state = _track_best(state, _asked(state.population), fitness)
        return state, {**_metrics(state, fitness), "parent_replaced": float(winner != 0)}


@dataclass(frozen=True)
class OpenAIES:
    """OpenAI-ES with antithetic pairs (population must be even), centred ranks and Adam ascent on the mean."""

    dim: int
    population: int = 64
    sigma: float = 0.1
    learning_rate: float = 0.05
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    name = "openai"

    def __post_init__(self) -> None:
        if self.population % 2:
            raise ValueError("OpenAI-ES samples antithetic pairs: the population must be even")

    def init(self, rng: np.random.Generator) -> ESState:
        zeros = np.zeros(self.dim)
        return ESState(-1, rng.standard_normal(self.dim), np.full(self.dim, self.sigma), adam_m=zeros, adam_v=zeros)

    def ask(self, state: ESState, rng: np.random.Generator) -> tuple[np.ndarray, ESState]:
        half = rng.standard_normal((self.population // 2, self.dim))
        noise = np.vstack([half, -half])  # ε and −ε
        pop = state.mean + self.sigma * noise
        return pop, replace(state, generation=state.generation + 1, population=pop, noise=noise)

    def tell(self, state: ESState, fitness: np.ndarray) -> tuple[ESState, dict[str, float]]:
        fitness = np.asarray(fitness, dtype=float)
        state = _track_best(state, _asked(state.population), fitness)
        shaped = centred_ranks(fitness)
        grad = shaped @ _asked(state.noise) / (self.population * self.sigma) - self.weight_decay * state.mean  # ∇ E[F]
        t = state.generation + 1
        m = self.beta1 * _asked(state.adam_m) + (1 - self.beta1) * grad
        v = self.beta2 * _asked(state.adam_v) + (1 - self.beta2) * grad**2
        step = self.learning_rate * (m / (1 - self.beta1**t)) / (np.sqrt(v / (1 - self.beta2**t)) + 1e-8)
        state = replace(state, mean=state.mean + step, adam_m=m, adam_v=v)
        return state, {**_metrics(state, fitness), "step_norm": float(np.linalg.norm(step))}


@dataclass(frozen=True)
class SNES:
    """Separable NES: x = μ + σ ⊙ z; utilities from ranks; μ += η_μ σ ⊙ Σ u z, σ *= exp(η_σ/2 Σ u (z² − 1))."""

    dim: int
    population: int = 0  # 0: the default 4 + ⌊3 ln D⌋
    sigma: float = 1.0
    name = "snes"

    def size(self) -> int:
        return self.population or 4 + int(3 * math.log(self.dim))

    def init(self, rng: np.random.Generator) -> ESState:
        return ESState(-1, rng.standard_normal(self.dim), np.full(self.dim, self.sigma))

    def ask(self, state: ESState, rng: np.random.Generator) -> tuple[np.ndarray, ESState]:
        noise = rng.standard_normal((self.size(), self.dim))
        pop = state.mean + state.sigma * noise
        return pop, replace(state, generation=state.generation + 1, population=pop, noise=noise)

    def tell(self, state: ESState, fitness: np.ndarray) -> tuple[ESState, dict[str, float]]:
        fitness = np.asarray(fitness, dtype=float)
        state = _track_best(state, _asked(state.population), fitness)
        n = len(fitness)
        order = np.argsort(-np.where(np.isfinite(fitness), fitness, -np.inf), kind="stable")
        raw = np.maximum(0.0, math.log(n / 2 + 1) - np.log(np.arange(1, n + 1)))
        utility = np.empty(n)
        utility[order] = raw / raw.sum() - 1.0 / n  # Wierstra et al. 2014, eq. (fitness shaping)
        eta_sigma = (3 + math.log(self.dim)) / (5 * math.sqrt(self.dim))
        noise = _asked(state.noise)
        grad_mu = utility @ noise
        grad_sigma = utility @ (noise**2 - 1)
        state = replace(
            state, mean=state.mean + state.sigma * grad_mu, sigma=state.sigma * np.exp(eta_sigma / 2 * grad_sigma)
        )
        return state, _metrics(state, fitness)


ES_STRATEGIES = {"elitist": ElitistES, "openai": OpenAIES, "snes": SNES}
