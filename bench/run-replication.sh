#!/usr/bin/env bash
# The cost of replicated writes: a real etcd and three `duroslight serve` nodes (memory store) on loopback, one
# volume each with 1, 2 and 3 replicas; bench/Duroslight.Load drives each volume through its primary. Prints every
# run and the median IOPS per (replicas, workload); read the ratios to the 1-replica row, not the absolute figures
# (every node, the generator and etcd share this machine's cores). Usage:
#   bench/run-replication.sh [runs] [seconds]      (ports 25000-25999: PORT_BASE=25000 moves them;
#   REPLICAS="1 2 3" and WORKLOADS='randwrite --bs 4k ...|write ...' pick the rows)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3} secs=${2:-5} base=${PORT_BASE:-25000}
tag=repl; source bench/lib/cluster.sh
for n in 0 1 2; do start_node $n --memory --log-level warning; done
for n in 0 1 2; do wait_active $n; done
ctl() { node_ctl 0 "$@"; }
for r in 1 2 3; do ctl volumes create "r$r" 1G --replicas $r >/dev/null; done
field() { ctl --json volumes show "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
for r in ${REPLICAS:-1 2 3}; do
    primary=$(field "r$r" primary) nsid=$(field "r$r" nsid)
    run() { "$load" --target 127.0.0.1:$((base + 421 + primary)) --metrics http://127.0.0.1:$((base + 181 + primary))/metrics \
            --nsid "$nsid" --time "$secs" --ramp 1 --size 256m "$@"; }
    run --rw write --bs 128k --qd 8 --time 2 >/dev/null   # fill: reads hit data, pages are touched
    IFS='|' read -r -a workloads <<<"${WORKLOADS:-randwrite --bs 4k --connections 2 --qd 16|write --bs 128k --connections 2 --qd 4|randread --bs 4k --connections 2 --qd 16}"
    for w in "${workloads[@]}"; do
        results=()
        for ((i = 0; i < runs; i++)); do
            line=$(run --rw $w); echo "replicas=$r primary=$primary $line"
            results+=("$(sed -E 's/.*iops=([0-9]+).*/\1/' <<<"$line")")
        done
        median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
        echo "== replicas=$r $w: median iops $median  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    done
done
