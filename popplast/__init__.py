"""popplast: population-based training on Ray, tracked in MLflow.

`import popplast` stays light: the API (and with it torch and ray) loads on first use of `popplast.run`,
`popplast.compare` or `popplast.evolve_rules`.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "run",
    "compare",
    "report",
    "evolve_rules",
    "lineage",
    "sync",
    "replay",
    "record_table",
    "import_suites",
    "slurm",
    "Simulation",
    "SearchResult",
    "RulesResult",
    "SpecError",
    "Trial",
    "Individual",
    "PopplastError",
]


def __getattr__(name: str) -> Any:
    if name == "run":
        from popplast.search.run import run

        return run
    if name in ("compare", "report"):
        from popplast.search import compare

        return getattr(compare, name)
    if name == "evolve_rules":
        from popplast.search.evolve_rules import evolve_rules

        return evolve_rules
    if name == "lineage":  # lineage(tracking_uri, search_run_id, out_dir=".", ui_url=None, log=True)
        from popplast.reports.lineage import draw_lineage

        return draw_lineage
    if name == "replay":  # replay(search_run_id, individual=None, tracking_uri=..., cpus=1, progress=True)
        from popplast.search.replay import replay

        return replay
    if name == "sync":  # sync(journal_directory): ship what a search's journal holds unshipped to MLflow
        from popplast.tracking.journal_sync import sync

        return sync
    if name == "record_table":  # record_table(tracking_uri, search_run_id) -> Table (.save(path))
        from popplast.reports.record_table import record_table

        return record_table
    if name == "import_suites":  # import_suites(names=None, out=None, progress=True, force=False) -> [TaskFiles]
        from popplast.integrations.suites import import_suites

        return import_suites
    if name == "slurm":  # slurm(space, nodes=..., time_limit=..., dry_run=False, **run's options) -> SlurmJob
        from popplast.search.slurm import slurm

        return slurm
    if name == "Simulation":  # popplast.run(..., executor="simulated", simulate=Simulation(model, ...))
        from popplast.execution.simulated.settings import Simulation

        return Simulation
    if name == "RulesResult":
        from popplast.core.result import RulesResult

        return RulesResult
    if name == "SearchResult":
        from popplast.core.result import SearchResult

        return SearchResult
    if name == "Trial":  # what an objective fit(config, trial) is called with
        from popplast.objectives.trial import Trial

        return Trial
    if name == "SpecError":
        from popplast.errors import SpecError

        return SpecError
    if name == "PopplastError":  # the base of every error popplast reports to a user
        from popplast.errors import PopplastError

        return PopplastError
    if name == "Individual":  # what a strategy of one's own asks for (popplast.core.strategy)
        from popplast.core.individual import Individual

        return Individual
    raise AttributeError(f"module 'popplast' has no attribute {name!r}")
