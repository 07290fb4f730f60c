"""Objectives: the user's training code as the unit of evaluation (README "Your own objective").

An objective is a function `fit(config, trial)`: `config` the decoded hyperparameters (and the file's
`fixed` values), `trial` a `Trial` (who is trained, its seed and device, the state it inherits, and
`report` for per-step metrics). It returns the fitness as a number, or a mapping of metrics in which the
search file's `fitness.metric` is the fitness; `(value, state)` also hands a state (a mapping of tensors or
arrays) to the children that inherit from it.
"""

from popplast.objectives.load import ObjectiveError, load_objective
from popplast.objectives.trial import Trial

__all__ = ["ObjectiveError", "Trial", "load_objective"]
