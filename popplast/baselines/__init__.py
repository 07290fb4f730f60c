"""Baselines over the same search space, evaluator and MLflow layout: Optuna samplers and Ray Tune."""
