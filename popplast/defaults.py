"""Defaults written once: the Python API's keyword defaults and the CLI's flags both read them here."""

TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's embedded store in the current directory
OPTUNA_STORAGE = "sqlite:///optuna.db"  # Optuna studies of the tpe, cmaes, random and nsga2 methods
EXECUTOR = "ray"  # a pool of Ray worker actors
EXECUTORS = ("ray", "local", "simulated")
CPUS_PER_WORKER = 1  # also each worker's torch threads
GPUS_PER_WORKER = 0
COMPARE_SEEDS = 3  # seeds per method in `popplast compare`
REPLAY_CPUS = 1  # torch threads of `popplast replay`
