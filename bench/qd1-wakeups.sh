#!/usr/bin/env bash
# bench/qd1-wakeups.sh [LABEL]: 4K random reads at QD1 for 10 s (SPDK's perf on CPU 0) against
# `serve --store memory --cores 1 --poll sleep` (CPU 1), built from this checkout (Release); prints IOPS, average
# latency and the shard thread's sleeps (voluntary context switches) and preemptions per I/O. Sleeps per I/O say
# whether the idle spin keeps the shard awake between a host's back-to-back commands; unlike latency they hold up
# on a loaded machine. Needs SPDK_PEER_DIR (a built SPDK tree, see the spdk-perf tool) and 2 MiB hugepages.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-$(git rev-parse --short HEAD)}; port=${PORT:-24620}; dport=${DISCOVERY_PORT:-28209}
: "${SPDK_PEER_DIR:?set SPDK_PEER_DIR to a built SPDK tree}"
export LD_LIBRARY_PATH=$SPDK_PEER_DIR/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
perf=$SPDK_PEER_DIR/build/examples/perf
dotnet build -c Release src/Duroslight.Server -nologo -v q > /dev/null
dir=$(mktemp -d /tmp/qd1-wakeups.XXXXXX)
taskset -c 1 dotnet src/Duroslight.Server/bin/Release/net10.0/duroslight.dll serve --listen 127.0.0.1:$port \
    --discovery 127.0.0.1:$dport --metrics off --data-dir "$dir" --store memory --cores 1 --poll sleep > "$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
tid=$(grep -l '^shard-0$' /proc/$pid/task/*/comm | head -1 | cut -d/ -f5)
tr="trtype:tcp adrfam:IPv4 traddr:127.0.0.1 trsvcid:$port subnqn:nqn.2026-11.io.duroslight:default hostnqn:nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)"
switches() { awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END{print v, n}' /proc/$pid/task/$tid/status; }
taskset -c 0 "$perf" -c 0x1 -q 1 -o 4096 -w randread -t 3 -r "$tr" > /dev/null 2>&1   # warm-up
read -r v0 n0 <<< "$(switches)"; read -r load _ < /proc/loadavg
taskset -c 0 "$perf" -c 0x1 -q 1 -o 4096 -w randread -t 10 -r "$tr" > "$dir/perf.txt" 2>&1
read -r v1 n1 <<< "$(switches)"
awk -v l="$label" -v ld="$load" -v v=$((v1 - v0)) -v n=$((n1 - n0)) '/^Total/{ios=$3*10;
    printf "%s load1=%s IOPS=%s avg=%sus sleeps/IO=%.3f preempted/IO=%.3f\n", l, ld, $3, $5, v/ios, n/ios}' "$dir/perf.txt"
