"""A real SLURM cluster on this machine for the tests: munged, slurmctld and three slurmd (nodes n1-n3, each
a daemon of its own on its own port, all on 127.0.0.1), configured in a temporary folder and torn down after.

Needs root (slurmd starts jobs as their users) and Debian's slurm-wlm and munge (`make test-cluster`
installs them when run as root); `unavailable()` says why not otherwise."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel")
NODES = ("n1", "n2", "n3")


def unavailable() -> str | None:
    """Why no SLURM cluster can be started here, or None."""
    if os.geteuid() != 0:
        return "SLURM's daemons are started as root here (slurmd runs jobs as their users); not root"
    missing = [name for name in DAEMONS if shutil.which(name) is None and not os.path.exists(f"/usr/sbin/{name}")]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge; make test-cluster does as root)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """Start with start(); `env` is what a client (sbatch, popplast slurm) needs; stop() ends every job and
    daemon and removes the folder."""

    def __init__(self, cpus_per_node: int = 2) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="popplast-slurm-"))
        self.cpus = cpus_per_node
        self.processes: list[subprocess.Popen] = []
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        f = self.folder
        for sub in ("munge", "state", "spool", "log"):
            (f / sub).mkdir(mode=0o700)
        os.chmod(f, 0o755)  # munged wants every folder on its socket's path searchable
        os.chmod(f / "munge", 0o755)
        key = f / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = f / "munge" / "socket"
        self._daemon(
            _exe("munged"),
            "-F",
            "--force",
            f"--socket={socket_path}",
            f"--key-file={key}",
            f"--log-file={f / 'log' / 'munged.log'}",
            f"--pid-file={f / 'munge' / 'pid'}",
            f"--seed-file={f / 'munge' / 'seed'}",
        )
        self._wait(lambda: socket_path.exists(), "munged's socket")
        controller, *node_ports = _free_ports(1 + len(NODES))
        host = socket.gethostname()
        nodes = "".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={self.cpus} State=UNKNOWN\n"
            for name, port in zip(NODES, node_ports)
        )
        # cred_expire: how long a requeued job waits before it may start again (SLURM's default is 120 s)
        self.conf.write_text(
            f"""ClusterName=popplast-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={controller}
SlurmdPort={node_ports[0]}
AuthType=auth/munge
AuthInfo=socket={socket_path},cred_expire=5
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={f / "state"}
SlurmdSpoolDir={f / "spool"}/%n
SlurmctldPidFile={f / "slurmctld.pid"}
SlurmdPidFile={f / "slurmd-%n.pid"}
SlurmctldLogFile={f / "log" / "slurmctld.log"}
SlurmdLogFile={f / "log" / "slurmd-%n.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# nodes declare more CPUs than this machine has: SLURM schedules by them, the jobs share the cores
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=500000
KillWait=20
MinJobAge=600
{nodes}PartitionName=test Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""
        )
        self._daemon(_exe("slurmctld"), "-D", "-i", "-f", str(self.conf))
        self._wait(lambda: self._run("scontrol", "ping").returncode == 0, "slurmctld")
        for name in NODES:
            self._daemon(_exe("slurmd"), "-D", "-N", name, "-f", str(self.conf))
        self._wait(lambda: self.idle_nodes() == len(NODES), "the three slurmd")

    def _daemon(self, *argv: str) -> None:
        with open(self.folder / "log" / f"{Path(argv[0]).name}-{len(self.processes)}.out", "wb") as log:
            self.processes.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in (self.folder / "log").iterdir())
                raise RuntimeError(f"{what} did not start in {timeout:.0f} s:\n{logs}")
            time.sleep(0.3)

    def idle_nodes(self) -> int:
        done = self._run("sinfo", "-h", "-N", "-o", "%N %t")
        return sum(1 for line in done.stdout.splitlines() if line.split()[-1:] == ["idle"])

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job`'s fields (JobState, Restarts, ...)."""
        text = self._run("scontrol", "-o", "show", "job", job_id).stdout
        return dict(field.split("=", 1) for field in text.split() if "=" in field)

    def wait_job(self, job_id: str, states: tuple[str, ...], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id)).get("JobState") not in states:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job.get('JobState')} after {timeout:.0f} s, not {states}")
            time.sleep(1)
        return job

    def update_time_limit(self, job_id: str, minutes: int) -> None:
        """The job's time limit set, unless the job has ended meanwhile."""
        done = self._run("scontrol", "update", f"JobId={job_id}", f"TimeLimit={minutes}")
        assert done.returncode == 0 or "already finished" in done.stderr, done.stderr

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        done = self._run(*argv)
        assert done.returncode == 0, done.stderr
        return done

    def stop(self) -> None:
        self._run("scancel", "--full", "--partition=test")
        deadline = time.monotonic() + 60
        while self._run("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
            time.sleep(1)
        for process in reversed(self.processes):  # the slurmds first, then slurmctld, munged last
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
