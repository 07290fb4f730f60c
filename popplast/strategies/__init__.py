"""Ask/tell over state as data: the catalogue (one entry per method), the builders, popplast's GA, Gen-Soup,
PBT, steady-state and islands, the evolution strategies, stoppers and budgets, the Optuna sampler adapter
(the one module here that imports optuna), and users' own strategies."""
