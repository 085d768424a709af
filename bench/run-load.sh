#!/usr/bin/env bash
# End-to-end load table: the target pinned to one core, the generator (bench/Duroslight.Load) to another, each
# workload run several times; prints every run and the median IOPS per workload. Usage:
#   bench/run-load.sh [memory|file] [runs] [seconds] [poll]
# Ports: IO_PORT, DISC_PORT, METRICS_PORT (defaults 24420, 28009, 29180).
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-memory} runs=${2:-3} secs=${3:-10} poll=${4:-sleep}
target_cpu=${TARGET_CPU:-0} gen_cpu=${GEN_CPU:-1}
io_port=${IO_PORT:-24420} disc_port=${DISC_PORT:-28009} metrics_port=${METRICS_PORT:-29180}
dotnet build src/Duroslight.Server -c Release -v q -nologo >/dev/null
dotnet build bench/Duroslight.Load -c Release -v q -nologo >/dev/null
server=src/Duroslight.Server/bin/Release/net10.0/duroslight
load=bench/Duroslight.Load/bin/Release/net10.0/duroslight-load
data=$(mktemp -d /var/tmp/dsl-load.XXXXXX)
args=(serve --cores "$target_cpu" --poll "$poll" --listen 127.0.0.1:$io_port --discovery 127.0.0.1:$disc_port
      --metrics 127.0.0.1:$metrics_port --volume-size 2G --log-level warning --data-dir "$data")
[ "$store" = memory ] && args+=(--memory)
"$server" "${args[@]}" & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
sleep 2
run() { taskset -c "$gen_cpu" "$load" --target 127.0.0.1:$io_port --metrics http://127.0.0.1:$metrics_port/metrics --time "$secs" --ramp 2 "$@"; }
# Fill the region first so reads hit written data and the memory store has its pages (no first-touch cost).
run --rw write --bs 128k --qd 8 --size 1g --time 3 >/dev/null
# Total queue depth split over two connections: one synchronous generator connection alternates with the target
# (ping-pong) and cannot keep one target core busy; two can, and more do not raise the figure (see bench/README.md).
for w in "randread --bs 4k --connections 2 --qd 16" "randwrite --bs 4k --connections 2 --qd 16" \
         "read --bs 128k --connections 2 --qd 4" "write --bs 128k --connections 2 --qd 4" "randread --bs 4k --qd 1"; do
    results=()
    for ((i = 0; i < runs; i++)); do
        line=$(run --rw $w --size 1g); echo "$store $line"
        results+=("$(sed -E 's/.*iops=([0-9]+).*/\1/' <<<"$line")")
    done
    median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    echo "== $store $w: median iops $median"
done
