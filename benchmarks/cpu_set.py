"""`make bench`: the CPU benchmarks in one run, their ratios first, then their tables.

.venv/bin/python benchmarks/cpu_set.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = [
    ("overhead.py", ["--repeats", "3"]),
    ("weights.py", ["--repeats", "7"]),
    ("checkpoint_cost.py", []),
    ("scaling.py", ["--repeats", "3"]),
    ("async_utilisation.py", []),
    ("stop_latency.py", []),
]


def main(scripts: list[tuple[str, list[str]]] = SCRIPTS, name: str = "CPU") -> int:
    start = time.perf_counter()
    outputs = []
    for script, args in scripts:
        print(f"running {script} ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True)
        if done.returncode:
            print(done.stdout, done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        outputs.append((script, done.stdout))
    print("# Ratios")
    for script, out in outputs:
        for line in out.splitlines():
            if not line.startswith("|") and ("ratio" in line or "scaling" in line or "/ popplast" in line):
                print(f"- {script}: {line}")
    for script, out in outputs:
        print(f"\n# {script}\n{out.strip()}")
    print(f"\n(all {name} benchmarks: {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
