"""`popplast slurm`: a search submitted to SLURM as one batch job (integrations/slurm.py writes the script).

The file and the flags are checked here, before the job waits in a queue; the job's folder holds the script,
the job's output, Ray's token for the job and, once the driver has started the search run, that run's id,
from which a requeued or resubmitted job resumes it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from popplast.console import say
from popplast.errors import COMMAND_LINE, SpecError
from popplast.integrations.slurm import RUN_ID_FILE, SCRIPT, SlurmRequest, job_script, submit
from popplast.search.plan import RunOptions, check
from popplast.search.tracking import write_run_id

# popplast run's options a job passes on; the others are the job's own (--address, --run-id-file), or
# cannot travel to another machine (a Python objective or strategy object, a simulated cluster)
PASSED_ON = (
    "method",
    "population",
    "generations",
    "budget_evals",
    "budget_epochs",
    "seed",
    "epochs",
    "image_size",
    "workers",
    "cpus_per_worker",
    "gpus_per_worker",
    "tracking_uri",
    "experiment",
    "retrain",
    "optuna_storage",
    "study_name",
    "resume",
    "force",
    "stopper",
    "schedule",
    "eval_timeout",
    "warm_start",
)


@dataclass(frozen=True)
class SlurmJob:
    """A submitted job (or, with dry_run, the one that would be)."""

    script: str  # the script's text
    path: str | None  # where it was written (None: a dry run)
    job_dir: str
    job_id: str | None

    def summary(self) -> str:
        if self.job_id is None:
            return self.script
        return (
            f"submitted SLURM job {self.job_id}: {self.path}\n"
            f"  its output: {self.job_dir}/slurm-{self.job_id}.out (squeue -j {self.job_id}; scancel {self.job_id})\n"
            f"  after a scancel, `sbatch {self.path}` resumes the search"
        )


def slurm(
    space: str | os.PathLike | None = None,
    *,
    nodes: int = 1,
    gpus_per_node: int = 0,
    cpus_per_task: int = 1,
    time_limit: str = "24:00:00",
    partition: str | None = None,
    account: str | None = None,
    signal_seconds: int = 300,
    ray_port: int = 6379,
    job_dir: str | os.PathLike | None = None,
    sbatch_options: tuple[str, ...] = (),
    dry_run: bool = False,
    progress: bool = True,
    **run_options: Any,
) -> SlurmJob:
    """Submit `popplast run SPACE` as one SLURM batch job on `nodes` nodes, each with `cpus_per_task` CPUs
    and `gpus_per_node` GPUs for Ray, for at most `time_limit` (SLURM's format) a job; see
    `popplast slurm --help`. `run_options` are `popplast.run`'s (method, workers, tracking_uri, ...; a
    `resume` run id submits that search's continuation). Relative paths are from the current folder, where
    the job runs too. `dry_run`: only the script, nothing written or submitted.

    Raises SpecError for a bad file or option (before anything is written), SlurmError when sbatch refuses."""
    from popplast.search.run import run

    unknown = sorted(set(run_options) - set(PASSED_ON))
    if unknown:
        raise SpecError(COMMAND_LINE, f"--{unknown[0].replace('_', '-')}", _not_passed_on(unknown[0]))
    request = SlurmRequest(
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task,
        time=time_limit,
        partition=partition,
        account=account,
        signal_seconds=signal_seconds,
        ray_port=ray_port,
        sbatch_options=tuple(sbatch_options),
    )
    request.check()
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(run).parameters.items() if name != "space"
    }
    options = RunOptions(**{**defaults, **run_options, "executor": "ray", "progress": False})
    if options.resume is None:
        if options.force:
            raise SpecError(COMMAND_LINE, "--force", "takes a search over; it goes with --resume SEARCH_RUN_ID.")
        if space is None:
            raise SpecError(COMMAND_LINE, "SPACE.yaml", "expected a search-space file (or --resume SEARCH_RUN_ID).")
        spec, _ = check(space, options)  # a resumed search is checked by its job, against its record
        name = options.experiment or os.path.splitext(os.path.basename(spec.source))[0]
    else:
        name = options.experiment or f"resume-{options.resume}"
    request = dataclasses.replace(request, job_name=f"popplast-{_cleaned(name)}")
    workdir = os.getcwd()
    default = os.path.join("popplast-slurm", f"{_cleaned(name)}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = os.path.abspath(job_dir or default)
    for flag, path in (("--job-dir", folder), ("the current folder", workdir)):
        if re.search(r"[\s%\x00-\x1f\x7f]", path):  # it goes into #SBATCH --output (where % is SLURM's)
            raise SpecError(
                COMMAND_LINE, flag, f"{path!r}: a job's folder may hold no spaces, control characters or %."
            )
    args = ([os.fspath(space)] if space is not None else []) + _flags(run_options, defaults)
    script = job_script(request, folder, workdir, sys.executable, options.tracking_uri, args)
    if dry_run:
        return SlurmJob(script, None, folder, None)
    if os.path.exists(os.path.join(folder, SCRIPT)):
        raise SpecError(
            COMMAND_LINE, "--job-dir", f"{folder} already holds a job; `sbatch {folder}/{SCRIPT}` resubmits it."
        )
    path = os.path.join(folder, SCRIPT)
    made = not os.path.isdir(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o755)
        if options.resume:  # the job goes on with that search from its first start
            write_run_id(os.path.join(folder, RUN_ID_FILE), options.resume)
    except OSError as e:
        raise SpecError(
            COMMAND_LINE, "--job-dir", f"cannot write the job's script in {folder}: {e.strerror}."
        ) from None
    try:
        job_id = submit(path)
    except BaseException:  # nothing was submitted: the folder is not left to refuse the next try
        os.remove(path)
        if options.resume:
            os.remove(os.path.join(folder, RUN_ID_FILE))
        if made:
            os.rmdir(folder)
        raise
    say(progress, f"[popplast] SLURM job {job_id} submitted from {path}")
    return SlurmJob(script, path, folder, job_id)


def _flags(given: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """`popplast run`'s flags for the options given that differ from its defaults (a flag is an option's
    name with dashes: tests/test_cli_options.py)."""
    flags: list[str] = []
    for name in PASSED_ON:
        value = given.get(name, defaults.get(name))
        if name not in given or value == defaults.get(name) or name in ("resume", "tracking_uri"):  # the job's
            continue
        flag = "--" + name.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def _cleaned(name: str) -> str:
    """An experiment's name as a job's name and folder take it."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_.-" else "-" for c in name)[:60]


def _not_passed_on(name: str) -> str:
    return {
        "address": "the job starts its own Ray cluster and gives its driver that address.",
        "run_id_file": "the job writes the search run's id into its own folder.",
        "executor": "a job runs on the Ray cluster it starts (--executor ray).",
        "simulate": "a simulated cluster needs no SLURM job: `popplast run --executor simulated`.",
        "objective": "a Python function cannot travel to the job: name it in the file (objective: module:function).",
        "strategy": "a Python object cannot travel to the job: give --method module:Class.",
    }.get(name, "is not an option of popplast run a SLURM job takes.")
