#!/usr/bin/env bash
# Live migration throughput: a real etcd and three `duroslight serve --memory` nodes on loopback, a 1 GiB volume with
# two replicas of which the first FILL MiB are written (the rest never: a move sends those chunks as deallocates),
# then `ctl volumes move` of its secondary to the third node, idle, and once more while bench/Duroslight.Load writes
# through the primary (a secondary moves, so the host is never refused).
# Prints the move's time, its MiB/s over the whole volume (`move-status` once done), bytes copied, and the host's
# IOPS and latency during the loaded move. Everything shares this machine's cores: note the load average. Usage:
#   bench/run-migration.sh [rate-MiB/s]    (0: unlimited, the default; ports 23000-23999: PORT_BASE moves them;
#   FILL=256 MiB written before the moves)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-0} base=${PORT_BASE:-23000} fill=${FILL:-256}
tag=move; source bench/lib/cluster.sh
for n in 0 1 2; do start_node $n --memory --log-level warning --rebuild-rate "$rate"; done
for n in 0 1 2; do wait_active $n; done
ctl() { node_ctl 0 "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join(str(d[k]) for k in sys.argv[1:]))" "$@"; }
ctl volumes create m 1G --replicas 2 >/dev/null
read -r primary nsid <<<"$(ctl --json volumes show m | json primary nsid)"
# the node holding the secondary, and the one holding nothing
secondary() { ctl --json volumes show m | python3 -c "import json,sys; d=json.load(sys.stdin); print([n for n in d['placement'] if n != d['primary']][0])"; }
"$load" --target 127.0.0.1:$((base + 421 + primary)) --nsid "$nsid" --rw write --bs 128k --qd 8 --size "${fill}m" --time 3 >/dev/null

# move the secondary to the node without a replica and wait for the end; prints the move-status numbers
move() {
    local from to phase
    from=$(secondary); to=$((3 - primary - from))
    ctl volumes move m --to "$to" --from "$from" >/dev/null
    while :; do
        read -r phase <<<"$(ctl --json volumes move-status m | json phase)"
        case "$phase" in done|failed|cancelled) break ;; esac
        sleep 0.2
    done
    echo "move node $from -> $to: $(ctl volumes move-status m | tr ' ' '\n' | grep -E '^(phase|elapsed_seconds|mib_per_second|bytes_copied|chunks_total)=' | tr '\n' ' ')"
}
echo "== idle move (rebuild rate ${rate} MiB/s, 0 = unlimited; ${fill} MiB of 1 GiB written), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
move
echo "== host alone first (no move), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "host alone: $("$load" --target 127.0.0.1:$((base + 421 + primary)) --nsid "$nsid" --rw randwrite --bs 4k --qd 16 --size "${fill}m" --time 10 2>&1 | tail -1)"
echo "== move under host load: 4K randwrite QD16 over the written part through the primary, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$load" --target 127.0.0.1:$((base + 421 + primary)) --nsid "$nsid" --rw randwrite --bs 4k --qd 16 --size "${fill}m" --time "${LOAD_SECS:-40}" >"$dir/load.out" 2>&1 &
lp=$!
sleep 2
move
wait "$lp"
echo "host over the whole loaded run (it outlasts the move: LOAD_SECS=40): $(tail -1 "$dir/load.out")"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
