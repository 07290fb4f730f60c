"""Integrations with other schedulers: Ray Tune's OptunaSearch and PBT (`tune-tpe`, `tune-pbt`) for users
who live in Tune. They run Tune's own loop, not popplast's, and do not resume."""
