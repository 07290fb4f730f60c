"""Files and flags made into frozen settings by one validation path: the fields, the search space, the
search, its strategy, stopper and rules. numpy and PyYAML only."""
