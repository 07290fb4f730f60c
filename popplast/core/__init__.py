"""popplast.core: search spaces, genomes, individuals and strategies. numpy and PyYAML only.

Nothing here imports torch, ray, mlflow or optuna, so the core can be used (and tested) without them.
"""

from popplast.core.errors import SpecError
from popplast.core.ga import GAState, GenCNN
from popplast.core.individual import Individual
from popplast.core.result import EvalResult, SearchResult
from popplast.core.space import Gene, SearchSpace
from popplast.core.spec import DatasetSpec, Fidelity, SearchSpec, StrategySpec
from popplast.core.strategies import STRATEGIES, build_strategy

__all__ = [
    "DatasetSpec",
    "EvalResult",
    "Fidelity",
    "GAState",
    "Gene",
    "GenCNN",
    "Individual",
    "STRATEGIES",
    "SearchResult",
    "SearchSpace",
    "SearchSpec",
    "SpecError",
    "StrategySpec",
    "build_strategy",
]
