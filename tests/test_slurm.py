"""`popplast slurm`: the job script it writes, its checks, and three searches on a real SLURM cluster on this
machine (tests/slurm_cluster.py): one on three nodes (a Ray head and two Ray workers), one whose job's time
limit is shorter than the search (signalled, requeued, finished with the uninterrupted search's lineage),
and one cancelled with scancel and resumed by submitting its script again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main
from popplast.integrations.slurm import SlurmRequest, job_script, time_limit_seconds
from tests.helpers import individuals, lineage
from tests.slurm_cluster import SlurmCluster, unavailable

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cluster" / "slurm" / "popplast.sbatch"
POPPLAST = [sys.executable, "-m", "popplast"]

# The objective sleeps as long as the environment says (the jobs inherit the submitting process's): long
# enough on SLURM that a job's time limit falls inside the search, not at all for the reference search.
SLOW_OBJECTIVE = """
import os
import time


def fit(config, trial):
    time.sleep(float(os.environ.get("SLOW_OBJECTIVE_SECONDS", "0")))
    return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2}
"""

SEARCH = """
objective: slowobj:fit
fitness: {metric: loss, mode: minimize}
strategy:
  method: ga
  population: 4
  generations: GENERATIONS
  seed: 5
space:
  x: {type: float, low: -1.0, high: 1.0}
  y: {type: float, low: -1.0, high: 1.0}
"""


def search_folder(folder: Path, generations: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slowobj.py").write_text(textwrap.dedent(SLOW_OBJECTIVE))
    path = folder / "search.yaml"
    path.write_text(textwrap.dedent(SEARCH.replace("GENERATIONS", str(generations))))
    return path


def dry_run(capsys, *argv: str) -> str:
    assert main(["slurm", *argv, "--dry-run"]) == 0
    return capsys.readouterr().out


def test_dry_run_two_nodes_four_gpus(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = search_folder(tmp_path, 3)
    script = dry_run(
        capsys,
        str(space),
        *("--nodes", "2", "--gpus-per-node", "2", "--cpus-per-task", "8", "--time", "1-12:00:00"),
        *("--partition", "gpu", "--account", "lab", "--signal-seconds", "600", "--job-dir", "jobs/a"),
        *("--method", "tpe", "--workers", "4", "--gpus-per-worker", "1", "--tracking-uri", "http://10.0.0.5:5000"),
    )
    sbatch = [line.split(" ", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert sbatch == [
        "--job-name=popplast-search",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=8",
        "--gpus-per-node=2",
        "--time=1-12:00:00",
        "--partition=gpu",
        "--account=lab",
        "--signal=B:USR1@600",
        "--requeue",
        "--open-mode=append",
        f"--output={tmp_path}/jobs/a/slurm-%j.out",
    ]
    # one Ray node per SLURM node, each a step with the node's CPUs and GPUs; the driver joins the head
    assert 'srun --nodes=1 --ntasks=1 -w "$node" --cpus-per-task="$CPUS" \\\n' in script
    start = '"$PYTHON" -m ray.scripts.scripts start --block --num-cpus="$CPUS" --num-gpus="$GPUS" --disable-usage-stats'
    assert start in script
    assert (
        'ray_node "${NODES[0]}" --head --node-ip-address="$HEAD_IP" --port="$RAY_PORT" --include-dashboard=false'
        in script
    )
    assert 'ray_node "$node" --address="$ADDRESS"' in script
    assert "CPUS=8\nGPUS=2\n" in script
    assert f"TRACKING_URI=http://10.0.0.5:5000\nRUN=({space} --method tpe --workers 4 --gpus-per-worker 1.0)" in script
    assert '"$PYTHON" -m popplast run "${RUN[@]}" ${RESUME[@]+"${RESUME[@]}"} --tracking-uri "$TRACKING_URI"' in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script and 'if [ "$status" = 138 ]' in script
    assert not (tmp_path / "jobs").exists()  # a dry run writes nothing
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_template_is_what_the_command_writes():
    """cluster/slurm/popplast.sbatch, for people who write their own job script, is the command's script for a
    two-node request with placeholder paths: regenerate it with this test's arguments when the script changes."""
    request = SlurmRequest(
        nodes=2, gpus_per_node=4, cpus_per_task=16, time="24:00:00", partition="gpu", job_name="popplast-digits_gencnn"
    )
    expected = job_script(
        request,
        "/path/to/project/popplast-slurm/digits_gencnn",
        "/path/to/project",
        "/path/to/project/.venv/bin/python",
        "http://mlflow.example.org:5000",
        ["search_spaces/digits_gencnn.yaml", "--workers", "8", "--gpus-per-worker", "1"],
    )
    assert TEMPLATE.read_text() == expected


def test_the_readmes_command(tmp_path, capsys, monkeypatch):
    """The README's `popplast slurm` example, as written there, makes the script it describes."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### On a SLURM cluster") :]
    command = section[section.index("popplast slurm search_spaces") : section.index("# --dry-run")]
    argv = command.replace("\\\n", " ").split()[2:]  # after "popplast slurm"
    monkeypatch.chdir(ROOT)  # the file's path is the repository's
    script = dry_run(capsys, *argv)
    assert "#SBATCH --nodes=2\n" in script and "#SBATCH --gpus-per-node=4\n" in script
    assert "#SBATCH --account=myproject\n" in script and "TRACKING_URI=sqlite:///mlflow.db\n" in script


@pytest.mark.parametrize(
    "text, seconds",
    [("30", 1800), ("5:30", 330), ("1:00:00", 3600), ("2-0", 172800), ("2-3:04", 183840), ("1-00:00:01", 86401)],
)
def test_time_limits_as_sbatch_reads_them(text, seconds):
    assert time_limit_seconds(text) == seconds


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--time", "0"], "--time"),
        (["--time", "1:2:3:4"], "--time"),
        (["--time", "tomorrow"], "--time"),
        (["--time", "10", "--signal-seconds", "600"], "--signal-seconds"),
        (["--time", "1", "--signal-seconds", "30"], "--signal-seconds"),  # warned before it could do anything
        (["--sbatch-option=--time=5"], "--sbatch-option"),
        (["--sbatch-option=--no-requeue"], "--sbatch-option"),
        (["--job-dir", "my jobs"], "--job-dir"),
        (["--job-dir", "/proc/popplast/job"], "--job-dir"),
        (["--nodes", "0"], "--nodes"),
        (["--partition", "gpu\n#SBATCH --uid=0"], "--partition"),
        (["--account", "a b"], "--account"),
        (["--sbatch-option=--qos=high --uid=0"], "--sbatch-option"),
        (["--ray-port", "80"], "--ray-port"),
        (["--address", "10.0.0.1:6379"], "--address"),
        (["--executor", "simulated"], "--executor"),
        (["--run-id-file", "id.txt"], "--run-id-file"),
        (["--force"], "--force"),
        (["--method", "no-such-method"], "method"),
        (["--population", "-3"], "population"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    space = search_folder(tmp_path, 3)
    assert main(["slurm", str(space), *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and flag in err, err
    assert not (tmp_path / "popplast-slurm").exists()


def test_an_experiment_named_in_any_script_makes_a_job_name_slurm_takes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = search_folder(tmp_path, 3)
    script = dry_run(capsys, str(space), "--experiment", "résumé: GA vs TPE", "--job-dir", "j")
    assert "#SBATCH --job-name=popplast-r-sum---GA-vs-TPE\n" in script


def test_without_sbatch_is_one_line(tmp_path, monkeypatch):
    space = search_folder(tmp_path, 3)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no sbatch on it
    done = subprocess.run([*POPPLAST, "slurm", str(space)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "popplast: slurm: sbatch is not on PATH: run popplast slurm on a SLURM login node (--dry-run prints the job "
        "script)"
    ]


def test_python_api_mirrors_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = search_folder(tmp_path, 3)
    argv = ["--nodes", "3", "--cpus-per-task", "4", "--time", "2:00:00", "--job-dir", "j", "--workers", "6"]
    job = popplast.slurm(space, nodes=3, cpus_per_task=4, time_limit="2:00:00", job_dir="j", workers=6, dry_run=True)
    assert job.script == dry_run(capsys, str(space), *argv).rstrip("\n") + "\n"


# --- on a real SLURM cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster():
    why = unavailable()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(cpus_per_node=4)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# The three searches, each a job submitted when the module starts: they spend most of their time waiting (for
# SLURM's warning, for their objective's sleep), so they wait together; the scancel test comes first, as its
# job must still be running when it is cancelled. The three-node job is submitted once the other two have
# begun their searches: five Ray nodes starting at once on two cores can outlast Ray's 30 s for a raylet to
# register. It takes a CPU of each node; the others two of n1 and of n2.
JOBS = {  # name: (generations, the objective's seconds, popplast slurm's flags)
    "time-limit": (10, 2.5, ("--time", "2", "--signal-seconds", "60", "--cpus-per-task", "2", "--ray-port", "6496")),
    "scancel": (8, 1.0, ("--time", "10", "--cpus-per-task", "2", "--ray-port", "6497")),
    "three-nodes": (4, 0.5, ("--nodes", "3", "--time", "10", "--ray-port", "6495")),
}


@pytest.fixture(scope="module")
def jobs(slurm_cluster, tmp_path_factory):
    """Each search's job id, job folder and search folder."""
    submitted = {}
    for name, (generations, sleep, flags) in JOBS.items():
        if name == "three-nodes":
            deadline = time.monotonic() + 180
            while not all((job_dir / "search_run_id").exists() for _, job_dir, _ in submitted.values()):
                if time.monotonic() > deadline:
                    break  # the tests waiting on those jobs say what went wrong
                time.sleep(0.5)
        folder = tmp_path_factory.mktemp(name)
        search_folder(folder, generations)
        job_id, job_dir = submit(slurm_cluster, folder, sleep, *flags, "--workers", "2")
        submitted[name] = job_id, job_dir, folder
    return submitted


def submit(cluster: SlurmCluster, folder: Path, sleep: float, *argv: str) -> tuple[str, Path]:
    """`popplast slurm` run as a user runs it, in the search's folder; the job's id and folder."""
    env = {**cluster.env, "SLOW_OBJECTIVE_SECONDS": str(sleep), "RAY_AUTH_MODE": "token"}
    job_dir = folder / "job"
    done = subprocess.run(
        [*POPPLAST, "slurm", "search.yaml", "--job-dir", str(job_dir), "--tracking-uri", "sqlite:///mlflow.db", *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[3].rstrip(":"), job_dir


def reference_lineage(folder: Path, generations: int) -> list[tuple]:
    """The same search uninterrupted, on the local executor: what every SLURM search must have logged."""
    space = search_folder(folder, generations)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = popplast.run(space, executor="local", tracking_uri=uri, progress=False)
    return lineage(individuals(uri, result.search_run_id))


def searched(folder: Path) -> tuple[dict, list[tuple], list[dict]]:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run_id = (folder / "job" / "search_run_id").read_text().strip()
    rows = individuals(uri, run_id)
    return MlflowClient(uri).get_run(run_id).to_dictionary(), lineage(rows), rows


def no_ray_left(port: int) -> None:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--gcs_server_port={port}" not in ps and f":{port}" not in ps, "the job's Ray processes outlived it"


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


@pytest.mark.cluster
def test_scancel_then_resubmit_resumes(slurm_cluster, jobs, tmp_path):
    job_id, job_dir, folder = jobs["scancel"]
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    deadline = time.monotonic() + 240
    while True:  # cancelled once the search has logged its third generation's first individuals
        run_file = job_dir / "search_run_id"
        if run_file.exists() and any(r["generation"] >= 2 for r in individuals(uri, run_file.read_text().strip())):
            break
        assert slurm_cluster.job(job_id)["JobState"] in ("PENDING", "RUNNING")
        assert time.monotonic() < deadline, "the search did not reach its third generation"
        time.sleep(0.5)
    slurm_cluster.run("scancel", job_id)
    slurm_cluster.wait_job(job_id, ("CANCELLED",), timeout=60)
    deadline = time.monotonic() + 60
    while (run := searched(folder)[0])["info"]["status"] == "RUNNING":  # the driver unwinds as the job ends
        assert time.monotonic() < deadline, "the cancelled search's run was not marked"
        time.sleep(0.5)
    assert run["info"]["status"] == "KILLED"
    output = (job_dir / f"slurm-{job_id}.out").read_text()
    assert f"job {job_id} was sent SIGTERM" in output  # the batch shell waited for the driver to unwind
    assert f"job {job_id}: the driver ended with exit code 143" in output
    assert run["data"]["tags"]["popplast.end_reason"].startswith(f"interrupted by SIGTERM (SLURM job {job_id}")
    done = slurm_cluster.run("sbatch", "--parsable", str(job_dir / "job.sbatch"))
    again = done.stdout.strip()
    job = slurm_cluster.wait_job(again, ENDED, timeout=240)
    output = (job_dir / f"slurm-{again}.out").read_text()
    assert job["JobState"] == "COMPLETED", output
    assert "resuming search run" in output
    run, got, _ = searched(folder)
    assert run["info"]["status"] == "FINISHED"
    assert got == reference_lineage(tmp_path / "reference", 8)
    no_ray_left(6497)


@pytest.mark.cluster
def test_search_on_three_nodes(slurm_cluster, jobs, tmp_path):
    job_id, job_dir, folder = jobs["three-nodes"]
    job = slurm_cluster.wait_job(job_id, ENDED, timeout=300)
    output = (job_dir / f"slurm-{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED", output
    assert "on 3 nodes; Ray head on n1" in output
    run, got, rows = searched(folder)
    assert run["info"]["status"] == "FINISHED"
    assert len(rows) == 16 and all(r["status"] == "ok" for r in rows)  # every individual, in MLflow
    assert got == reference_lineage(tmp_path / "reference", 4)
    assert len({r["run_id"] for r in rows}) == 16
    no_ray_left(6495)


@pytest.mark.cluster
def test_time_limit_signals_requeues_and_finishes(slurm_cluster, jobs, tmp_path):
    """A two-minute job warned 60 s before its limit (SLURM warns up to 30 s earlier still): the search needs
    about 50 s of evaluations after the job's Ray and driver start, so its first start is interrupted."""
    job_id, job_dir, folder = jobs["time-limit"]
    log, deadline = job_dir / f"slurm-{job_id}.out", time.monotonic() + 480
    while True:  # until a start's driver was warned and the job requeued (a start warned before its driver
        job = slurm_cluster.job(job_id)  # began, on a slow machine, requeues too, and is waited past)
        said = log.read_text() if log.exists() else ""
        if int(job.get("Restarts", "0")) >= 1 and "interrupted by SIGUSR1" in said:
            break
        assert job["JobState"] in ("PENDING", "RUNNING"), said
        assert time.monotonic() < deadline, f"no start of the job was warned and requeued:\n{said}"
        time.sleep(0.5)
    # the requeued job is given the time the search still needs (unless it has finished already): one
    # interruption is what is tested
    slurm_cluster.update_time_limit(job_id, 10)
    job = slurm_cluster.wait_job(job_id, ENDED, timeout=300)
    output = log.read_text()
    assert job["JobState"] == "COMPLETED" and int(job["Restarts"]) >= 1, output
    assert f"interrupted by SIGUSR1 (SLURM job {job_id}: USR1, the warning before its time limit)" in output
    assert f"job {job_id} nears its time limit: requeued" in output
    assert f"job {job_id}: the driver ended with exit code 138" in output
    assert f"job {job_id} (restart 1)" in output
    assert "resuming search run" in output
    run, got, rows = searched(folder)
    assert run["info"]["status"] == "FINISHED"
    assert got == reference_lineage(tmp_path / "reference", 10)
    no_ray_left(6496)
