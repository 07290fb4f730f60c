"""A search as one SLURM batch job: the job script, its checks, and `sbatch`.

The script follows Ray's documented pattern for SLURM: a Ray head on the job's first node and a Ray worker
on each other node, each a job step of its own (`srun`) holding the CPUs and GPUs SLURM gave that node, the
head's address and a token made for the job handed to the workers, nothing listening but Ray (no
dashboard). The driver (`popplast run --address`) runs in the batch step on the first node; it alone writes
to MLflow. The job asks for a warning signal before its time limit (`--signal=B:USR1@SECONDS`) and is
requeueable: on the warning the driver stops at once with its last checkpoint whole and the search run
marked KILLED with the reason, and the job requeues itself; a job that starts again (requeued, or the
script resubmitted with `sbatch` after a `scancel`) resumes the search run whose id the driver wrote into
the job's folder.

    python -m popplast.integrations.slurm wait-nodes ADDRESS N SECONDS   (the script's wait for its nodes)
    python -m popplast.integrations.slurm finished TRACKING_URI RUN_ID   (exit 0: the search run FINISHED)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Sequence

from popplast.errors import COMMAND_LINE, PopplastError, SpecError

SCRIPT = "job.sbatch"  # in the job's folder, beside RUN_ID_FILE and the job's output
RUN_ID_FILE = "search_run_id"
REQUEUE_EXIT = 138  # the driver's exit code on SIGUSR1 (search/session.py STOPPING_SIGNALS)
NODES_WAIT = 300  # seconds the script waits for every node's Ray to join the head
WARNING_SLACK = 60  # seconds a job runs at least before its warning is due
# the #SBATCH options the script's steps and requeue rely on, which --sbatch-option may not change
SCRIPT_OWN = frozenset(
    "nodes ntasks ntasks-per-node cpus-per-task gpus-per-node gpus gres time signal requeue no-requeue output "
    "error open-mode job-name partition account chdir".split()
)


class SlurmError(PopplastError):
    """SLURM refused the job, or is not there to ask."""

    def line(self) -> str:
        return f"slurm: {self}"


@dataclass(frozen=True)
class SlurmRequest:
    """What the job asks SLURM for; `popplast slurm --help` says what each is."""

    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    signal_seconds: int = 300
    ray_port: int = 6379
    job_name: str = "popplast"
    sbatch_options: tuple[str, ...] = ()

    def check(self) -> None:
        """Every value as SLURM and the script take it, or a SpecError naming the flag: a value goes into a
        `#SBATCH` line or the script, so one that could end the line or the word is refused too."""
        for flag, value, least in (
            ("--nodes", self.nodes, 1),
            ("--gpus-per-node", self.gpus_per_node, 0),
            ("--cpus-per-task", self.cpus_per_task, 1),
            ("--signal-seconds", self.signal_seconds, 1),
            ("--ray-port", self.ray_port, 1024),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SpecError(COMMAND_LINE, flag, f"expected an integer >= {least}, got {value!r}.")
        if self.ray_port > 65535:
            raise SpecError(COMMAND_LINE, "--ray-port", f"expected a port up to 65535, got {self.ray_port}.")
        limit = time_limit_seconds(self.time)
        # SLURM checks limits periodically and may warn up to a minute early: a job warned before it could
        # finish a generation would be requeued again and again without progress
        if limit - self.signal_seconds < WARNING_SLACK or self.signal_seconds > 65535:  # SLURM's bound on --signal
            raise SpecError(
                COMMAND_LINE,
                "--signal-seconds",
                f"the warning must leave the job at least {WARNING_SLACK} s before it (SLURM may send it up to a "
                f"minute early) and come within 65535 s of the time limit ({limit} s), got {self.signal_seconds}.",
            )
        for flag, name in (("--partition", self.partition), ("--account", self.account), ("--job-name", self.job_name)):
            if name is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
                raise SpecError(COMMAND_LINE, flag, f"expected a SLURM name (letters, digits, _.+-), got {name!r}.")
        for option in self.sbatch_options:
            if not re.fullmatch(r"--[a-z][a-z-]*(=[^\s'\"\\]+)?", option):
                raise SpecError(
                    COMMAND_LINE,
                    "--sbatch-option",
                    f"expected one sbatch option as --name or --name=value, with no spaces or quotes, got {option!r}.",
                )
            name = option[2:].split("=", 1)[0]
            if name in SCRIPT_OWN:
                raise SpecError(
                    COMMAND_LINE,
                    "--sbatch-option",
                    f"{option}: the job script sets --{name} itself (popplast slurm's own flags say what it asks for).",
                )


TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def time_limit_seconds(text: str) -> int:
    """A SLURM time limit in seconds: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
    days-hours:minutes or days-hours:minutes:seconds, as sbatch reads them."""
    match = TIME.fullmatch(text) if isinstance(text, str) else None
    seconds = 0
    if match is not None:
        days, *rest = match.groups()
        parts = [int(part) for part in rest if part is not None]
        if days is not None:  # days-hours[:minutes[:seconds]]
            hours, minutes, secs = (parts + [0, 0])[:3]
            seconds = ((int(days) * 24 + hours) * 60 + minutes) * 60 + secs
        elif len(parts) == 3:
            seconds = (parts[0] * 60 + parts[1]) * 60 + parts[2]
        elif len(parts) == 2:  # minutes:seconds
            seconds = parts[0] * 60 + parts[1]
        else:
            seconds = parts[0] * 60
    if seconds <= 0:
        raise SpecError(
            COMMAND_LINE,
            "--time",
            f"expected a SLURM time limit above zero (MINUTES, HH:MM:SS or DAYS-HH:MM:SS), got {text!r}.",
        )
    return seconds


def job_script(
    request: SlurmRequest, job_dir: str, workdir: str, python: str, tracking_uri: str, run_args: Sequence[str]
) -> str:
    """The batch script: the `#SBATCH` request, then the settings it was written with, then the steps.
    `run_args` are `popplast run`'s file and flags but the tracking URI; the script adds --tracking-uri,
    --address, --run-id-file and, when the job's folder holds a search run's id, --resume."""
    r = request
    sbatch = [
        f"--job-name={r.job_name}",
        f"--nodes={r.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={r.cpus_per_task}",
        *([f"--gpus-per-node={r.gpus_per_node}"] if r.gpus_per_node else []),
        f"--time={r.time}",
        *([f"--partition={r.partition}"] if r.partition else []),
        *([f"--account={r.account}"] if r.account else []),
        f"--signal=B:USR1@{r.signal_seconds}",
        "--requeue",
        "--open-mode=append",
        f"--output={job_dir}/slurm-%j.out",
        *r.sbatch_options,
    ]
    settings = f"""\
WORKDIR={shlex.quote(workdir)}
JOB_DIR={shlex.quote(job_dir)}
PYTHON={shlex.quote(python)}
RAY_PORT={r.ray_port}
CPUS={r.cpus_per_task}
GPUS={r.gpus_per_node}
TRACKING_URI={shlex.quote(tracking_uri)}
RUN=({" ".join(shlex.quote(arg) for arg in run_args)})
"""
    return (
        "#!/bin/bash\n"
        + "".join(f"#SBATCH {option}\n" for option in sbatch)
        + HEADER
        + settings
        + BODY.replace("@REQUEUE_EXIT@", str(REQUEUE_EXIT))
        .replace("@NODES_WAIT@", str(NODES_WAIT))
        .replace("@RUN_ID_FILE@", RUN_ID_FILE)
        .replace("@SCRIPT@", SCRIPT)
    )


HEADER = """\
#
# A popplast search as one SLURM batch job (written by `popplast slurm`; the README's "On a SLURM cluster").
# A Ray head on the first node and a Ray worker on each other node, each a job step holding that node's CPUs
# and GPUs; `popplast run --address` on the head; Ray stopped when the search ends. SLURM sends USR1 before
# the time limit: the driver stops with its last checkpoint whole and the job requeues itself. A job that
# starts again (requeued, or resubmitted with `sbatch` after a scancel) resumes the search run whose id is in
# $JOB_DIR/search_run_id. Every path here must be on a file system all the job's nodes see.

"""

BODY = """
set -uo pipefail
cd "$WORKDIR" || exit 1
STEPS=() DRIVER="" WARNED=""
# USR1 (the time limit nears) goes on to the driver. SLURM sends SIGTERM (scancel, preemption) to every
# process of the job, the driver included: this shell then only waits for the driver to unwind
trap 'WARNED=1; [ -n "$DRIVER" ] && kill -USR1 "$DRIVER" 2>/dev/null' USR1
trap 'echo "[popplast] job $SLURM_JOB_ID was sent SIGTERM"' TERM

finish() {  # requeued after the warning (SLURM then ends the Ray steps), else Ray's steps stopped
  local status=$1 step alive
  trap '' USR1
  echo "[popplast] job $SLURM_JOB_ID: the driver ended with exit code $status"
  if [ "$status" = @REQUEUE_EXIT@ ]; then
    if scontrol requeue "$SLURM_JOB_ID"; then
      echo "[popplast] job $SLURM_JOB_ID nears its time limit: requeued, it resumes the search when it starts again"
    else
      echo "[popplast] job $SLURM_JOB_ID could not be requeued: \\`sbatch $JOB_DIR/@SCRIPT@\\` resumes the search"
    fi
  fi
  for step in ${STEPS[@]+"${STEPS[@]}"}; do  # srun passes SIGTERM on to `ray start --block`
    kill "$step" 2>/dev/null
  done
  for _ in $(seq 30); do  # a bounded wait: an srun that hangs is SLURM's to end with the job
    alive=""
    for step in ${STEPS[@]+"${STEPS[@]}"}; do kill -0 "$step" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 1
  done
  exit "$status"
}

# Ray's token authentication: a token made for this job, read by every node from the job's folder
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$JOB_DIR/ray-auth-token"
(umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH") || exit 1

RESUME=()
if [ -s "$JOB_DIR/@RUN_ID_FILE@" ]; then
  RUN_ID=$(cat "$JOB_DIR/@RUN_ID_FILE@")
  if "$PYTHON" -m popplast.integrations.slurm finished "$TRACKING_URI" "$RUN_ID"; then
    echo "[popplast] the search run $RUN_ID has finished: nothing left for job $SLURM_JOB_ID"
    exit 0  # its end reached MLflow before an earlier start of this job was stopped
  fi
  RESUME=(--resume "$RUN_ID")
  # a requeued job takes over from its own earlier start, which SLURM has ended, however it ended
  [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && RESUME+=(--force)
fi

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
# the head's address as the other nodes reach it (a host that maps its own name to 127.0.1.1 is asked again)
HEAD_IP=$(srun --nodes=1 --ntasks=1 -w "${NODES[0]}" bash -c \\
  'ip=$(hostname --ip-address | cut -d" " -f1)
   case $ip in 127.*) hostname -I | cut -d" " -f1 ;; *) echo "$ip" ;; esac')
ADDRESS="$HEAD_IP:$RAY_PORT"
echo "[popplast] job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on ${#NODES[@]} nodes;" \\
  "Ray head on ${NODES[0]} at $ADDRESS"

# A Ray node on node $1 for the job's life, in a step holding the node's CPUs, and its GPUs: a step has the
# job's GPUs on its node (CUDA_VISIBLE_DEVICES) unless it asks for fewer. A start that fails is tried again,
# three times in all (raylets starting together on one host can draw the same free port); the step's end
# (SIGTERM to every process in it) ends the loop too
ray_node() {
  local node=$1
  shift
  srun --nodes=1 --ntasks=1 -w "$node" --cpus-per-task="$CPUS" \\
    bash -c 'for _ in 1 2 3; do "$@" && exit 0; sleep 5; done; exit 1' ray-node \\
    "$PYTHON" -m ray.scripts.scripts start --block --num-cpus="$CPUS" --num-gpus="$GPUS" --disable-usage-stats \\
    "$@" >> "$JOB_DIR/ray-$node.out" 2>&1 &
  STEPS+=($!)
}
ray_node "${NODES[0]}" --head --node-ip-address="$HEAD_IP" --port="$RAY_PORT" --include-dashboard=false
"$PYTHON" -m popplast.integrations.slurm wait-nodes "$ADDRESS" 1 @NODES_WAIT@ || finish 1
for node in "${NODES[@]:1}"; do
  ray_node "$node" --address="$ADDRESS"
done
"$PYTHON" -m popplast.integrations.slurm wait-nodes "$ADDRESS" "${#NODES[@]}" @NODES_WAIT@ || finish 1
[ -n "$WARNED" ] && finish @REQUEUE_EXIT@

"$PYTHON" -m popplast run "${RUN[@]}" ${RESUME[@]+"${RESUME[@]}"} --tracking-uri "$TRACKING_URI" \\
  --address "$ADDRESS" --run-id-file "$JOB_DIR/@RUN_ID_FILE@" &
DRIVER=$!
[ -n "$WARNED" ] && kill -USR1 "$DRIVER"
while kill -0 "$DRIVER" 2>/dev/null; do
  wait "$DRIVER"  # returns early when a signal is trapped; the driver is waited for again
done
wait "$DRIVER"
finish $?
"""


def submit(script: str) -> str:
    """The job submitted with `sbatch`; its id."""
    try:
        done = subprocess.run(["sbatch", "--parsable", script], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SlurmError(
            "sbatch is not on PATH: run popplast slurm on a SLURM login node (--dry-run prints the job script)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmError("sbatch did not answer in 120 s: is slurmctld reachable from here?") from None
    if done.returncode != 0:
        said = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        raise SlurmError(f"sbatch refused {script}: {said}")
    return done.stdout.strip().split(";")[0]


def finished(tracking_uri: str, search_run_id: str) -> int:
    """0 when MLflow says the search run FINISHED, else 1 (a job script's test: shell convention)."""
    from mlflow import MlflowClient

    try:
        status = MlflowClient(tracking_uri).get_run(search_run_id).info.status
    except Exception as e:  # the driver's resume says what is wrong, in its own words
        print(f"[popplast] could not read the search run {search_run_id}: {type(e).__name__}", file=sys.stderr)
        return 1
    return 0 if status == "FINISHED" else 1


def wait_nodes(address: str, nodes: int, seconds: float) -> int:
    """0 once the Ray cluster at `address` has `nodes` live nodes; 1, saying so, when `seconds` pass first."""
    import time

    import ray

    deadline = time.monotonic() + seconds
    while True:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            break
        except (ConnectionError, RuntimeError) as e:
            if time.monotonic() > deadline:
                print(f"[popplast] the Ray head at {address} did not answer in {seconds:.0f} s: {e}", file=sys.stderr)
                return 1
            time.sleep(2)
    try:
        while (alive := sum(1 for node in ray.nodes() if node["Alive"])) < nodes:
            if time.monotonic() > deadline:
                print(f"[popplast] {alive} of {nodes} Ray nodes joined in {seconds:.0f} s", file=sys.stderr)
                return 1
            time.sleep(1)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["wait-nodes"] and len(sys.argv) == 5:
        sys.exit(wait_nodes(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    if sys.argv[1:2] == ["finished"] and len(sys.argv) == 4:
        sys.exit(finished(sys.argv[2], sys.argv[3]))
    print(
        "usage: python -m popplast.integrations.slurm wait-nodes ADDRESS N SECONDS | finished TRACKING_URI RUN_ID",
        file=sys.stderr,
    )
    sys.exit(2)
