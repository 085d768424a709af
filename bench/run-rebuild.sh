#!/usr/bin/env bash
# Rebuild throughput and the host's latency while it runs (issue 13): a real etcd and three `duroslight serve` nodes
# (sparse stores under /var/tmp, so a restarted node keeps its replica) on loopback, one 3-replica volume of SIZE.
# Rows: host latency with nothing rebuilding (control); a secondary SIGKILLed while the host writes over the first
# DIRTY bytes, restarted: a dirty rebuild (only the chunks it missed); the same secondary wiped (data directory
# deleted) and restarted: a full copy. During each rebuild the host runs 4K randrw (70% reads) at QD 8 on the primary.
# Prints the rebuild's chunks, kind and seconds (from the restart to the join: includes the node's start), its
# MiB/s of chunks handled, and the host's latency line. Usage:
#   bench/run-rebuild.sh [rate_mib_s] [size] [dirty]     (defaults 64 1G 64m; ports 24000-24999, PORT_BASE moves them)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-64} size=${2:-1G} dirty=${3:-64m} base=${PORT_BASE:-24000}
tag=rebuild; source bench/lib/cluster.sh
# Sparse stores under $dir, so a restarted node keeps its replica.
start() { start_node "$1" --store sparse --log-level information --rebuild-rate "$rate"; wait_active "$1"; }
for n in 0 1 2; do start $n; done
ctl() { node_ctl "$@"; }
ctl 0 volumes create rb "$size" --replicas 3 >/dev/null
json() { ctl "$1" --json volumes show rb | python3 -c "import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2"; }
primary=$(json 0 "v['primary']") nsid=$(json 0 "v['nsid']")
victim=$(( (primary + 1) % 3 ))
host() { "$load" --target 127.0.0.1:$((base + 421 + primary)) --metrics http://127.0.0.1:$((base + 181 + primary))/metrics --nsid "$nsid" --ramp 0 "$@"; }
host --rw write --bs 128k --qd 8 --time 4 --size "$size" >/dev/null   # data everywhere: a full copy moves real bytes
echo "control (no rebuild): $(host --rw randrw --bs 4k --qd 8 --time 5 --size "$dirty")  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"

# Restart the victim (after wiping it if asked) while the host runs; report once it is back in sync.
rebuild() {
    local label=$1 wipe=$2
    kill -9 "${pids[$victim]}"; wait "${pids[$victim]}" 2>/dev/null || true
    host --rw randwrite --bs 4k --qd 8 --time 3 --size "$dirty" >/dev/null   # what the victim misses
    [ "$wipe" = 1 ] && rm -rf "$dir/n$victim"
    until [ "$(json "$primary" "'$victim' not in v['replica_states'] or v['replica_states']['$victim'] == 'down'")" = True ]; do sleep 0.5; done
    start "$victim"
    # The host's 4K randrw in 2 s windows until the victim is back in sync.
    rm -f "$dir/stop"
    ( while [ ! -e "$dir/stop" ]; do host --rw randrw --bs 4k --qd 8 --time 2 --size "$dirty"; done ) >"$dir/host.out" 2>&1 & local h=$!
    until [ "$(json "$primary" "$victim in v['in_sync']")" = True ]; do sleep 0.2; done
    touch "$dir/stop"; wait $h || true
    echo "$label: $(json "$primary" "v['last_rebuild']['$victim']")  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    # The copy's own time, start to join, from the primary's log.
    python3 - "$dir/n$primary.log" "$victim" <<'PY'
import re, sys, datetime
lines = open(sys.argv[1]).read().splitlines()
t = lambda l: datetime.datetime.fromisoformat(l.split(' ')[0])
start = [l for l in lines if f'rebuilding node {sys.argv[2]} (' in l][-1]
end = [l for l in lines if f'node {sys.argv[2]} rebuilt (' in l][-1]
chunks = int(re.search(r'\((\d+) chunks', start).group(1))
secs = (t(end) - t(start)).total_seconds()
print(f"  copy: {chunks} chunks in {secs:.1f} s = {chunks * 0.125 / max(secs, 1e-3):.1f} MiB/s of chunks handled")
PY
    echo "  host 4K randrw QD8 during the rebuild, 2 s windows:"; sed 's/^/    /' "$dir/host.out"
}
rebuild "dirty rebuild" 0
rebuild "full rebuild (wiped)" 1
