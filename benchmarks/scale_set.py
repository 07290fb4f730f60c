"""`make bench-scale`: the driver at scale and the simulated cluster (issue 19), ratios first, then tables.

.venv/bin/python benchmarks/scale_set.py
"""

from __future__ import annotations

import sys

from cpu_set import main

SCRIPTS = [
    ("driver_throughput.py", []),
    ("driver_memory.py", []),
    ("simulated_cluster.py", ["--model", "thesis"]),
    ("simulated_cluster.py", ["--model", "demo"]),
    ("simulator_check.py", []),
]

if __name__ == "__main__":
    sys.exit(main(SCRIPTS, "scale"))
