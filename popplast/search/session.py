"""What every entry point (`popplast.run`, `popplast.compare`, `popplast.evolve_rules`) shares: the execution
options' checks, the executor they open, and the lines they print for the person running them."""

from __future__ import annotations

import contextlib
import math
import signal
from typing import Any, Iterator

from popplast.console import say
from popplast.defaults import EXECUTORS
from popplast.errors import COMMAND_LINE, SpecError
from popplast.strategies.catalogue import CATALOGUE

WORKERS_START_WAIT = 60.0  # seconds a search waits for its workers before it begins with those it has


def check_options(
    executor: str, workers: int | None, cpus: float, gpus: float, method: str = "", eval_timeout: float | None = None
) -> None:
    def bad(flag: str, expected: str, value: Any) -> SpecError:
        return SpecError(COMMAND_LINE, flag, f"expected {expected}, got {value!r}.")

    if executor not in EXECUTORS:
        raise bad("--executor", "ray, local or simulated", executor)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise bad("--workers", "an integer >= 1", workers)
    if not 0 < cpus < math.inf:
        raise bad("--cpus-per-worker", "a finite number > 0", cpus)
    if not 0 <= gpus < math.inf:
        raise bad("--gpus-per-worker", "a finite number >= 0", gpus)
    if eval_timeout is not None:
        if (
            isinstance(eval_timeout, bool)
            or not isinstance(eval_timeout, (int, float))
            or not 0 < eval_timeout < math.inf
        ):
            raise bad("--eval-timeout", "a finite number of seconds > 0", eval_timeout)
        if executor == "local":  # an evaluation runs in the driver's own thread: nothing can stop it from outside
            raise SpecError(
                COMMAND_LINE,
                "--eval-timeout",
                "needs --executor ray (or simulated): the local executor runs each evaluation in this process, "
                "where a hung one cannot be stopped.",
            )
        if method in CATALOGUE and not CATALOGUE[method].in_loop:
            raise SpecError(
                COMMAND_LINE, "--eval-timeout", f"{method} runs on Ray Tune's own loop, which it does not reach."
            )
    if executor != "ray" and method in CATALOGUE and not CATALOGUE[method].in_loop:
        raise SpecError(
            COMMAND_LINE, "--executor", f"the {method} method runs on Ray Tune; it has no {executor} executor."
        )


@contextlib.contextmanager
def open_executor(
    kind: str,
    make_evaluator,
    workers: int | None,
    cpus: float,
    gpus: float,
    address: str | None,
    population: int,
    simulation: tuple[Any, Any] = (None, None),
    show: bool = False,
    eval_timeout: float | None = None,
) -> Iterator[Any]:
    """A local executor, a simulated cluster (`simulation`: the spec and what --simulate names), or a Ray pool
    inside a Ray session (joined, or started and stopped here)."""
    if kind == "simulated":
        from popplast.execution.simulated import simulated_executor

        yield simulated_executor(simulation[0], simulation[1], workers, eval_timeout)
        return
    if kind == "local":
        from popplast.execution.executor import LocalExecutor

        yield LocalExecutor(make_evaluator, window=workers or 1)
        return
    from popplast.execution.ray_pool import RayExecutor
    from popplast.execution.ray_session import check_resources, default_workers, ray_session

    with ray_session(address):
        if workers is None:
            workers = default_workers(population, cpus)
        check_resources(workers, cpus, gpus)
        pool = RayExecutor(make_evaluator, workers, cpus, gpus, eval_timeout=eval_timeout)
        try:
            # The cluster has the resources, so every actor should start soon unless other work holds them;
            # waiting keeps a quick first generation from running on whichever actor happened to start first.
            started = len(pool.wait_started(WORKERS_START_WAIT))
            if started < workers:
                say(show, f"[popplast] {_short_of_workers(started, workers, gpus)}")
            yield pool
        finally:
            pool.close()


def _short_of_workers(started: int, workers: int, gpus: float) -> str:
    import ray

    free, total = ray.available_resources(), ray.cluster_resources()
    room = ", ".join(
        f"{free.get(name, 0):g} of the cluster's {total.get(name, 0):g} {name}s free"
        for name in ("CPU", "GPU")
        if name == "CPU" or gpus
    )
    then = "the search begins with them, the others join" if started else "the search begins with the first"
    waited = f"{WORKERS_START_WAIT:.0f} s"
    return f"{started} of {workers} Ray workers started within {waited} ({room}); {then} once Ray places them"


class Interrupted(BaseException):
    """The driver was asked to stop (SIGTERM: `ray job stop`, a pod eviction, `timeout`, SLURM's preemption or
    `scancel`; SIGUSR1: SLURM's warning before a job's time limit; SIGINT: Ctrl-C).

    A BaseException, as KeyboardInterrupt is, so no `except Exception` on the way swallows it."""

    def __init__(self, signal_name: str, exit_code: int, why: str = "") -> None:
        super().__init__(f"interrupted by {signal_name}" + (f" ({why})" if why else ""))
        self.signal_name = signal_name
        self.exit_code = exit_code


def interrupted(e: BaseException | None) -> Interrupted | None:
    """The interruption `e` stands for (Ctrl-C arrives as KeyboardInterrupt), or None for a failure. A signal
    that arrives inside compiled code may come out wrapped: Ray's `ray.wait` checks for signals and raises
    SystemError from the handler's Interrupted, which is found as its cause."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, Interrupted):
            return e
        if isinstance(e, KeyboardInterrupt):
            return Interrupted("SIGINT", 130)
        if not isinstance(e, SystemError):
            return None
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


@contextlib.contextmanager
def signals_unwrapped() -> Iterator[None]:
    """A signal's Interrupted that came out of Ray's compiled code as a SystemError raised as itself, with what
    the search noted on the way out (its run, a journalled end), so that the command's handler sees it."""
    try:
        yield
    except SystemError as e:
        stop = interrupted(e)
        if stop is None or stop is e:
            raise
        for noted in ("search_run_id", "journalled_end"):
            if hasattr(e, noted):
                setattr(stop, noted, getattr(e, noted))
        raise stop from None


# Exit codes the shell's convention gives a process a signal ended, so a job script can tell them apart
# (cluster/slurm/popplast.sbatch requeues itself on SIGUSR1's).
STOPPING_SIGNALS = {signal.SIGTERM: 143, signal.SIGUSR1: 138}


def _why(signum: int) -> str:
    """What the signal means where it came from: under SLURM (its job id in the environment) the search run's
    end reason says which job was stopped and why, as `scontrol`'s record of the job would."""
    import os

    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return ""
    if signum == signal.SIGUSR1:
        return f"SLURM job {job}: USR1, the warning before its time limit"
    return f"SLURM job {job}: preempted, cancelled or at its time limit"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (and SIGUSR1, SLURM's warning that a job's time is nearly up) raises Interrupted in the main
    thread, so the search unwinds as on Ctrl-C: its run is marked KILLED with the reason, its workers and the
    Ray instance it started are stopped, its last checkpoint stays whole. A second such signal during that
    unwinding kills the process at once (the default action)."""

    def handler(signum: int, frame: Any) -> None:
        for stopping in STOPPING_SIGNALS:
            signal.signal(stopping, signal.SIG_DFL)
        raise Interrupted(signal.Signals(signum).name, STOPPING_SIGNALS[signal.Signals(signum)], _why(signum))

    previous = {signum: signal.signal(signum, handler) for signum in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
