"""A task that is no image classification: gradient-boosted trees on scikit-learn's Friedman #1 regression,
their hyperparameters searched by popplast; the objective returns the validation MSE (minimised)."""

from sklearn.datasets import make_friedman1
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split


def fit(config, trial):
    x, y = make_friedman1(n_samples=800, noise=1.0, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    model = GradientBoostingRegressor(
        n_estimators=int(config["n_estimators"]),
        learning_rate=config["learning_rate"],
        max_depth=int(config["max_depth"]),
        subsample=config["subsample"],
        random_state=trial.seed,
    )
    model.fit(x_train, y_train)
    for step, predicted in enumerate(model.staged_predict(x_val), start=1):  # the validation curve by tree
        if step % 25 == 0:
            trial.report(step, val_mse=mean_squared_error(y_val, predicted))
    predicted = model.predict(x_val)
    return {"val_mse": mean_squared_error(y_val, predicted), "val_r2": r2_score(y_val, predicted)}
