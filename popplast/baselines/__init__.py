"""Baselines over the same search space, evaluator and MLflow layout: the Optuna samplers as strategies of the
one loop, and the Optuna study they can be recorded in."""
