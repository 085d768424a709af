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
dotnet build src/Duroslight.Server -c Release -v q -nologo >/dev/null
dotnet build bench/Duroslight.Load -c Release -v q -nologo >/dev/null
server=src/Duroslight.Server/bin/Release/net10.0/duroslight
load=bench/Duroslight.Load/bin/Release/net10.0/duroslight-load
dir=$(mktemp -d /var/tmp/dsl-repl.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
etcd_url=http://127.0.0.1:$((base + 379))
etcd --name b --data-dir "$dir/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
     --listen-peer-urls http://127.0.0.1:$((base + 380)) --initial-advertise-peer-urls http://127.0.0.1:$((base + 380)) \
     --initial-cluster b=http://127.0.0.1:$((base + 380)) >"$dir/etcd.log" 2>&1 & pids+=($!)
sleep 2
for n in 0 1 2; do
    mkdir -p "$dir/n$n"
    "$server" serve --memory --etcd "$etcd_url" --cluster bench --node-index $n --log-level warning \
        --listen 127.0.0.1:$((base + 421 + n)) --discovery 127.0.0.1:$((base + 11 + n)) --metrics 127.0.0.1:$((base + 181 + n)) \
        --data-dir "$dir/n$n" --control-socket "$dir/n$n/ctl.sock" >"$dir/n$n.log" 2>&1 & pids+=($!)
done
for n in 0 1 2; do for _ in $(seq 120); do [ -S "$dir/n$n/ctl.sock" ] && "$server" status --socket "$dir/n$n/ctl.sock" 2>/dev/null | grep -q Active && break; sleep 0.5; done; done
ctl() { "$server" ctl --socket "$dir/n0/ctl.sock" "$@"; }
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
