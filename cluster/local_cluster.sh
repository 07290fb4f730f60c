#!/usr/bin/env bash
# A Ray cluster on one machine: a head node and N worker nodes, each a separate raylet with its own resources.
# For tests and benchmarks, and for trying popplast's --address without a cluster.
#   cluster/local_cluster.sh up 2      # head (0 CPUs, so work lands on the workers) + 2 workers of 1 CPU
#   .venv/bin/popplast run search_spaces/digits_gencnn.yaml --address 127.0.0.1:6390
#   cluster/local_cluster.sh add       # one more worker node
#   cluster/local_cluster.sh down      # this cluster's processes only (other Ray instances keep running)
# Environment: RAY (the ray executable, default .venv/bin/ray), RAY_PORT (6390), HEAD_CPUS (0), HEAD_GPUS (0),
# WORKER_CPUS (1), WORKER_GPUS (0). GPUs here are declared resources: Ray schedules by them and sets
# CUDA_VISIBLE_DEVICES, whether or not the machine has the devices (how the tests check GPU packing on a CPU).
set -euo pipefail
RAY=${RAY:-.venv/bin/ray}
PORT=${RAY_PORT:-6390}
# Ray 2.60 enables token authentication; a node joining with `ray start` must be told so (token: ~/.ray/auth_token)
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

add_worker() {
  "$RAY" start --address="127.0.0.1:$PORT" --num-cpus="${WORKER_CPUS:-1}" --num-gpus="${WORKER_GPUS:-0}" \
    --disable-usage-stats >/dev/null
}

case "${1:-}" in
  up)
    workers=${2:-2}
    "$RAY" start --head --port="$PORT" --num-cpus="${HEAD_CPUS:-0}" --num-gpus="${HEAD_GPUS:-0}" \
      --include-dashboard=false --disable-usage-stats >/dev/null
    for _ in $(seq 1 "$workers"); do add_worker; done
    echo "127.0.0.1:$PORT"
    ;;
  add)
    add_worker
    ;;
  down)
    # Every process of this cluster names its session folder, which the GCS listening on $PORT reports.
    session=$(ps -eo args | grep "[g]cs_server .*--gcs_server_port=$PORT " | tr ' ' '\n' \
      | sed -n 's/^--session-dir=//p' | head -n 1)
    if [ -n "$session" ]; then
      pkill -KILL -f -- "$session" || true
    fi
    # `ray stop` would forget the cluster too; a driver's ray.init() would otherwise try to join it
    current=/tmp/ray/ray_current_cluster
    if [ -f "$current" ] && grep -q ":$PORT\$" "$current"; then
      rm -f "$current"
    fi
    ;;
  *)
    echo "usage: $0 up N | add | down" >&2
    exit 2
    ;;
esac
