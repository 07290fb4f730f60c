"""popplast.core: the vocabulary every layer shares (individuals, results, the Strategy protocol, names,
registries). numpy only: nothing here imports torch, ray, mlflow or optuna."""
