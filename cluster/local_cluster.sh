#!/usr/bin/env bash
# A Ray cluster on one machine: a head node and N worker nodes, each a separate raylet with its own resources.
# For tests and benchmarks, and for trying popplast's --address without a cluster.
#   cluster/local_cluster.sh up 2      # head (0 CPUs, so work lands on the workers) + 2 workers of 1 CPU
#   .venv/bin/popplast run search_spaces/digits_gencnn.yaml --address 127.0.0.1:6390
#   cluster/local_cluster.sh down
# Environment: RAY (the ray executable, default .venv/bin/ray), RAY_PORT (6390), HEAD_CPUS (0), WORKER_CPUS (1).
set -euo pipefail
RAY=${RAY:-.venv/bin/ray}
PORT=${RAY_PORT:-6390}
# Ray 2.60 enables token authentication; a node joining with `ray start` must be told so (token: ~/.ray/auth_token)
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
case "${1:-}" in
  up)
    workers=${2:-2}
    "$RAY" start --head --port="$PORT" --num-cpus="${HEAD_CPUS:-0}" --include-dashboard=false \
      --disable-usage-stats >/dev/null
    for _ in $(seq 1 "$workers"); do
      "$RAY" start --address="127.0.0.1:$PORT" --num-cpus="${WORKER_CPUS:-1}" --disable-usage-stats >/dev/null
    done
    echo "127.0.0.1:$PORT"
    ;;
  down)
    # Only this cluster's processes would be better; `ray stop` ends every Ray process of this user.
    "$RAY" stop --force >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 up N | down" >&2
    exit 2
    ;;
esac
