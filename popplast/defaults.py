"""Defaults written once: where results go when nobody says (the CLI's defaults are these too)."""

TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's embedded store in the current directory
OPTUNA_STORAGE = "sqlite:///optuna.db"  # Optuna studies of the tpe, cmaes, random and nsga2 methods
